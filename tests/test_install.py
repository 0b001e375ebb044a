"""A real install: the wheel built from setup.cfg carries the default model, the parity
faces and the decision schema, and works from a fresh virtual environment outside the
repository (its dependencies borrowed from the test's own environment, read-only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=600)
    (path,) = out.glob("facelivenet-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_carries_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "facelivenet/_bundled/facelivenet-default.keras" in names
    assert "facelivenet/schemas/decision.schema.json" in names
    assert sum(n.startswith("facelivenet/_bundled/parity-faces/") for n in names) >= 8
    info = zipfile.ZipFile(wheel).getinfo("facelivenet/_bundled/facelivenet-default.keras")
    assert info.file_size == (ROOT / "models" / "facelivenet-default.keras").stat().st_size
    # The default runtime's ONNX files (no TensorFlow at inference), byte for byte.
    for name in ("network/network.onnx", "network/meta.json", "detector/pnet.onnx", "detector/rnet.onnx",
                 "detector/onet.onnx", "detector/meta.json"):
        shipped = (ROOT / "facelivenet" / "_bundled" / "onnx" / name).read_bytes()
        assert zipfile.ZipFile(wheel).read(f"facelivenet/_bundled/onnx/{name}") == shipped, name


@pytest.mark.slow
def test_installed_wheel_runs_info_and_demo_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies (TensorFlow, ...) from this environment: a plain path line, so that its
    # editable install of facelivenet (a .pth hook there) is not picked up.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FACELIVENET_MODEL")}
    # Without PYTHONPATH: a checkout on it (with the egg-info the wheel build leaves) reads to
    # pip as facelivenet already installed, and the wheel would not be.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=600, env=env)
    where = subprocess.run([str(py), "-c", "import facelivenet, facelivenet.paths as p; "
                            "print(facelivenet.__file__); print(p.default_model_path())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True)
    package, model = where.stdout.split()
    assert package.startswith(str(venv)) and model.startswith(str(venv)), where.stdout
    # The default runtime finds the installed ONNX files (nothing to build, no TensorFlow).
    onnx = subprocess.run([str(py), "-c", "import sys; from facelivenet import FaceAuth; a = FaceAuth(); "
                           "print(a.runtime, a.model.path, a.backend.detector.folder, "
                           "any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"],
                          cwd=tmp_path, env={**env, "FACELIVENET_CACHE": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=120)
    runtime, network, detector, tensorflow = onnx.stdout.split()
    assert runtime == "onnx" and tensorflow == "False", onnx.stderr[-500:]
    assert network.startswith(str(venv)) and detector.startswith(str(venv)) and not (tmp_path / "cache").exists()
    exe = venv / "bin" / "facelivenet"
    info = subprocess.run([str(exe), "info", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["source"].startswith(str(venv))
    demo = subprocess.run([str(exe), "demo", "--out", str(tmp_path / "demo"), "--json", "-q"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 1, demo.stderr  # the photo attack is rejected
    report = json.loads(demo.stdout)
    assert report["decision"] == "reject" and report["schema_version"] == "1.0"
    assert (tmp_path / "demo" / "photo-attack.mp4").stat().st_size > 10_000
