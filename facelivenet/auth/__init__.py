"""Authentication: the challenge-response engine, single-use tokens, the gallery.

Modules (import what you need; nothing here imports TensorFlow):

- :mod:`facelivenet.auth.challenge` — :class:`Challenge`, :func:`issue_challenge`,
  :class:`ChallengeSettings`, :class:`ChallengeEngine` fed :class:`FrameObservation`
  per frame, :class:`Decision` with reasons, phases and a per-frame trace.
- :mod:`facelivenet.auth.observe` — network outputs of one frame → ``FrameObservation``.
- :mod:`facelivenet.auth.decision` — the verify-video JSON report and human summary.
- :mod:`facelivenet.auth.tokens` — HMAC-SHA256 signed challenge tokens and their key.
- :mod:`facelivenet.auth.nonces` — the SQLite store of used token nonces.
- :mod:`facelivenet.auth.offline` — the clip mode's challenge from ``--token`` or
  ``--challenge``, with the token consumed once.
- :mod:`facelivenet.auth.gallery` — enrolled embeddings tied to a model fingerprint, in
  AES-GCM sealed files edited under a lock (package: protect, store, names, enroll).
"""
