"""The ONNX Runtime inference path: parity with Keras, the cache, no TensorFlow, same decisions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import cli_code, run_isolated, shared_data
from facelivenet.cli import cli
from facelivenet.errors import InputError, ModelLoadError
from facelivenet.runtime import cache


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A cache folder of its own for the module (never the user's)."""
    root = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def parity_faces(tiny_model):
    from facelivenet.export import load_face_dir
    from facelivenet.paths import parity_faces_dir

    return load_face_dir(parity_faces_dir(), tiny_model.image_size)


# --- the cache ----------------------------------------------------------------------------------


def test_cache_root_prefers_our_variable_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "facelivenet"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "facelivenet"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "ours"))
    assert cache.cache_root() == tmp_path / "ours"


def test_the_key_follows_the_bytes_of_the_model_file(tmp_path):
    a, b, c = tmp_path / "a.keras", tmp_path / "b.keras", tmp_path / "c.keras"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights one")
    c.write_bytes(b"weights two")
    assert cache.file_digest([a]) == cache.file_digest([b]) != cache.file_digest([c])
    assert cache.entry_dir("network", cache.file_digest([a])) != cache.entry_dir("network", cache.file_digest([c]))


def test_an_interrupted_build_leaves_no_entry_and_a_finished_one_is_complete(tmp_path):
    from facelivenet.runtime.build import build_entry

    folder = tmp_path / "network" / "k"

    def fail(tmp):
        (tmp / "network.onnx").write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build_entry(folder, fail)
    assert not folder.exists() and list(folder.parent.iterdir()) == []

    def make(tmp):
        (tmp / "network.onnx").write_bytes(b"whole")
        return {"kind": "network"}

    build_entry(folder, make)
    assert cache.read_meta(folder) == {"kind": "network"} and (folder / "network.onnx").read_bytes() == b"whole"


def test_no_entry_and_no_build_is_a_clear_error(onnx_cache, tiny_model_path):
    from facelivenet.runtime import load_onnx_model

    with pytest.raises(ModelLoadError, match=r"tiny.keras: no ONNX files shipped or cached \(in .*onnx-cache"):
        load_onnx_model(tiny_model_path, build=False)


def test_float_input_makes_a_uint8_stage_take_floats(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from facelivenet.export import ExportError
    from facelivenet.runtime.build import float_input

    def graph(first):
        nodes = [first, helper.make_node("Relu", ["x"], ["y"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    good = tmp_path / "good.onnx"
    onnx.save(graph(helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT)), str(good))
    float_input(good)
    sess = ort.InferenceSession(str(good), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": np.array([[1.25, -3.0]], np.float32)})
    np.testing.assert_array_equal(y, [[1.25, 0.0]])  # the fraction survives: no uint8 on the way
    bad = tmp_path / "bad.onnx"
    onnx.save(graph(helper.make_node("Cast", ["image"], ["x"], to=TensorProto.INT32)), str(bad))
    with pytest.raises(ExportError, match="does not start with a Cast to float"):
        float_input(bad)


# --- choosing the runtime -------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_the_pyramid_thread_works_in_a_forked_worker():
    # The ONNX detector resizes its pyramid on a helper thread. A forked process (a serve
    # worker) inherits its parent's executor but not the thread: work sent there would
    # wait forever, so each process gets its own.
    from facelivenet.runtime.detector import _pyramid_thread

    assert _pyramid_thread().submit(lambda: 1).result(timeout=10) == 1
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when its resize thread answers
        try:
            os._exit(0 if _pyramid_thread().submit(lambda: 2).result(timeout=10) == 2 else 1)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_unknown_runtime_is_refused_before_any_model_loads():
    from facelivenet import FaceAuth

    with pytest.raises(InputError, match=r"runtime must be one of \['auto', 'keras', 'onnx'\]. Received: 'tflite'"):
        FaceAuth("/no/such/model.keras", runtime="tflite")


def test_cli_runtime_option_lists_the_choices(runner):
    res = runner.invoke(cli, ["compare", "a.jpg", "b.jpg", "--runtime", "tflite"])
    assert res.exit_code == 2 and "'tflite' is not one of 'auto', 'keras', 'onnx'" in res.stderr
    for command in ("compare", "analyze", "identify", "enroll", "verify-video", "realtime", "serve"):
        assert "--runtime [auto|keras|onnx]" in runner.invoke(cli, [command, "--help"]).stdout, command


# --- parity with Keras ------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_network_matches_keras_and_is_cached_by_model_file(onnx_cache, tiny_model, tiny_model_path,
                                                                 parity_faces, monkeypatch, tmp_path):
    from facelivenet.api import new_model
    from facelivenet.auth.gallery import model_fingerprint
    from facelivenet.export import PARITY_BOUNDS
    from facelivenet.runtime import build, load_onnx_model

    onnx_model = load_onnx_model(tiny_model_path)
    ours, theirs = tiny_model.analyze(parity_faces), onnx_model.analyze(parity_faces)
    cos = np.sum(ours.embeddings * theirs.embeddings, axis=1)  # unit rows
    assert cos.min() >= PARITY_BOUNDS["onnx"][0]
    assert np.array_equal(ours.expressions.argmax(1), theirs.expressions.argmax(1))
    assert np.abs(ours.expressions - theirs.expressions).max() < 1e-4
    assert onnx_model.config == tiny_model.config and onnx_model.expression_classes == tiny_model.expression_classes
    assert onnx_model.fingerprint == model_fingerprint(tiny_model)  # galleries work across runtimes
    assert onnx_model.path.parent == cache.entry_dir("network", cache.file_digest([tiny_model_path]))

    # A second load reads the cache: no export (which would need TensorFlow).
    def no_build(*a, **k):
        raise AssertionError("rebuilt a cached entry")

    monkeypatch.setattr(build, "build_network", no_build)
    again = load_onnx_model(tiny_model_path)
    np.testing.assert_array_equal(again.analyze(parity_faces).embeddings, theirs.embeddings)
    # Another model file (other weights) is another entry: built, not read from this one.
    other = tmp_path / "other.keras"
    new_model(tiny_model.config, seed=1).save(other)
    with pytest.raises(AssertionError, match="rebuilt"):
        load_onnx_model(other)


def _match(keras_dets, onnx_dets):
    from facelivenet.detect.boxes import iou

    worst_iou, worst_px = 1.0, 0.0
    for d in keras_dets:
        overlaps = iou(np.array(d.box), np.array([e.box for e in onnx_dets]))[0]
        j = int(np.argmax(overlaps))
        worst_iou = min(worst_iou, float(overlaps[j]))
        worst_px = max(worst_px, float(np.abs(d.landmarks - onnx_dets[j].landmarks).max()))
    return worst_iou, worst_px


@pytest.mark.slow
@pytest.mark.realdata
def test_onnx_detector_finds_the_keras_faces_on_real_photos(onnx_cache):
    from facelivenet.detect import FaceDetector
    from facelivenet.faces import MIN_FACE_SCORE, is_image_file
    from facelivenet.images import read_image
    from facelivenet.runtime import OnnxFaceDetector

    photos = sorted(p for p in shared_data("photos").rglob("*") if is_image_file(p))
    assert len(photos) >= 10
    keras_detector, onnx_detector = FaceDetector(), OnnxFaceDetector()
    faces = 0
    for photo in photos:
        image = read_image(photo)
        a = [d for d in keras_detector.detect(image) if d.score >= MIN_FACE_SCORE]
        b = [d for d in onnx_detector.detect(image) if d.score >= MIN_FACE_SCORE]
        assert len(a) == len(b), photo.name
        if a:
            worst_iou, worst_px = _match(a, b)
            assert worst_iou >= 0.95 and worst_px <= 1.0, (photo.name, worst_iou, worst_px)
        faces += len(a)
    assert faces >= len(photos)  # two_people.jpg and obama_and_biden.jpg hold several


# --- the inference path without TensorFlow, and the same decisions --------------------------------------




@pytest.mark.slow
@pytest.mark.realdata
def test_compare_and_analyze_on_onnx_never_import_tensorflow_and_agree_with_keras(onnx_cache, runner):
    from facelivenet.runtime.inference import detector_folder, network_entry
    from facelivenet.paths import default_model_path

    a, b = str(shared_data("photos", "obama.jpg")), str(shared_data("photos", "biden.jpg"))
    group = str(shared_data("photos", "two_people.jpg"))
    detector_folder(), network_entry(default_model_path())  # built once, here (TensorFlow)
    rc, out, modules, _ = run_isolated(cli_code(["compare", a, b, "--runtime", "onnx", "--json"]), onnx_cache)
    assert modules == [] and rc == 1
    keras = runner.invoke(cli, ["compare", a, b, "--runtime", "keras", "--json"])
    ours, theirs = json.loads(out), json.loads(keras.stdout)
    assert keras.exit_code == rc and ours["same"] == theirs["same"] is False
    assert abs(ours["distance"] - theirs["distance"]) < 1e-3
    rc, out, modules, _ = run_isolated(cli_code(["analyze", group, "--runtime", "onnx", "--json"]), onnx_cache)
    assert modules == [] and rc == 0
    keras = runner.invoke(cli, ["analyze", group, "--runtime", "keras", "--json"])
    ours, theirs = json.loads(out)["faces"], json.loads(keras.stdout)["faces"]
    assert len(ours) == len(theirs) == 2
    assert [f["expression"] for f in ours] == [f["expression"] for f in theirs]
    for f, g in zip(ours, theirs):
        assert np.abs(np.subtract(f["box"], g["box"])).max() <= 1.0


@pytest.mark.slow
@pytest.mark.realdata
def test_facade_and_verify_video_give_the_keras_decision_on_a_real_clip(onnx_cache, runner, tmp_path):
    import cv2

    from facelivenet import FaceAuth

    clip = shared_data("videos", "d18.mp4")
    ok, frame = cv2.VideoCapture(str(clip)).read()
    assert ok
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), frame)
    decisions = {}
    for runtime in ("keras", "onnx"):
        outcome = FaceAuth(runtime=runtime).authenticate(str(clip), str(ref), challenge="surprise", stride=2)
        decisions[runtime] = (outcome.decision.decision, tuple(outcome.decision.codes))
    assert decisions["onnx"] == decisions["keras"]
    for tracking in ([], ["--track", "5"]):  # tracking between full detections: the same decision too
        res = runner.invoke(cli, ["verify-video", str(clip), "--ref", str(ref), "--challenge", "surprise",
                                  "--stride", "2", "--runtime", "onnx", "--json", "--quiet", *tracking])
        assert res.exit_code in (0, 1), res.output
        report = json.loads(res.stdout)
        assert (report["decision"], tuple(r["code"] for r in report["reasons"])) == decisions["keras"], tracking


# --- tracking between detections ---------------------------------------------------------------------


@pytest.mark.slow
def test_tracking_follows_the_face_and_sees_a_second_one_at_the_next_full_detection(astronaut_canvas):
    from facelivenet.detect import FaceDetector
    from facelivenet.detect.boxes import iou
    from facelivenet.runtime import TrackingDetector

    one, two = astronaut_canvas
    detector = FaceDetector()
    moved = [np.roll(one, 4 * i, axis=1) for i in range(2)]
    tracker = TrackingDetector(detector, every=3)
    found = [tracker.detect(f) for f in moved + [two, two, two]]
    assert (tracker.full_runs, tracker.followed) == (2, 3)  # frames 0 and 3 ran the full cascade
    for frame, dets in zip(moved, found):  # the followed box is the full detector's face
        full = detector.detect(frame)[0]
        assert len(dets) == 1 and iou(np.array(full.box), np.array([dets[0].box]))[0, 0] >= 0.85
        assert np.abs(full.landmarks - dets[0].landmarks).max() <= 0.05 * full.width
    # The second face enters on frame 2, a follow-up frame (only the known box is looked at);
    # the full detection of frame 3 finds both, and frame 4 follows both.
    assert [len(d) for d in found] == [1, 1, 1, 2, 2]


@pytest.mark.slow
def test_a_lost_face_runs_the_full_detector_at_once(astronaut_canvas):
    from facelivenet.detect import FaceDetector
    from facelivenet.runtime import TrackingDetector

    one, _ = astronaut_canvas
    tracker = TrackingDetector(FaceDetector(), every=10)
    blank = np.full_like(one, 128)
    counts = [len(tracker.detect(f)) for f in (one, one, blank, one)]
    assert counts == [1, 1, 0, 1]
    assert (tracker.full_runs, tracker.followed) == (3, 1)  # the blank frame, then no track to follow
    # A finer look (the analyser's periodic full-resolution search) runs the full detector,
    # and the track goes on from its face: the next downscaled frame is followed.
    tracker = TrackingDetector(FaceDetector(), every=10)
    views = [tracker.detect(one, downscale=2.0), tracker.detect(one), tracker.detect(one, downscale=2.0)]
    assert [len(v) for v in views] == [1, 1, 1] and (tracker.full_runs, tracker.followed) == (2, 1)
    assert views[2][0].box == pytest.approx(views[1][0].box, abs=0.05 * views[1][0].width)
    with pytest.raises(InputError, match="N >= 1"):
        TrackingDetector(FaceDetector(), every=0)


@pytest.fixture(scope="module")
def astronaut_canvas():
    """(one face, two faces): the astronaut photo on a wide grey canvas, once or twice."""
    from facelivenet.auth.demo import astronaut_photo

    face = astronaut_photo()
    h, w = face.shape[:2]
    one = np.full((h, 2 * w, 3), 128, np.uint8)
    one[:, :w] = face
    two = one.copy()
    two[:, w:] = face
    return one, two


@pytest.mark.slow
@pytest.mark.realdata
def test_a_gallery_enrolled_on_onnx_is_accepted_and_matched_on_keras(onnx_cache, runner, tmp_path):
    photos = [str(shared_data("photos", n)) for n in ("obama.jpg", "obama2.jpg", "obama-480p.jpg")]
    gallery = str(tmp_path / "people.json")
    res = runner.invoke(cli, ["enroll", "obama", *photos[:2], "--gallery", gallery, "--runtime", "onnx", "--json"])
    assert res.exit_code == 0, res.output
    found = {}
    for runtime in ("keras", "onnx"):
        res = runner.invoke(cli, ["identify", photos[2], "--gallery", gallery, "--runtime", runtime, "--json"])
        assert res.exit_code == 0, res.output
        found[runtime] = json.loads(res.stdout)
    assert found["keras"]["name"] == found["onnx"]["name"] == "obama"
    assert abs(found["keras"]["distance"] - found["onnx"]["distance"]) < 1e-3


@pytest.mark.slow
def test_serve_runs_on_the_runtime_it_is_given(onnx_cache, runner, tmp_path):
    pytest.importorskip("fastapi")
    from facelivenet.serve.service import Service
    from facelivenet.serve.settings import ServeSettings

    service = Service(ServeSettings(state_dir=tmp_path / "state", runtime="onnx"))
    assert service.auth.runtime == "onnx" and service.auth.model.path.suffix == ".onnx"
    assert "--runtime [auto|keras|onnx]" in runner.invoke(cli, ["serve", "--help"]).stdout
