import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facelivenet.cli import cli
from facelivenet.export import PARITY_BOUNDS, check_parity, export, load_face_dir, load_runner

PARITY_FACES = Path(__file__).resolve().parent.parent / "data" / "parity-faces"


@pytest.fixture(scope="module")
def faces():
    return load_face_dir(PARITY_FACES, 80)


def _ours(model):
    def run(x):
        r = model.analyze(x)
        return r.embeddings, r.expressions

    return run


def _runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def test_parity_faces_are_real_crops(faces):
    assert faces.shape == (8, 80, 80, 3) and faces.dtype == np.uint8
    assert faces.std() > 20  # not blank


def test_export_tflite_float_cli_reports_parity(tiny_model_path, tmp_path):
    out = tmp_path / "m.tflite"
    res = _runner().invoke(cli, ["export", "--model", str(tiny_model_path), "--format", "tflite",
                                 "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    p = d["parity"]
    assert p["ok"] and p["faces"] == 8
    assert p["min_cosine"] >= PARITY_BOUNDS["tflite"][0]
    assert p["max_abs_embedding_diff"] < 1e-4 and p["argmax_agreement"] == 1.0
    assert d["bytes"] == out.stat().st_size > 1_000_000


def test_parity_refusal_removes_the_export(tiny_model_path, tmp_path, monkeypatch):
    import facelivenet.export as ex

    monkeypatch.setitem(ex.PARITY_BOUNDS, "tflite", (1.5, 1.0))  # impossible cosine
    out = tmp_path / "m.tflite"
    res = _runner().invoke(cli, ["export", "--model", str(tiny_model_path), "--format", "tflite", "--out", str(out)])
    assert res.exit_code == 2
    assert "export refused" in res.stderr and "min cosine" in res.stderr and "agreement" not in res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--format", "tflite-int8"], "needs --calibration"),
        (["--format", "tflite", "--calibration", "{tmp}"], "only used by --format tflite-int8"),
        (["--format", "tflite", "--faces", "{tmp}/nowhere"], "no such directory of face crops"),
        (["--format", "tflite", "--faces", "{tmp}"], "no readable face images"),
        (["--format", "tflite", "--out", "{model}"], "already exists"),
    ],
)
def test_export_usage_errors(tiny_model_path, tmp_path, args, fragment):
    args = [a.format(tmp=tmp_path, model=tiny_model_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "x.tflite")]
    res = _runner().invoke(cli, ["export", "--model", str(tiny_model_path), *args])
    assert res.exit_code == 2, res.output
    assert fragment in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["savedmodel", "onnx"])
def test_float_exports_match_keras(fmt, tiny_model, faces, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    out = export(tiny_model.network, fmt, tmp_path / f"m.{fmt}")
    parity = check_parity(fmt, _ours(tiny_model), load_runner(fmt, out), faces)
    assert parity.ok
    assert parity.max_abs_embedding_diff < 1e-4 and parity.argmax_agreement == 1.0


@pytest.mark.slow
def test_int8_export_keeps_embeddings_close(tiny_model, faces, tmp_path):
    out = export(tiny_model.network, "tflite-int8", tmp_path / "m8.tflite", calibration=faces)
    float_size = len(export(tiny_model.network, "tflite", tmp_path / "m.tflite").read_bytes())
    assert out.stat().st_size < float_size / 3  # int8 weights
    parity = check_parity("tflite-int8", _ours(tiny_model), load_runner("tflite-int8", out), faces)
    assert parity.min_cosine >= PARITY_BOUNDS["tflite-int8"][0]


def test_export_detector_stages_tflite(tmp_path):
    out = tmp_path / "detector"
    res = _runner().invoke(cli, ["export", "--detector", "--format", "tflite", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert set(d["stages"]) == {"pnet", "rnet", "onet"}
    assert set(d["stages"]["onet"]["parity"]["max_abs_diff"]) == {"offsets", "landmarks", "probabilities"}
    for stage, info in d["stages"].items():
        assert info["parity"]["ok"], stage
        assert max(info["parity"]["max_abs_diff"].values()) < 1e-4
        assert Path(info["path"]).stat().st_size == info["bytes"] > 10_000


def test_decision_agreement_ignores_undecided_inputs():
    from facelivenet.export import decision_agreement

    ours = np.array([[0.49, 0.51], [0.1, 0.9], [0.95, 0.05], [0.2, 0.8]])
    theirs = np.array([[0.52, 0.48], [0.3, 0.7], [0.9, 0.1], [0.6, 0.4]])
    # The first is undecided (0.51) and ignored; of the other three, the last disagrees.
    assert decision_agreement(ours, theirs) == pytest.approx(2 / 3)
    assert decision_agreement(ours[:1], theirs[:1]) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite-int8"])
def test_export_detector_other_formats(fmt, faces, tmp_path):
    from facelivenet.export import export_detector

    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    crops = load_face_dir(PARITY_FACES, 160)
    results = export_detector(fmt, tmp_path / "det", faces=crops, calibrate=fmt == "tflite-int8")
    for stage, (path, parity) in results.items():
        assert path.exists() and parity.ok, (stage, parity)
