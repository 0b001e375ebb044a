import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from facelivenet.cli import cli


@pytest.fixture
def face_png(tmp_path, rng):
    p = tmp_path / "face.png"
    Image.fromarray(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)).save(p)
    return p


def test_help_lists_the_working_commands(runner):
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0
    for name in ("info", "analyze", "create-model"):
        assert name in res.output


def test_info_json(runner, tiny_model_path):
    res = runner.invoke(cli, ["info", str(tiny_model_path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["config"]["preset"] == "simple"
    assert d["config"]["image_size"] == 80
    assert d["config"]["expression_classes"][3] == "happy"
    assert d["parameters"]["total"] > d["parameters"]["stem_and_branch1"] > 0
    human = runner.invoke(cli, ["info", "--model", str(tiny_model_path)])
    assert human.exit_code == 0 and "N35/N17/N8 = 1/1/1" in human.stdout


def test_analyze_json_and_embeddings_file(runner, tiny_model_path, face_png, tmp_path):
    out = tmp_path / "emb.npy"
    res = runner.invoke(cli, ["analyze", "--model", str(tiny_model_path), "--json", "--cropped",
                              "--embeddings", str(out), str(face_png), str(face_png)])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert len(d["faces"]) == 2
    face = d["faces"][0]
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-4
    assert face["expression"] in face["probabilities"]
    assert abs(face["embedding_norm"] - 1) < 1e-4
    emb = np.load(out)
    assert emb.shape == (2, 32)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["analyze", "--model", "{model}", "{tmp}/missing.png"], "missing.png: no such file"),
        (["analyze", "--model", "{model}", "{tmp}/bad.jpg"], "bad.jpg: not a readable image"),
        (["analyze", "--model", "{tmp}/bad.jpg", "{face}"], "bad.jpg: not a .keras model file"),
        (["info", "{tmp}/nomodel.keras"], "nomodel.keras: no such model file"),
        (["info", "{model}", "--model", "{tmp}/bad.jpg"], "either as MODEL or as --model"),
        (["create-model", "{tmp}/x.h5"], "must end in .keras"),
        (["create-model", "{model}"], "already exists"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(runner, tiny_model_path, face_png, tmp_path, args, fragment):
    (tmp_path / "bad.jpg").write_bytes(b"\x00garbage" * 20)
    args = [a.format(model=tiny_model_path, tmp=tmp_path, face=face_png) for a in args]
    res = runner.invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert fragment in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_usage_error_exit_code_2(runner):
    res = runner.invoke(cli, ["analyze"])
    assert res.exit_code == 2


def test_create_model_writes_a_loadable_model(runner, tmp_path):
    out = tmp_path / "new.keras"
    res = runner.invoke(cli, ["create-model", str(out), "--image-size", "80", "--embedding-size", "16",
                              "--classes", "neutral,happy,surprise", "--json"])
    assert res.exit_code == 0, res.output
    from facelivenet.api import load_model

    m = load_model(out)
    assert m.expression_classes == ("neutral", "happy", "surprise")
    assert m.config.embedding_size == 16


def test_python_dash_m_runs_the_cli_without_backend_noise():
    proc = subprocess.run([sys.executable, "-m", "facelivenet", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "create-model" in proc.stdout
    assert proc.stderr == ""


def test_real_process_error_has_no_tensorflow_log_lines(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "facelivenet", "info", str(tmp_path / "nope.keras")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope.keras'}: no such model file"]


def test_create_model_defaults_match_the_shipped_model(runner, tmp_path):
    import zipfile

    from facelivenet.paths import default_model_path, model_expression_classes

    out = tmp_path / "d.keras"
    res = runner.invoke(cli, ["create-model", str(out), "--image-size", "80", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["config"]["embedding_size"] == 128
    assert model_expression_classes(out) == model_expression_classes(default_model_path())
    assert zipfile.is_zipfile(out)


def test_challenge_checks_names_against_the_model_and_is_quiet_on_request(runner, tmp_path):
    res = runner.invoke(cli, ["challenge", "--expressions", "happy,dance", "--key-file", str(tmp_path / "k")])
    assert res.exit_code == 2 and "no expression dance" in res.stderr
    res = runner.invoke(cli, ["challenge", "--expressions", "happy", "--key-file", str(tmp_path / "k"), "-q"])
    assert res.exit_code == 0 and res.stderr == "" and res.stdout.count(".") == 1
