"""Domain exceptions.

Library code raises these; only :mod:`facelivenet.cli` turns them into exit codes
(2 for every :class:`FaceLiveNetError`) and one-line messages.
"""

from __future__ import annotations


class FaceLiveNetError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(FaceLiveNetError):
    """A user-supplied input (file, image, option value) cannot be used."""


class ImageReadError(InputError):
    """An image file is missing, unreadable or not a decodable image."""


class ModelLoadError(FaceLiveNetError):
    """A file is not a facelivenet model, or the model file is missing."""


class ConfigError(FaceLiveNetError):
    """A model or stage configuration is invalid."""


class FaceCountError(InputError):
    """An image or clip that must show one face shows none, or more than one."""


class ChallengeError(InputError):
    """A challenge specification or a stream of frame observations cannot be used."""


class TokenError(InputError):
    """A challenge token string does not parse (malformed), or its key is unusable.

    A well-formed token that is expired, tampered with or already used is not an
    error: it is a rejection with a reason (see :mod:`facelivenet.auth.tokens`).
    """


class NonceStoreError(FaceLiveNetError):
    """The database of used challenge nonces cannot be opened or written."""


class GalleryError(InputError):
    """A gallery file is missing, malformed, or an identity in it cannot be used."""


class GalleryModelMismatch(GalleryError):
    """A gallery was enrolled with another model (different fingerprint)."""


class GalleryIntegrityError(GalleryError):
    """A protected gallery fails its authentication: edited, truncated, spliced, or another key's."""


class DetectorError(FaceLiveNetError):
    """The face detector cannot be set up (e.g. its pretrained weights are missing)."""


class AlignmentError(InputError):
    """A face cannot be aligned (degenerate landmarks, empty crop)."""


class VideoReadError(InputError):
    """A video file or camera cannot be opened or has no decodable frames."""


class DatasetError(InputError):
    """A training or evaluation dataset folder cannot be used (empty, unlabelled, unsplittable)."""


class FileFormatError(InputError):
    """A project text file (lr schedule, pairs file) is malformed; the message names file and line."""


class TrainingError(FaceLiveNetError):
    """Training cannot start or continue (bad checkpoint, incompatible model, diverged loss)."""


class ExportError(FaceLiveNetError):
    """An export failed, or the exported model does not match ours within bounds."""


#: Stable machine-readable codes of errors (``{"error": {"code": ...}}`` with ``--json``),
#: most specific class first.
ERROR_CODES: tuple[tuple[type, str], ...] = (
    (ImageReadError, "bad_image"),
    (VideoReadError, "bad_video"),
    (TokenError, "bad_token"),
    (GalleryModelMismatch, "gallery_model_mismatch"),
    (GalleryIntegrityError, "gallery_tampered"),
    (GalleryError, "bad_gallery"),
    (AlignmentError, "no_alignment"),
    (FaceCountError, "face_count"),
    (DatasetError, "bad_dataset"),
    (FileFormatError, "bad_file"),
    (ChallengeError, "bad_challenge"),
    (InputError, "bad_input"),
    (ModelLoadError, "bad_model"),
    (ConfigError, "bad_config"),
    (NonceStoreError, "nonce_store"),
    (DetectorError, "detector"),
    (TrainingError, "training"),
)


def error_code(exc: BaseException) -> str:
    """The stable code of one of our errors (``"error"`` for another FaceLiveNetError)."""
    for cls, code in ERROR_CODES:
        if isinstance(exc, cls):
            return code
    return "error"
