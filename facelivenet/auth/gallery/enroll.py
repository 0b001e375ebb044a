"""Enrolment: embedding faces from photos and adding them to a gallery file.

:func:`enroll` reads images, cuts out one face per image with an injectable
:class:`FaceCropper` (:func:`whole_image` for images that already are face crops;
:class:`DetectorCropper` for photos, with the face detector), analyses all crops in
one batch, checks that they show one person, and adds the embeddings under the
gallery's lock (:func:`~facelivenet.auth.gallery.store.edit_gallery`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from facelivenet.auth.gallery import protect
from facelivenet.auth.gallery.fingerprint import model_fingerprint
from facelivenet.auth.gallery.names import check_not_confusable, normalize_name
from facelivenet.auth.gallery.store import Gallery, edit_gallery
from facelivenet.errors import GalleryError, InputError
from facelivenet.faces import MIN_FACE_SCORE


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


def open_gallery(path: str | os.PathLike, model: Any, *, create: bool = False,
                 key: protect.GalleryKey | None = None) -> Gallery:
    """The gallery at ``path`` checked against ``model`` (an empty one if missing and ``create``)."""
    p = Path(path)
    if create and not p.exists():
        gallery = Gallery.for_model(model)
        gallery.path = p
        return gallery
    gallery = Gallery.load(p, key=key)
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
           force: bool = False, key: protect.GalleryKey | None = None) -> EnrollmentResult:
    """Add the faces of ``images`` to identity ``name`` in the gallery file (created if missing).

    Everything is checked (gallery, model, name, every image) before the file is
    written; the faces are embedded first, then the gallery is locked, read again
    and written atomically, so a failure leaves the previous gallery intact and
    concurrent enrolments keep each other's identities. ``name`` is stored in NFKC
    form; one that looks like another enrolled name is refused. The new faces must
    match each other and the faces already enrolled under ``name`` (within the
    model's verification threshold) unless ``force``.
    """
    name = normalize_name(name)
    p = Path(gallery_path)
    fingerprint = model_fingerprint(model)
    source = getattr(model, "source", None)
    source = str(source) if source else None
    if protect.target_path(p).exists():  # fail before the embedding work on a foreign or forged gallery
        _check_enrollable(Gallery.load(p, key=key), name, fingerprint, source)
    emb = embed_faces(model, images, cropper)
    made: list[Gallery] = []

    def create() -> Gallery:
        made.append(Gallery(fingerprint, model.config.embedding_size, model_source=source, path=p))
        return made[0]

    with edit_gallery(p, create=create, key=key) as gallery:
        _check_enrollable(gallery, name, fingerprint, source)
        if not force:
            known = gallery.get(name) if (name in gallery and not replace) else None
            both = emb if known is None else np.concatenate([known.embeddings, emb])
            old = [] if known is None else (list(known.sources) if len(known.sources) == len(known.embeddings)
                                            else [f"{name} (enrolled #{k + 1})" for k in range(len(known.embeddings))])
            sources = old + [str(i) for i in images]
            check_same_person(both, sources, float(model.config.verification_threshold), name)
        identity = gallery.add(name, emb, [str(i) for i in images], replace=replace)
    return EnrollmentResult(p, name, int(emb.shape[0]), int(identity.embeddings.shape[0]), len(gallery),
                           gallery.fingerprint, bool(made))


def _check_enrollable(gallery: Gallery, name: str, fingerprint: str, source: str | None) -> None:
    gallery.check_model(fingerprint, source)
    if name not in gallery:
        check_not_confusable(name, gallery.names())
