"""Where the bundled default model lives."""

from __future__ import annotations

import os
from pathlib import Path

#: The project's ``models/`` folder (top level of the repository, beside the package).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: File name of the bundled default model inside :data:`MODELS_DIR`.
DEFAULT_MODEL_NAME = "facelivenet-default.keras"
#: Environment variable that points every command at another default model.
MODEL_ENV = "FACELIVENET_MODEL"


def default_model_path() -> Path:
    """``$FACELIVENET_MODEL`` when set, else ``models/facelivenet-default.keras``."""
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else MODELS_DIR / DEFAULT_MODEL_NAME
