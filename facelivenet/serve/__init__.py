"""``facelivenet serve``: the offline mode's backend (HTTP, FastAPI on uvicorn) and its browser page.

:func:`create_app` builds the app from :class:`ServeSettings`; the challenge store is
behind :class:`ChallengeStore` (SQLite on one host by default).
"""

from facelivenet.serve.settings import ServeSettings
from facelivenet.serve.store import ChallengeStore, SQLiteChallengeStore, StoredChallenge


def create_app(settings: ServeSettings, **kwargs):
    """The FastAPI app (imported here lazily: FastAPI is needed only to serve)."""
    from facelivenet.serve.app import create_app as _create_app

    return _create_app(settings, **kwargs)


__all__ = ["create_app", "ServeSettings", "ChallengeStore", "SQLiteChallengeStore", "StoredChallenge"]
