"""ONNX Runtime as the default runtime: the ONNX files shipped in the package belong to the
shipped model and match Keras, the lookup order, ``auto``'s fallback, and no TensorFlow (nor
Keras) import on the inference path by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cli_code, run_isolated, shared_data
from facelivenet.cli import cli
from facelivenet.errors import ModelLoadError
from facelivenet.runtime import cache

SHIPPED_MODEL = ROOT / "models" / "facelivenet-default.keras"


@pytest.fixture()
def empty_cache(monkeypatch, tmp_path):
    """A user cache with nothing in it (never the user's)."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv("FACELIVENET_MODEL", raising=False)
    return tmp_path / "cache"


# --- the shipped files -------------------------------------------------------------------------


def test_the_shipped_onnx_files_belong_to_the_shipped_model_and_mtcnn_weights():
    """Fails after a retraining until ``bin/build-onnx`` has rebuilt the shipped network."""
    from facelivenet.detect.weights import NETWORKS, weights_path

    network, detector = cache.bundled_dir("network"), cache.bundled_dir("detector")
    assert network == ROOT / "facelivenet" / "_bundled" / "onnx" / "network"
    meta = cache.read_meta(network)
    assert meta is not None and (network / "network.onnx").stat().st_size > 1_000_000
    assert meta["key"] == cache.file_digest([SHIPPED_MODEL]), (
        "the shipped ONNX network was built from another model file: run bin/build-onnx")
    assert meta["source"] == SHIPPED_MODEL.name and meta["parity"]["ok"] is True
    assert meta["parity"]["min_cosine"] >= meta["parity"]["bound_cosine"] == 0.9999
    dmeta = cache.read_meta(detector)
    assert dmeta["key"] == cache.file_digest([weights_path(n) for n in NETWORKS])
    assert all(dmeta["parity"][n]["ok"] for n in NETWORKS)
    assert all((detector / f"{n}.onnx").is_file() for n in NETWORKS)


def test_build_onnx_leaves_current_entries_alone():
    """``bin/build-onnx`` rerun on an up-to-date package: nothing rebuilt, no TensorFlow import."""
    from facelivenet.runtime.bundle import shipped_keys

    keys = shipped_keys()
    metas = {k: cache.read_meta(cache.bundled_dir(k)) for k in keys}
    assert all(metas[k]["key"] == keys[k] for k in keys), "stale shipped ONNX files: run bin/build-onnx"
    before = {p: p.stat().st_mtime_ns for p in cache.BUNDLED_ONNX.glob("*/*")}
    code = ("import sys\nfrom facelivenet.runtime.bundle import main\nrc = main([])\n"
            "print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))\nsys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and all("up to date" in line for line in lines), lines
    assert {p: p.stat().st_mtime_ns for p in cache.BUNDLED_ONNX.glob("*/*")} == before


@pytest.mark.slow
def test_the_shipped_network_matches_keras_on_the_parity_faces(empty_cache):
    from facelivenet.api import load_model
    from facelivenet.auth.gallery import model_fingerprint
    from facelivenet.export import PARITY_BOUNDS, check_parity, load_face_dir
    from facelivenet.paths import parity_faces_dir
    from facelivenet.runtime import load_onnx_model

    onnx = load_onnx_model(SHIPPED_MODEL, build=False)  # no build: the package's own files
    assert onnx.path.parent == cache.bundled_dir("network") and not empty_cache.exists()
    keras = load_model(SHIPPED_MODEL)
    faces = load_face_dir(parity_faces_dir(), keras.image_size)
    assert len(faces) >= 8

    def run(model):
        a = model.analyze(faces)
        return a.embeddings, a.expressions

    parity = check_parity("onnx", lambda x: run(keras), lambda x: run(onnx), faces)
    assert parity.min_cosine >= PARITY_BOUNDS["onnx"][0] and parity.argmax_agreement == 1.0, parity
    assert onnx.fingerprint == model_fingerprint(keras) and onnx.config == keras.config


# --- where the files are looked up ---------------------------------------------------------------


def test_a_bundled_entry_is_used_only_for_the_bytes_it_was_built_from(empty_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(cache, "BUNDLED_ONNX", tmp_path / "bundled")
    bundled = cache.bundled_dir("network")
    bundled.mkdir(parents=True)
    cache.write_meta(bundled, {"kind": "network", "key": "a" * 64})
    assert cache.find_entry("network", "a" * 64) == bundled
    assert cache.find_entry("network", "b" * 64) is None  # another model: not the bundled one
    cached = cache.entry_dir("network", "b" * 64)
    cached.mkdir(parents=True)
    cache.write_meta(cached, {"kind": "network", "key": "b" * 64})
    assert cache.find_entry("network", "b" * 64) == cached
    (bundled / cache.META).unlink()  # an incomplete bundled entry is never used
    assert cache.find_entry("network", "a" * 64) is None


def test_the_default_model_and_detector_come_from_the_package_with_an_empty_cache(empty_cache):
    from facelivenet.runtime.inference import detector_folder, network_entry

    folder, meta = network_entry(SHIPPED_MODEL, build=False)
    assert folder == cache.bundled_dir("network") and meta["key"] == cache.file_digest([SHIPPED_MODEL])
    assert detector_folder(build=False) == cache.bundled_dir("detector")
    assert not empty_cache.exists()  # nothing built, nothing written


def test_the_default_runtime_is_auto_and_runs_on_onnx(empty_cache):
    from facelivenet import FaceAuth
    from facelivenet.runtime.inference import DEFAULT_RUNTIME

    assert DEFAULT_RUNTIME == "auto"
    auth = FaceAuth()
    assert auth.runtime == "onnx" and auth.model.path == cache.bundled_dir("network") / "network.onnx"
    assert auth.backend.detector.folder == cache.bundled_dir("detector")


def test_auto_keeps_a_model_loaded_on_keras_there(tiny_model):
    from facelivenet import FaceAuth

    auth = FaceAuth(tiny_model)
    assert auth.runtime == "keras" and auth.model is tiny_model


# --- no ONNX files and no exporter ----------------------------------------------------------------


@pytest.fixture()
def no_exporter(monkeypatch, empty_cache):
    """As if the export extra (tf2onnx) were not installed."""
    from facelivenet.runtime import inference

    monkeypatch.setattr(inference, "exporter_missing", lambda: ["tf2onnx"])


def test_onnx_without_files_or_exporter_is_one_line_naming_the_model_and_the_extra(no_exporter, tiny_model_path,
                                                                                   runner, tmp_path):
    from facelivenet import FaceAuth

    with pytest.raises(ModelLoadError, match=r"tiny\.keras: no ONNX files shipped or cached .* needs tf2onnx: "
                                             r"pip install '\.\[export\]'"):
        FaceAuth(tiny_model_path, runtime="onnx")
    image = tmp_path / "grey.png"
    import cv2

    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    res = runner.invoke(cli, ["analyze", str(image), "--model", str(tiny_model_path), "--runtime", "onnx"])
    assert res.exit_code == 2 and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: {tiny_model_path}: no ONNX files") and "pip install '.[export]'" in line


def test_auto_without_files_or_exporter_runs_on_keras_after_one_warning(no_exporter, tiny_model_path, runner,
                                                                        tmp_path):
    from facelivenet import FaceAuth

    with pytest.warns(RuntimeWarning, match=r"tiny\.keras: no ONNX files .*; running on keras"):
        auth = FaceAuth(tiny_model_path)
    assert auth.runtime == "keras" and auth.model.source == tiny_model_path
    import cv2

    image = tmp_path / "grey.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    res = runner.invoke(cli, ["analyze", str(image), "--model", str(tiny_model_path), "--cropped", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["faces"]) == 1  # the tiny Keras model's answer
    warnings = [line for line in res.stderr.splitlines() if "running on keras" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "pip install '.[export]'" in warnings[0]


# --- no TensorFlow or Keras on the default inference path ----------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_the_cli_runs_on_onnx_by_default_without_importing_tensorflow_or_keras(tmp_path):
    a, b = str(shared_data("photos", "obama.jpg")), str(shared_data("photos", "obama2.jpg"))
    group = str(shared_data("photos", "two_people.jpg"))
    clip = str(shared_data("videos", "d18.mp4"))
    empty = tmp_path / "cache"
    rc, out, modules, err = run_isolated(cli_code(["compare", a, b, "--json"]), empty)
    assert (rc, modules) == (0, []), err[-800:]
    assert json.loads(out)["same"] is True
    rc, out, modules, err = run_isolated(cli_code(["analyze", group, "--json"]), empty)
    assert (rc, modules) == (0, []) and len(json.loads(out)["faces"]) == 2, err[-800:]
    gallery = str(tmp_path / "people.json")
    rc, out, modules, err = run_isolated(cli_code(["enroll", "obama", a, "--gallery", gallery,
                                                               "--json"]), empty)
    assert (rc, modules) == (0, []), err[-800:]
    rc, out, modules, err = run_isolated(cli_code(["identify", b, "--gallery", gallery, "--json"]), empty)
    assert (rc, modules) == (0, []) and json.loads(out)["name"] == "obama", err[-800:]
    rc, out, modules, err = run_isolated(cli_code(
        ["verify-video", clip, "--ref", a, "--challenge", "surprise", "--stride", "3", "--json", "--quiet"]), empty)
    assert modules == [] and rc in (0, 1), err[-800:]
    report = json.loads(out)
    assert report["decision"] in ("accept", "reject") and report["reasons"]
    rc, out, modules, err = run_isolated(cli_code(
        ["realtime", "--source", clip, "--headless", "--ref", a, "--expressions", "surprise", "--time-limit", "2",
         "-q"]), empty)
    assert modules == [] and rc == 1, err[-800:]  # d18 is not the reference's person
    assert json.loads(out.splitlines()[-1])["event"] == "decision"
    assert not empty.exists()  # the package's ONNX files: nothing built into the cache


@pytest.mark.slow
@pytest.mark.realdata
def test_faceauth_and_serve_run_on_onnx_by_default_without_importing_tensorflow_or_keras(tmp_path):
    a, b = str(shared_data("photos", "obama.jpg")), str(shared_data("photos", "biden.jpg"))
    code = ("from facelivenet import FaceAuth\n"
            "auth = FaceAuth()\n"
            f"v = auth.verify({a!r}, {b!r})\n"
            "print(json.dumps({'runtime': auth.runtime, 'same': v.same}))\n"
            "from facelivenet.serve.service import Service\n"
            "from facelivenet.serve.settings import ServeSettings\n"
            f"service = Service(ServeSettings(state_dir={str(tmp_path / 'state')!r}))\n"
            "print(json.dumps({'serve': service.auth.runtime}))\n"
            "rc = 0\n")
    rc, out, modules, err = run_isolated(code, tmp_path / "cache")
    assert (rc, modules) == (0, []), err[-800:]
    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {"runtime": "onnx", "same": False} and second == {"serve": "onnx"}
