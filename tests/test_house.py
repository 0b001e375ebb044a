"""The shape of the house: which modules may import what."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "facelivenet"


def _imports(path: Path) -> set[str]:
    text = path.read_text()
    return set(re.findall(r"^\s*(?:from|import)\s+(facelivenet(?:\.\w+)*)", text, re.M))


def test_no_library_module_imports_the_cli():
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                 if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
                 and any(m == "facelivenet.cli" or m.startswith("facelivenet.cli.") for m in _imports(p))]
    assert offenders == []


def test_no_library_module_outside_the_cli_imports_click():
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                 if "cli" not in p.relative_to(PACKAGE).parts and re.search(r"^\s*import click", p.read_text(), re.M)]
    assert offenders == []


def test_tokens_and_nonces_do_not_import_each_other_both_ways():
    tokens = _imports(PACKAGE / "auth" / "tokens.py")
    nonces = _imports(PACKAGE / "auth" / "nonces.py")
    assert not ("facelivenet.auth.nonces" in tokens and "facelivenet.auth.tokens" in nonces)


def test_reading_an_image_and_finding_the_face_path_do_not_import_keras(tmp_path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    code = ("import sys; from facelivenet.images import read_image; import facelivenet.faces, facelivenet.distances; "
            f"read_image({str(img)!r}); print('keras' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
