"""int8 on request (``--precision int8``, ``FaceAuth(precision="int8")``): the option, the
refusal on Keras, the parity bounds, the cache entry of its own, the same decisions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import ROOT, cli_code, run_isolated, shared_data
from facelivenet.cli import cli
from facelivenet.errors import ExportError, InputError
from facelivenet.runtime import cache

COMMANDS = ("analyze", "compare", "identify", "enroll", "verify-video", "realtime", "serve")
FACE = str(ROOT / "data" / "parity-faces" / "astronaut_centre.png")


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory):
    """A cache folder of its own for the module, holding the default model's float ONNX
    network (built here once, with TensorFlow, unless it is already cached)."""
    from facelivenet.paths import default_model_path
    from facelivenet.runtime.inference import network_entry

    root = tmp_path_factory.mktemp("int8-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(root))
        network_entry(default_model_path())
        yield root


# --- the option and the refusal -------------------------------------------------------------------


def test_every_inference_command_takes_precision_beside_runtime(runner):
    for command in COMMANDS:
        text = runner.invoke(cli, [command, "--help"]).stdout
        assert "--precision [fp32|int8]" in text and "--runtime" in text, command


@pytest.mark.parametrize("order", [("--precision", "int8", "--runtime", "keras"),
                                   ("--runtime", "keras", "--precision", "int8")])
def test_int8_on_keras_is_a_one_line_usage_error(runner, order):
    res = runner.invoke(cli, ["compare", FACE, FACE, *order])
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("Error: --precision int8 runs on ONNX Runtime; use --runtime onnx or --precision fp32 "
                           "(see '") and line.endswith(" compare --help')")
    res = runner.invoke(cli, ["compare", FACE, FACE, *order, "--json"])
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "usage"


def test_int8_on_keras_is_refused_before_tensorflow_loads(tmp_path):
    rc, out, modules, err = run_isolated(cli_code(["analyze", FACE, "--runtime", "keras", "--precision", "int8"]), tmp_path)
    assert rc == 2 and modules == [] and out == ""
    assert err.strip().startswith("Error: --precision int8 runs on ONNX Runtime")
    assert not any(tmp_path.iterdir())  # nothing was built


def test_facade_refuses_int8_on_keras_and_unknown_precisions_before_any_model_loads():
    from facelivenet import FaceAuth

    with pytest.raises(InputError, match="precision int8 runs on ONNX Runtime only"):
        FaceAuth("/no/such/model.keras", runtime="keras", precision="int8")
    with pytest.raises(InputError, match=r"precision must be one of \['fp32', 'int8'\]. Received: 'int4'"):
        FaceAuth("/no/such/model.keras", runtime="onnx", precision="int4")


def test_serve_hands_the_precision_to_its_workers(tmp_path):
    pytest.importorskip("fastapi")
    from facelivenet.cli.serve_cmds import _encode
    from facelivenet.serve.settings import ServeSettings

    settings = ServeSettings(state_dir=tmp_path, runtime="onnx", precision="int8")
    assert json.loads(_encode(settings, None))["precision"] == "int8"


def test_int8_keys_differ_from_the_float_entry_and_follow_the_float_bytes(tmp_path):
    from facelivenet.runtime.quantize import int8_key

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"float network one")
    b.write_bytes(b"float network two")
    assert int8_key(a) != int8_key(b) and int8_key(a) == int8_key(a)
    assert int8_key(a) != cache.file_digest([a])  # the precision is part of the key
    assert cache.entry_dir("network-int8", int8_key(a)).parent.name == "network-int8"


# --- the quantised network ----------------------------------------------------------------------


@pytest.mark.slow
def test_int8_network_is_quantised_and_within_the_int8_bounds_on_the_parity_faces(int8_cache):
    import onnx

    from facelivenet.export import PARITY_BOUNDS, load_face_dir
    from facelivenet.paths import parity_faces_dir
    from facelivenet.runtime import load_onnx_model

    fp32, int8 = load_onnx_model(precision="fp32"), load_onnx_model(precision="int8")
    faces = load_face_dir(parity_faces_dir(), fp32.image_size)
    a, b = fp32.analyze(faces), int8.analyze(faces)
    cos = np.sum(a.embeddings * b.embeddings, axis=1)  # unit rows
    bound_cos, bound_agree = PARITY_BOUNDS["onnx-int8"]
    assert PARITY_BOUNDS["onnx-int8"] == PARITY_BOUNDS["tflite-int8"]
    assert cos.min() >= bound_cos
    assert np.mean(a.expressions.argmax(1) == b.expressions.argmax(1)) >= bound_agree
    assert np.abs(a.embeddings - b.embeddings).max() > 1e-4  # really another network
    ops = {n.op_type for n in onnx.load(str(int8.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8.path.stat().st_size < 0.5 * fp32.path.stat().st_size
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    assert int8.fingerprint == fp32.fingerprint and int8.config == fp32.config  # galleries stay valid
    meta = cache.read_meta(int8.path.parent)
    assert meta["parity"]["ok"] and meta["parity"]["format"] == "onnx-int8" and meta["precision"] == "int8"


@pytest.mark.slow
def test_int8_entry_is_its_own_keyed_by_precision_read_back_and_built_without_tensorflow(
        int8_cache, monkeypatch, tmp_path):
    from facelivenet.paths import default_model_path
    from facelivenet.runtime import load_onnx_model, quantize
    from facelivenet.runtime.inference import network_entry

    float_folder, _ = network_entry(default_model_path())
    int8 = load_onnx_model(precision="int8")
    assert int8.path.parent == cache.entry_dir("network-int8", quantize.int8_key(float_folder / "network.onnx"))
    assert int8.path.parent != float_folder and load_onnx_model().path.parent == float_folder

    def no_build(*a, **k):
        raise AssertionError("rebuilt a cached entry")

    monkeypatch.setattr(quantize, "build_int8_network", no_build)
    assert load_onnx_model(precision="int8").path == int8.path
    monkeypatch.undo()

    # A cache holding only the float network: the int8 one is built from it, no TensorFlow.
    fresh = tmp_path / "cache"
    shutil.copytree(float_folder, fresh / "network" / float_folder.name)
    args = ["analyze", FACE, "--cropped", "--runtime", "onnx", "--precision", "int8", "--json"]
    rc, out, modules, err = run_isolated(cli_code(args), fresh)
    assert rc == 0 and modules == [], err
    assert len(json.loads(out)["faces"]) == 1
    assert [p.name for p in (fresh / "network-int8").iterdir()] == [int8.path.parent.name]


@pytest.mark.slow
def test_an_int8_network_outside_the_bounds_is_one_line_and_nothing_is_cached(int8_cache, monkeypatch, runner,
                                                                              tmp_path):
    from facelivenet.export import parity
    from facelivenet.paths import default_model_path
    from facelivenet.runtime import load_onnx_model
    from facelivenet.runtime.inference import network_entry

    float_folder, _ = network_entry(default_model_path())
    fresh = tmp_path / "cache"
    shutil.copytree(float_folder, fresh / "network" / float_folder.name)
    monkeypatch.setenv(cache.CACHE_ENV, str(fresh))
    monkeypatch.setitem(parity.PARITY_BOUNDS, "onnx-int8", (0.999999, 1.0))  # no int8 network meets this
    with pytest.raises(ExportError, match="the int8 network differs from the float one on real faces"):
        load_onnx_model(precision="int8")
    res = runner.invoke(cli, ["analyze", FACE, "--cropped", "--runtime", "onnx", "--precision", "int8"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "nothing cached" in res.stderr
    left = list((fresh / "network-int8").iterdir()) if (fresh / "network-int8").exists() else []
    assert left == []  # neither an entry nor a half-built folder


@pytest.mark.slow
@pytest.mark.realdata
def test_facade_int8_gives_the_fp32_verify_decisions_on_the_shared_photos(int8_cache):
    from facelivenet import FaceAuth

    photo = lambda name: str(shared_data("photos", name))  # noqa: E731
    pairs = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama-480p.jpg"), ("obama2.jpg", "obama-240p.jpg"),
             ("obama.jpg", "biden.jpg"), ("obama2.jpg", "biden.jpg"), ("biden.jpg", "alex-lacamoire.png"),
             ("lin-manuel-miranda.png", "alex-lacamoire.png")]
    fp32, int8 = FaceAuth(runtime="onnx"), FaceAuth(precision="int8")  # int8 makes auto run on onnx
    assert (fp32.precision, int8.precision) == ("fp32", "int8") and int8.runtime == "onnx"
    same = []
    for a, b in pairs:
        x, y = fp32.verify(photo(a), photo(b)), int8.verify(photo(a), photo(b))
        assert x.same == y.same, (a, b, x.distance, y.distance)
        assert abs(x.distance - y.distance) < 0.05, (a, b, x.distance, y.distance)
        same.append(x.same)
    assert same[:3] == [True] * 3 and not any(same[3:])  # the pairs test both decisions
