"""Where the bundled default model lives, and the check that a model path exists (no Keras import)."""

from __future__ import annotations

import os
from pathlib import Path

#: The project's ``models/`` folder (top level of the repository, beside the package).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The package's own copy of the default model and the parity faces (package data, so a
#: ``pip install`` of the wheel has them; links into ``models/`` and ``data/`` in a checkout).
BUNDLED_DIR = Path(__file__).resolve().parent / "_bundled"
#: File name of the bundled default model inside :data:`MODELS_DIR`.
DEFAULT_MODEL_NAME = "facelivenet-default.keras"
#: Environment variable that points every command at another default model.
MODEL_ENV = "FACELIVENET_MODEL"


def default_model_path() -> Path:
    """``$FACELIVENET_MODEL`` when set, else ``models/facelivenet-default.keras`` of a
    checkout, else the copy installed with the package."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    checkout = MODELS_DIR / DEFAULT_MODEL_NAME
    return checkout if checkout.is_file() else BUNDLED_DIR / DEFAULT_MODEL_NAME


def parity_faces_dir() -> Path:
    """``data/parity-faces`` of a checkout, else the copy installed with the package."""
    checkout = MODELS_DIR.parent / "data" / "parity-faces"
    return checkout if checkout.is_dir() else BUNDLED_DIR / "parity-faces"


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """``path`` itself, or the bundled default when ``path`` is None; must exist."""
    from facelivenet.errors import ModelLoadError

    if path is None:
        p = default_model_path()
        if not p.is_file():
            raise ModelLoadError(
                f"no default model at {p} (see models/README.md: bin/train-default rebuilds it); "
                "pass --model PATH, e.g. a model trained with `facelivenet train-verification` and "
                "`train-expression`"
            )
        return p
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such model file")
    if p.is_dir():
        raise ModelLoadError(f"{p}: is a directory, not a .keras model file")
    return p


def model_expression_classes(path: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The expression classes a model file recognises, read from its archive's config
    (no Keras import: for commands that check names before any model is loaded)."""
    import json
    import zipfile

    from facelivenet.errors import ModelLoadError

    p = resolve_model_path(path)
    try:
        with zipfile.ZipFile(p) as z:
            config = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{p}: not a .keras model file ({exc})") from None
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            classes = node.get("expression_classes")
            if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
                return tuple(classes)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise ModelLoadError(f"{p}: not a facelivenet model (no expression classes in its config)")
