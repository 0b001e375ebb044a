"""The enrolment gallery: identities as face embeddings (never images), tied to one model.

Split by concept:

- :mod:`.protect`: the file (AES-256-GCM sealed, version 2), its key, atomic writes
  and the writers' lock;
- :mod:`.store`: the gallery document (:class:`Gallery`, :class:`Identity`), strict
  validation, locked edits (:func:`edit_gallery`), removal and ``upgrade``;
- :mod:`.names`: NFKC names and look-alike refusal;
- :mod:`.fingerprint`: the model fingerprint a gallery is tied to;
- :mod:`.enroll`: embedding faces from photos and enrolling them.

Everything public is importable from ``facelivenet.auth.gallery`` as before the split.
"""

from facelivenet.auth.gallery.fingerprint import model_fingerprint, short_fingerprint
from facelivenet.auth.gallery.names import MAX_NAME_CHARS, normalize_name, skeleton, validate_name
from facelivenet.auth.gallery.protect import (
    GALLERY_FORMAT, GALLERY_VERSION, MAX_GALLERY_BYTES, GalleryKey, default_gallery_key_path, gallery_key,
)
from facelivenet.auth.gallery.store import (
    NORM_TOLERANCE, Gallery, Identity, UpgradeResult, edit_gallery, remove_identity, upgrade_gallery,
)
from facelivenet.auth.gallery.enroll import (
    DetectorCropper, EnrollmentResult, FaceCropper, check_same_person, embed_faces, enroll, open_gallery,
    whole_image,
)
from facelivenet.distances import identity_distances

__all__ = [
    "GALLERY_FORMAT", "GALLERY_VERSION", "MAX_GALLERY_BYTES", "MAX_NAME_CHARS", "NORM_TOLERANCE",
    "DetectorCropper", "EnrollmentResult", "FaceCropper", "Gallery", "GalleryKey", "Identity",
    "UpgradeResult", "check_same_person", "default_gallery_key_path", "edit_gallery", "embed_faces",
    "enroll", "gallery_key", "identity_distances", "model_fingerprint", "normalize_name", "open_gallery",
    "remove_identity", "short_fingerprint", "skeleton", "upgrade_gallery", "validate_name", "whole_image",
]
