"""The shape of the house: which modules may import what."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("args, fragment", [
    (["verify-video", "missing.mp4", "--challenge", "happy", "--ref", "README.md"], "missing.mp4: no such file"),
    (["compare", "README.md", "missing.jpg"], "missing.jpg: no such file"),
    (["analyze", "missing.jpg"], "missing.jpg: no such file"),
    (["info", "missing.keras"], "missing.keras: no such model file"),
    (["verify-video", "README.md", "--model", "missing.keras", "--challenge", "happy"], "no such model file"),
])
def test_missing_inputs_fail_before_tensorflow_is_imported(args, fragment):
    # A typo costs milliseconds, not the 6-10 s of importing TensorFlow first.
    script = ("import sys, json\n"
              "from click.testing import CliRunner\n"
              "from facelivenet.cli import cli\n"
              f"r = CliRunner().invoke(cli, {args!r})\n"
              "print(json.dumps([r.exit_code, r.output, 'tensorflow' in sys.modules, 'keras' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    code, output, tf, keras = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 2 and fragment in output and output.count("\n") == 1, output
    assert not tf and not keras


def test_every_command_takes_json_and_quiet():
    import click

    from facelivenet.cli import cli

    def commands(group, prefix=""):
        for name, c in group.commands.items():
            if isinstance(c, click.Group):
                yield from commands(c, prefix + name + " ")
            else:
                yield prefix + name, c

    missing = {name: [o for o in ("--json", "-q", "--quiet") if o not in {x for p in c.params for x in p.opts}]
               for name, c in commands(cli)}
    assert {k: v for k, v in missing.items() if v} == {}


def test_train_commands_default_to_what_trains():
    from click.testing import CliRunner

    from facelivenet.cli import cli

    for cmd in ("train-verification", "train-expression", "train-multitask"):
        text = CliRunner().invoke(cli, [cmd, "--help"]).output
        assert "[default: momentum]" in text, cmd


# Rooms whose name still repeats another (none left: eval/faces.py is eval/crops.py,
# auth/paths.py auth/configdir.py, detect/networks.py detect/mtcnn_nets.py).
_KNOWN_NAME_CLASHES: set[str] = set()
_KNOWN_PLURAL_PAIRS: set[tuple[str, str]] = set()


def test_room_names_do_not_clash():
    # `train/config.py` beside `config.py`, `eval/auth.py` beside `auth/`, `detect/dataset.py`
    # beside `data/datasets.py`: one name, two rooms, and every reader guesses wrong.
    modules = [p for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    clashes = {str(p.relative_to(PACKAGE)) for p in modules if p.parent != PACKAGE and p.stem in top}
    assert clashes == _KNOWN_NAME_CLASHES
    stems = {p.stem for p in modules} | top
    assert {(s, s + "s") for s in stems if s + "s" in stems} == _KNOWN_PLURAL_PAIRS


def test_export_keeps_tensorflow_in_its_own_modules():
    # The error and the parity maths are plain Python; only writing and running artefacts needs TensorFlow.
    code = ("import sys; import facelivenet.export as ex; from facelivenet.export import ExportError, "
            "check_parity, decision_agreement, PARITY_BOUNDS, DETECTOR_BOUNDS; import facelivenet.errors as e; "
            "print(ExportError is e.ExportError, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]
    tf_modules = {p.stem for p in (PACKAGE / "export").glob("*.py")
                  if re.search(r"^\s*(import tensorflow|from keras|import keras|from facelivenet\.models)", p.read_text(), re.M)}
    assert tf_modules <= {"formats", "network", "detector"}


@pytest.mark.parametrize("package", ["export", "train", "eval", "detect"])
def test_modules_stay_small(package):
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / package).glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 500} == {}
