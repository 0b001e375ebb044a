"""The library's front door: :class:`FaceAuth` (``from facelivenet import FaceAuth``).

One object holds the model and the one face path (:class:`facelivenet.faces.FacePath`)
and answers the product's questions, the way insightface's ``FaceAnalysis.get`` and
deepface's ``verify``/``analyze`` do::

    from facelivenet import FaceAuth
    auth = FaceAuth()                                   # the bundled default model
    auth.analyze("group.jpg")                           # a record per face
    auth.verify("a.jpg", "b.jpg").same                  # one face each
    auth.identify("probe.jpg", "gallery.flg").name      # nearest enrolled identity
    auth.authenticate("clip.mp4", "ref.jpg", challenge="surprise").decision.accepted

Images may be file paths, numpy arrays (H x W, x3 RGB or x4 RGBA, uint8) or PIL
images; anything else is an :class:`~facelivenet.errors.InputError`. The CLI commands
``analyze``, ``compare``, ``identify`` and ``verify-video`` are thin translations of
these methods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from facelivenet.config import DETECT_MAX_SIDE
from facelivenet.distances import identity_distances
from facelivenet.errors import InputError
from facelivenet.faces import Face, FacePath, as_image


@dataclass(frozen=True)
class FaceAnalysis:
    """One face of an image: where it is and what the network says about it.

    Attributes:
        face: box, score, landmarks and the aligned crop.
        embedding: (D,) unit identity embedding.
        expressions: class name → probability.
        expression: the most probable class.
    """

    face: Face
    embedding: np.ndarray
    expressions: dict[str, float]
    expression: str

    def to_dict(self, embedding: bool = False) -> dict[str, Any]:
        d = {**self.face.to_dict(), "expression": self.expression,
             "expressions": {k: round(float(v), 4) for k, v in self.expressions.items()}}
        if embedding:
            d["embedding"] = np.round(self.embedding.astype(float), 6).tolist()
        return d


@dataclass(frozen=True)
class Verification:
    """Are two faces the same person? ``same`` iff ``distance <= threshold``."""

    distance: float
    threshold: float
    same: bool
    faces: tuple[FaceAnalysis, FaceAnalysis]

    def to_dict(self) -> dict[str, Any]:
        return {"same": self.same, "distance": round(self.distance, 4), "threshold": round(self.threshold, 4),
                "faces": [f.to_dict() for f in self.faces]}


@dataclass(frozen=True)
class Identification:
    """The nearest enrolled identity of a face; ``name`` is None when none is within the threshold."""

    name: str | None
    distance: float | None
    threshold: float
    candidates: tuple[tuple[str, float], ...]
    face: FaceAnalysis

    @property
    def matched(self) -> bool:
        return self.name is not None

    def to_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "name": self.name,
                "distance": None if self.distance is None else round(self.distance, 4),
                "threshold": round(self.threshold, 4),
                "candidates": [{"name": n, "distance": round(d, 4)} for n, d in self.candidates],
                "face": self.face.to_dict()}


class FaceAuth:
    """A model and the one face path, with the product's use cases as methods.

    Args:
        model: a model file, a :class:`facelivenet.api.FaceModel`, or None for the
            bundled default.
        detector: a face detector (default: our MTCNN on the runtime).
        detect_max_side: downscale larger images for detection (None: full size).
        runtime: ``"onnx"`` (ONNX Runtime, no TensorFlow: the default model's files ship
            with the package, another model's are exported once), ``"keras"``, or
            ``"auto"`` (None, the default): ONNX, except for a model already loaded on
            Keras, or with a warning when a model's ONNX files cannot be built; see
            :func:`facelivenet.runtime.inference_backend`. :attr:`runtime` says which.
        precision: ``"fp32"`` (None) or ``"int8"``: the network quantised to int8 on
            ONNX Runtime (:mod:`facelivenet.runtime.quantize`; ``auto`` then means
            ``onnx``); int8 on keras is an :class:`~facelivenet.errors.InputError`.
    """

    def __init__(self, model: Any = None, *, detector: Any = None, detect_max_side: int | None = None,
                 runtime: str | None = None, precision: str | None = None):
        from facelivenet.runtime.inference import inference_backend

        self.backend = inference_backend(runtime, model, detector, precision=precision)
        self.model = self.backend.model
        self.path = FacePath(self.model.config, self.backend.detector, detect_max_side=detect_max_side)

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def config(self):
        return self.model.config

    @property
    def threshold(self) -> float:
        """The model's verification threshold (squared L2 between unit embeddings)."""
        return float(self.config.verification_threshold)

    # --- images -----------------------------------------------------------------------------
    def _analyses(self, faces: Sequence[Face]) -> list[FaceAnalysis]:
        if not faces:
            return []
        out = self.backend.embed_and_classify(np.stack([f.crop for f in faces]))
        classes = out.expression_classes
        return [FaceAnalysis(f, out.embeddings[i], dict(zip(classes, map(float, out.expressions[i]))),
                             classes[int(np.argmax(out.expressions[i]))]) for i, f in enumerate(faces)]

    def analyze(self, image: Any, *, policy: str = "all") -> list[FaceAnalysis]:
        """Every face of an image (``policy`` as :class:`FacePath`: all, one, main, main_or_center)."""
        return self._analyses(self.path.faces(image, policy))

    def analyze_crops(self, crops: Sequence[Any]) -> list[FaceAnalysis]:
        """Images that already are face crops (resized to the model's input)."""
        faces = []
        for i, c in enumerate(crops):
            array, _ = as_image(c, f"crop #{i + 1}")
            h, w = array.shape[:2]
            faces.append(Face((0.0, 0.0, float(w), float(h)), 0.0, None, array, detected=False))
        return self._analyses(faces)

    def embed(self, image: Any) -> FaceAnalysis:
        """The one face of an image (an error for no face or several)."""
        return self.analyze(image, policy="one")[0]

    def verify(self, a: Any, b: Any, *, threshold: float | None = None) -> Verification:
        """Whether two photos (one face each) show the same person."""
        fa, fb = self.embed(a), self.embed(b)
        t = self.threshold if threshold is None else float(threshold)
        d = float(identity_distances(fa.embedding[None], fb.embedding[None])[0])
        return Verification(d, t, d <= t, (fa, fb))

    def identify(self, image: Any, gallery: Any, *, threshold: float | None = None, top: int = 5) -> Identification:
        """The enrolled identity of the photo's one face: the nearest within the threshold.

        Args:
            gallery: a gallery file (``facelivenet enroll``) or a loaded
                :class:`~facelivenet.auth.gallery.Gallery`.
        """
        from facelivenet.auth.gallery import Gallery, open_gallery

        g = gallery if isinstance(gallery, Gallery) else open_gallery(gallery, self.model)
        if not len(g):
            raise InputError(f"{getattr(g, 'path', 'gallery')}: the gallery has no identities")
        face = self.embed(image)
        scores = sorted(((name, float(identity_distances(face.embedding[None], g.embeddings(name))[0]))
                         for name in g.names()), key=lambda nd: nd[1])
        t = self.threshold if threshold is None else float(threshold)
        best, dist = scores[0]
        return Identification(best if dist <= t else None, dist, t, tuple(scores[:top]), face)

    # --- clips --------------------------------------------------------------------------------
    def reference(self, reference: Any) -> np.ndarray:
        """(K, D) reference embeddings: from a photo of the person (one face), or given as such."""
        if isinstance(reference, np.ndarray) and reference.dtype != np.uint8 and reference.ndim == 2:
            if reference.shape[1] != self.config.embedding_size:
                raise InputError(f"reference embeddings are {reference.shape[1]}-d; "
                                 f"the model's are {self.config.embedding_size}-d")
            return reference.astype(np.float32)
        return self.embed(reference).embedding[None]

    def authenticate(self, clip: str | os.PathLike, reference: Any, *, challenge: str | Sequence[str] | None = None,
                     token: str | None = None, key: bytes | None = None, nonces: Any = None,
                     identity: str | None = None, previous_keys: Sequence[bytes] = (),
                     settings: Any = None, threshold: float | None = None,
                     expression_threshold: float | None = None, stride: int = 1,
                     on_frames: Callable[[int], None] | None = None,
                     detect_max_side: int | None = DETECT_MAX_SIDE, limits: Any = None,
                     track_every: int | None = None):
        """Challenge-response authentication of a clip (the offline mode).

        Args:
            clip: the video file.
            reference: a photo of the person (one face) or (K, D) enrolled embeddings
                (``Gallery.embeddings(name)``).
            challenge: the expressions to show after Neutral (``"surprise"``,
                ``"happy,surprise"``), or ``token`` (from ``facelivenet challenge``) with
                its signing ``key`` and ``nonces`` store (single use).
            identity: the enrolled name whose embeddings ``reference`` is: a token bound
                to another identity, another enrolled template or another model is
                refused (``token_identity_mismatch``, ``token_gallery_mismatch``,
                ``token_model_mismatch``); None for a photo.
            previous_keys: signing keys before a rotation (their tokens still verify).
            settings: :class:`~facelivenet.auth.challenge.ChallengeSettings` (default:
                the model's thresholds).
            threshold, expression_threshold: override the identity threshold (squared
                L2) and the Neutral/expression probability threshold of ``settings``.
            detect_max_side: frames are downscaled to this longest side for detection
                (faces are still cut from the full frame); None: full resolution.
            limits: an :class:`~facelivenet.auth.limits.AttemptLimiter`: with
                ``identity``, a locked identity is a ``locked_out`` reject, and each
                decision counts for or against it.
            track_every: run the full detector every this many frames and follow the
                face in between (:class:`facelivenet.runtime.TrackingDetector`); None: the
                full detector on every frame.

        Returns:
            :class:`~facelivenet.auth.offline.Authentication` (``.decision``,
            ``.accepted``, ``.clip`` with the per-frame analyses, ``.report()`` the
            decision document with its score, as ``verify-video --json``).
        """
        from facelivenet.auth.analyzer import FrameAnalyzer
        from facelivenet.auth.challenge import ChallengeSettings
        from facelivenet.auth.offline import authenticate_clip

        settings = settings or ChallengeSettings.for_model(self.config)
        if threshold is not None:
            settings = settings.replace(identity_threshold=float(threshold))
        if expression_threshold is not None:
            settings = settings.replace(expression_threshold=float(expression_threshold),
                                        neutral_threshold=float(expression_threshold))
        detector = self.path.detector
        if track_every:
            from facelivenet.runtime.tracking import TrackingDetector

            detector = TrackingDetector(detector, track_every)  # one per clip: it follows this clip's faces
        analyzer = FrameAnalyzer(self.model, detector, detect_max_side=detect_max_side)
        ref = self.reference(reference)
        binding = None
        if token is not None:
            from facelivenet.auth.tokens import TokenBinding

            if identity is not None and not (isinstance(reference, np.ndarray) and reference.dtype != np.uint8):
                raise InputError(f"identity {identity!r} names enrolled embeddings; a photo is not one")
            binding = TokenBinding.for_reference(self.fingerprint, identity, ref if identity is not None else None)
        return authenticate_clip(clip, analyzer, ref, settings=settings, token=token,
                                 challenge=challenge, key=key, nonces=nonces, stride=stride, on_frames=on_frames,
                                 binding=binding, previous_keys=previous_keys,
                                 limits=limits, limit_keys=_limit_keys(identity, limits))

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint (:func:`facelivenet.auth.gallery.model_fingerprint`), computed once."""
        if getattr(self, "_fingerprint", None) is None:
            from facelivenet.auth.gallery import model_fingerprint

            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint


def _limit_keys(identity: str | None, limits: Any) -> tuple[str, ...]:
    """The attempt-limit keys of an authentication (none without an identity and a limiter)."""
    from facelivenet.auth.limits import identity_key

    return (identity_key(identity),) if identity is not None and limits is not None else ()


__all__ = ["FaceAuth", "FaceAnalysis", "Verification", "Identification"]
