"""The enrolment gallery: identities as face embeddings (never images), tied to one model.

A gallery file is JSON::

    {"format": "facelivenet-gallery", "version": 1,
     "model": {"fingerprint": "sha256:…", "embedding_size": 512, "source": "models/x.keras"},
     "identities": [{"name": "alice", "embeddings": [[…], …], "sources": ["a1.jpg"],
                     "enrolled": "2026-11-22T12:00:00Z"}]}

Embeddings only make sense for the model that computed them, so every gallery records
the :func:`model_fingerprint` of its model and :meth:`Gallery.check_model` refuses
another one. Files are written atomically (temporary file + rename) and read with
strict validation: any malformed file raises :class:`GalleryError`, never anything else.

Enrolment (:func:`enroll`) reads images, cuts out one face per image with an
injectable :class:`FaceCropper` (:func:`whole_image` for images that already are face
crops; :class:`DetectorCropper` for photos, with the face detector), analyses all
crops in one batch and stores the embeddings.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from facelivenet.distances import identity_distances  # noqa: F401 (re-exported)
from facelivenet.errors import GalleryError, GalleryModelMismatch, InputError
from facelivenet.faces import MIN_FACE_SCORE
from facelivenet.utils import atomic_write_text

GALLERY_FORMAT = "facelivenet-gallery"
GALLERY_VERSION = 1
#: Largest gallery file we read (bytes).
MAX_GALLERY_BYTES = 256 * 1024 * 1024
#: Longest identity name.
MAX_NAME_CHARS = 128
#: Tolerance on the unit norm of stored embeddings.
NORM_TOLERANCE = 1e-3

_FINGERPRINT_DOMAIN = b"facelivenet-model-fingerprint-v1\0"


# --------------------------------------------------------------------------- fingerprint


def model_fingerprint(model: Any) -> str:
    """A stable hash of a model's configuration and weights: ``"sha256:<64 hex>"``.

    Accepts a :class:`~facelivenet.api.FaceModel` or its Keras network. Two models
    give the same fingerprint exactly when their :class:`NetworkConfig` and every
    weight (trainable or not, in layer order; shapes, dtypes and values) are equal,
    so a model saved and loaded again keeps its fingerprint.
    """
    stored = getattr(model, "fingerprint", None)
    if isinstance(stored, str):  # an ONNX model carries its Keras model's fingerprint
        return stored
    network = getattr(model, "network", model)
    config = getattr(network, "network_config", None)
    if config is None:
        raise InputError(f"not a facelivenet model: {type(model).__name__} has no network_config")
    h = hashlib.sha256(_FINGERPRINT_DOMAIN)
    h.update(json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for w in network.weights:
        arr = np.ascontiguousarray(np.asarray(w.numpy()))
        h.update(f"\0{arr.dtype.str}{arr.shape}\0".encode("ascii"))
        h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def short_fingerprint(fingerprint: str) -> str:
    return fingerprint[:19] + "…" if len(fingerprint) > 20 else fingerprint


# --------------------------------------------------------------------------- gallery


@dataclass
class Identity:
    """One enrolled person: (K, D) unit embeddings, the file names they came from."""

    name: str
    embeddings: np.ndarray
    sources: list[str] = field(default_factory=list)
    enrolled: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embeddings": [[float(v) for v in row] for row in self.embeddings],
            "sources": list(self.sources),
            "enrolled": self.enrolled,
        }


def validate_name(name: Any) -> str:
    """An identity name: 1..128 printable characters without leading/trailing spaces."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"an identity name is 1 to {MAX_NAME_CHARS} characters. Received: {name!r}")
    if name != name.strip() or not name.isprintable():
        raise GalleryError(f"an identity name has no control characters or surrounding spaces. Received: {name!r}")
    return name


class Gallery:
    """Enrolled identities for the model with fingerprint ``fingerprint``.

    Attributes:
        fingerprint: :func:`model_fingerprint` of the model that made the embeddings.
        embedding_size: D.
        model_source: where that model was loaded from (informative only).
        path: the file this gallery was loaded from or last saved to, if any.
    """

    def __init__(self, fingerprint: str, embedding_size: int, *, model_source: str | None = None,
                 identities: Iterable[Identity] = (), path: Path | None = None):
        self.fingerprint = fingerprint
        self.embedding_size = int(embedding_size)
        self.model_source = model_source
        self.path = path
        self._identities: dict[str, Identity] = {}
        for identity in identities:
            if identity.name in self._identities:
                raise GalleryError(f"{self._where()}identity {identity.name!r} appears twice")
            self._identities[identity.name] = identity

    @classmethod
    def for_model(cls, model: Any) -> "Gallery":
        """An empty gallery for ``model`` (a FaceModel)."""
        source = getattr(model, "source", None)
        return cls(model_fingerprint(model), model.config.embedding_size,
                   model_source=str(source) if source else None)

    # ------------------------------------------------------------ identities

    def names(self) -> list[str]:
        return list(self._identities)

    def __len__(self) -> int:
        return len(self._identities)

    def __contains__(self, name: object) -> bool:
        return name in self._identities

    def get(self, name: str) -> Identity:
        try:
            return self._identities[name]
        except KeyError:
            known = ", ".join(map(repr, self._identities)) or "none"
            raise GalleryError(f"{self._where()}no identity {name!r} (enrolled: {known})") from None

    def embeddings(self, name: str) -> np.ndarray:
        """(K, D) float32 embeddings of ``name``."""
        return self.get(name).embeddings

    def add(self, name: str, embeddings: np.ndarray, sources: Sequence[str] = (), *,
            replace: bool = False, now: _dt.datetime | None = None) -> Identity:
        """Add embeddings to ``name`` (a new identity, or appended; replaced with ``replace``)."""
        name = validate_name(name)
        emb = _check_embeddings(np.asarray(embeddings, dtype=np.float32), self.embedding_size, name)
        if len(sources) not in (0, emb.shape[0]):
            raise GalleryError(f"{len(sources)} source names for {emb.shape[0]} embeddings")
        sources = [Path(str(s)).name for s in sources]
        stamp = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = self._identities.get(name)
        if old is not None and not replace:
            emb = np.concatenate([old.embeddings, emb])
            sources = old.sources + sources
        identity = Identity(name, emb, sources, stamp)
        self._identities[name] = identity
        return identity

    def remove(self, name: str) -> Identity:
        identity = self.get(name)
        del self._identities[name]
        return identity

    def distances(self, name: str, embeddings: np.ndarray) -> np.ndarray:
        """(N,) squared L2 distance of each of N embeddings to ``name``'s nearest one."""
        return identity_distances(embeddings, self.embeddings(name))

    # ------------------------------------------------------------ model check

    def check_model(self, fingerprint: str, model_source: str | None = None) -> None:
        """Raise :class:`GalleryModelMismatch` unless the gallery was made by this model."""
        if fingerprint == self.fingerprint:
            return
        made = f" ({self.model_source})" if self.model_source else ""
        current = f" ({model_source})" if model_source else ""
        raise GalleryModelMismatch(
            f"{self._where()}this gallery was enrolled with another model: fingerprint "
            f"{short_fingerprint(self.fingerprint)}{made}, but the model in use is "
            f"{short_fingerprint(fingerprint)}{current}; embeddings of different models cannot "
            "be compared. Use the model the gallery was made with (--model), or enrol again "
            "into a new gallery with this one"
        )

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GALLERY_FORMAT,
            "version": GALLERY_VERSION,
            "model": {"fingerprint": self.fingerprint, "embedding_size": self.embedding_size,
                      "source": self.model_source},
            "identities": [i.to_dict() for i in self._identities.values()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":")) + "\n"

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the gallery to ``path`` (default: where it came from) atomically."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise GalleryError("no file to save the gallery to")
        if target.is_dir():
            raise GalleryError(f"{target}: is a directory, not a gallery file")
        try:
            atomic_write_text(target, self.to_json(), private=True)
        except OSError as exc:
            raise GalleryError(f"{target}: cannot write the gallery ({exc.strerror or exc})") from None
        self.path = target
        return target

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<gallery>") -> "Gallery":
        """Parse a gallery document; :class:`GalleryError` naming ``source`` when malformed."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            data = json.loads(text, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise GalleryError(f"{source}: not a gallery file (not JSON)") from None
        return cls._from_dict(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Gallery":
        """Read a gallery file (strictly validated)."""
        p = Path(path)
        if not p.exists():
            raise GalleryError(f"{p}: no such gallery file")
        if p.is_dir():
            raise GalleryError(f"{p}: is a directory, not a gallery file")
        try:
            size = p.stat().st_size
            if size > MAX_GALLERY_BYTES:
                raise GalleryError(f"{p}: {size:,} bytes is too large for a gallery file")
            raw = p.read_bytes()
        except GalleryError:
            raise
        except OSError as exc:
            raise GalleryError(f"{p}: cannot read the gallery ({exc.strerror or exc})") from None
        if not raw.strip():
            raise GalleryError(f"{p}: empty file, not a gallery")
        gallery = cls.from_json(raw, str(p))
        gallery.path = p
        return gallery

    @classmethod
    def _from_dict(cls, data: Any, source: str) -> "Gallery":
        def bad(what: str) -> GalleryError:
            return GalleryError(f"{source}: not a valid gallery file ({what})")

        if not isinstance(data, dict) or data.get("format") != GALLERY_FORMAT:
            raise bad(f"no \"format\": \"{GALLERY_FORMAT}\"")
        if type(data.get("version")) is not int or data["version"] != GALLERY_VERSION:
            raise bad(f"unsupported version {data.get('version')!r}")
        if set(data) != {"format", "version", "model", "identities"}:
            raise bad(f"unexpected keys {sorted(map(str, data))}")
        model = data["model"]
        if not isinstance(model, dict) or set(model) != {"fingerprint", "embedding_size", "source"}:
            raise bad("\"model\" must have fingerprint, embedding_size and source")
        fingerprint, size, msource = model["fingerprint"], model["embedding_size"], model["source"]
        if not isinstance(fingerprint, str) or not fingerprint.startswith("sha256:") or len(fingerprint) != 71:
            raise bad("bad model fingerprint")
        if type(size) is not int or not 1 <= size <= 65536:
            raise bad(f"bad embedding_size {size!r}")
        if msource is not None and not isinstance(msource, str):
            raise bad("bad model source")
        if not isinstance(data["identities"], list):
            raise bad("\"identities\" is not a list")
        identities = []
        for i, item in enumerate(data["identities"]):
            if not isinstance(item, dict) or set(item) != {"name", "embeddings", "sources", "enrolled"}:
                raise bad(f"identity #{i + 1} must have name, embeddings, sources and enrolled")
            try:
                name = validate_name(item["name"])
            except GalleryError as exc:
                raise bad(f"identity #{i + 1}: {exc}") from None
            rows = item["embeddings"]
            if (not isinstance(rows, list) or not rows
                    or not all(isinstance(r, list) and len(r) == size for r in rows)
                    or not all(_is_number(v) for r in rows for v in r)):
                raise bad(f"identity {name!r}: embeddings must be a non-empty list of {size} numbers each")
            try:
                emb = _check_embeddings(np.asarray(rows, dtype=np.float64).astype(np.float32), size, name)
            except GalleryError as exc:
                raise bad(str(exc)) from None
            sources, enrolled = item["sources"], item["enrolled"]
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise bad(f"identity {name!r}: sources must be a list of file names")
            if not isinstance(enrolled, str):
                raise bad(f"identity {name!r}: enrolled must be a date string")
            identities.append(Identity(name, emb, list(sources), enrolled))
        names = [i.name for i in identities]
        if len(set(names)) != len(names):
            raise bad("an identity name appears twice")
        return cls(fingerprint, size, model_source=msource, identities=identities)

    def _where(self) -> str:
        return f"{self.path}: " if self.path else ""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return -2 <= v <= 2  # unit-vector components; also excludes NaN, infinities and huge ints


def _check_embeddings(emb: np.ndarray, size: int, name: str) -> np.ndarray:
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2 or emb.shape[0] < 1 or emb.shape[1] != size:
        raise GalleryError(f"identity {name!r}: embeddings must be (K, {size}). Received shape {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise GalleryError(f"identity {name!r}: embeddings contain NaN or infinity")
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    if np.any(np.abs(norms - 1.0) > NORM_TOLERANCE):
        raise GalleryError(f"identity {name!r}: embeddings are not unit vectors (norms {norms.round(4).tolist()[:4]})")
    return np.ascontiguousarray(emb, dtype=np.float32)


# --------------------------------------------------------------------------- enrolment


class FaceCropper(Protocol):
    """Turns an RGB image into the one face crop to enrol (``source`` names it in errors)."""

    def __call__(self, image: np.ndarray, source: str) -> np.ndarray: ...


def whole_image(image: np.ndarray, source: str) -> np.ndarray:
    """The image is already a face crop: use it whole (resized by the model)."""
    return image


class DetectorCropper:
    """Crop the single face of a photo with a face detector (``facelivenet.detect`` API).

    Args:
        detector: object with ``detect(rgb_uint8) -> list[Detection]`` (each with
            ``.box``, ``.score``, ``.landmarks``).
        align: ``align(image, detection, image_size, mode, margin) -> crop``.
        image_size, mode, margin: passed to ``align`` (the model's input size,
            ``config.alignment`` and ``config.margin``).
        min_score: detections below this score are ignored.
    """

    def __init__(self, detector: Any, align: Callable[..., np.ndarray], image_size: int,
                 mode: str = "crop", margin: int = 32, min_score: float = MIN_FACE_SCORE):
        from types import SimpleNamespace

        from facelivenet.faces import FacePath

        self.detector = detector
        self.image_size = image_size
        self.mode = mode
        self.margin = margin
        self.min_score = min_score
        geometry = SimpleNamespace(image_size=image_size, alignment=mode, margin=margin)
        self.path = FacePath(geometry, detector, align, min_score=min_score)

    @classmethod
    def for_model(cls, config: Any, detector: Any = None, **kwargs: Any) -> "DetectorCropper":
        """A cropper with the face detector and the alignment settings of ``config``."""
        from facelivenet.detect import FaceDetector, align_face  # the detector package

        return cls(detector or FaceDetector(), align_face, config.image_size,
                   config.alignment, config.margin, **kwargs)

    def __call__(self, image: np.ndarray, source: str) -> np.ndarray:
        """The crop of the one face of ``image`` (the one face path's ``one`` policy)."""
        return self.path.faces(image, "one", source)[0].crop


def embed_faces(model: Any, images: Sequence[str | os.PathLike | np.ndarray],
                cropper: FaceCropper = whole_image) -> np.ndarray:
    """(N, D) embeddings of one face per image (paths are read with :func:`read_image`).

    All crops go through the model in one batch. Used for enrolment and for a
    one-off reference image (``--ref``).
    """
    from facelivenet.images import read_image

    crops = []
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            image, source = item, f"image #{i + 1}"
        else:
            image, source = read_image(item), str(item)
        crops.append(cropper(image, source))
    if not crops:
        raise InputError("no images given")
    return model.analyze(crops).embeddings


@dataclass(frozen=True)
class EnrollmentResult:
    """What :func:`enroll` did."""

    gallery: Path
    name: str
    added: int
    total: int
    identities: int
    fingerprint: str
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {"gallery": str(self.gallery), "name": self.name, "added": self.added,
                "total": self.total, "identities": self.identities,
                "fingerprint": self.fingerprint, "created": self.created}


def open_gallery(path: str | os.PathLike, model: Any, *, create: bool = False) -> Gallery:
    """The gallery at ``path`` checked against ``model`` (an empty one if missing and ``create``)."""
    p = Path(path)
    if create and not p.exists():
        gallery = Gallery.for_model(model)
        gallery.path = p
        return gallery
    gallery = Gallery.load(p)
    source = getattr(model, "source", None)
    gallery.check_model(model_fingerprint(model), str(source) if source else None)
    return gallery


def check_same_person(embeddings: np.ndarray, sources: Sequence[str], threshold: float, name: str) -> None:
    """Refuse faces of one name that do not match each other (a photo of someone else).

    Raises :class:`GalleryError` naming the most distant pair and its distance when
    any two of ``embeddings`` are further apart than ``threshold`` (squared L2).
    """
    if len(embeddings) < 2:
        return
    e = np.asarray(embeddings, np.float32)
    d = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    if d[i, j] > threshold:
        far = [f"{sources[a]} - {sources[b]}: {d[a, b]:.2f}" for a, b in zip(*np.triu_indices(len(e), 1))
               if d[a, b] > threshold]
        raise GalleryError(
            f"the faces given for {name} do not all match each other (squared L2 above the threshold "
            f"{threshold:.2f}: {'; '.join(far[:5])}{'; ...' if len(far) > 5 else ''}); "
            "enrol one person per name, or --force")


def enroll(gallery_path: str | os.PathLike, name: str, images: Sequence[str | os.PathLike],
           model: Any, *, cropper: FaceCropper = whole_image, replace: bool = False,
           force: bool = False) -> EnrollmentResult:
    """Add the faces of ``images`` to identity ``name`` in the gallery file (created if missing).

    Everything is checked (gallery, model, every image) before the file is written,
    and it is written atomically, so a failure leaves the previous gallery intact.
    The new faces must match each other and the faces already enrolled under ``name``
    (within the model's verification threshold) unless ``force``.
    """
    name = validate_name(name)
    p = Path(gallery_path)
    created = not p.exists()
    gallery = open_gallery(p, model, create=True)
    emb = embed_faces(model, images, cropper)
    if not force:
        known = gallery.get(name) if (name in gallery.names() and not replace) else None
        both = emb if known is None else np.concatenate([known.embeddings, emb])
        old = [] if known is None else (list(known.sources) if len(known.sources) == len(known.embeddings)
                                        else [f"{name} (enrolled #{k + 1})" for k in range(len(known.embeddings))])
        sources = old + [str(i) for i in images]
        check_same_person(both, sources, float(model.config.verification_threshold), name)
    identity = gallery.add(name, emb, [str(i) for i in images], replace=replace)
    gallery.save(p)
    return EnrollmentResult(p, name, int(emb.shape[0]), int(identity.embeddings.shape[0]), len(gallery),
                           gallery.fingerprint, created)
