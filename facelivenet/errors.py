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


class DetectorError(FaceLiveNetError):
    """The face detector cannot be set up (e.g. its pretrained weights are missing)."""


class AlignmentError(InputError):
    """A face cannot be aligned (degenerate landmarks, empty crop)."""
