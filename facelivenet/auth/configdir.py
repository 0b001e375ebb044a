"""Where the authentication files live by default: the user's facelivenet config directory."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the config directory (tests, servers).
CONFIG_ENV = "FACELIVENET_CONFIG_DIR"


def config_dir() -> Path:
    """The user's facelivenet config directory (not created here): $FACELIVENET_CONFIG_DIR,
    else $XDG_CONFIG_HOME/facelivenet, else ~/.config/facelivenet."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "facelivenet"
