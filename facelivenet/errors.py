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


class DatasetError(InputError):
    """A training or evaluation dataset folder cannot be used (empty, unlabelled, unsplittable)."""


class FileFormatError(InputError):
    """A project text file (lr schedule, pairs file) is malformed; the message names file and line."""


class TrainingError(FaceLiveNetError):
    """Training cannot start or continue (bad checkpoint, incompatible model, diverged loss)."""
