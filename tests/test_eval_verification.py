"""The LFW verification protocol: pair images on disk, the pipeline, the command."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from facelivenet.cli import cli
from facelivenet.data.pairs import parse_pairs, read_pairs
from facelivenet.errors import DatasetError
from facelivenet.eval.crops import DetectedFace, analyze_files, center_box, flip_fused
from facelivenet.eval.verification import evaluate_verification, locate_pair_images

from conftest import shared_data

#: Four people, each a flat colour: a fake model embedding colour - 100 puts the
#: different pairs of PAIRS at orthogonal embeddings (squared distance 2).
COLOURS = {"Ann": (250, 100, 100), "Bob": (100, 250, 100), "Cy": (100, 100, 250), "Dee": (0, 100, 100)}
#: 2 folds x 2 same + 2 different pairs.
PAIRS = """2 2
Ann 1 2
Bob 1 2
Ann 1 Bob 1
Cy 1 Dee 1
Cy 1 2
Dee 1 2
Ann 2 Cy 2
Bob 2 Dee 2
"""


@pytest.fixture
def lfw_like(tmp_path):
    """IMAGES/NAME/NAME_000k.jpg for the four people, and pairs.txt."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for name, colour in COLOURS.items():
        (images / name).mkdir(parents=True)
        for k in (1, 2):
            img = np.clip(np.array(colour) + rng.integers(-5, 6, (60, 50, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(images / name / f"{name}_{k:04d}.jpg", quality=95)
    (tmp_path / "pairs.txt").write_text(PAIRS)
    return tmp_path


class ColourModel:
    """Fake FaceModel: the embedding is the unit mean colour of the face; counts faces seen."""

    def __init__(self):
        self.config = SimpleNamespace(image_size=40, embedding_size=3, alignment="crop", margin=8,
                                      expression_classes=("happy", "neutral"))
        self.source = None
        self.calls: list[int] = []

    def analyze(self, faces):
        faces = [np.asarray(f, np.float64) for f in faces]
        self.calls.append(len(faces))
        e = np.array([f.reshape(-1, 3).mean(axis=0) - 100.0 for f in faces])
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        p = np.tile([0.25, 0.75], (len(faces), 1))
        return SimpleNamespace(embeddings=e.astype(np.float32), expressions=p.astype(np.float32))


def test_locate_pair_images_folds_and_distinct_images(lfw_like):
    found = locate_pair_images(read_pairs(lfw_like / "pairs.txt"), lfw_like / "images")
    assert len(found.paths) == 8                      # every distinct image once
    np.testing.assert_array_equal(found.folds, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(found.issame, [1, 1, 0, 0, 1, 1, 0, 0])
    assert found.paths[found.first[2]].endswith("Ann_0001.jpg")
    assert found.paths[found.second[2]].endswith("Bob_0001.jpg")
    assert found.missing == () and found.skipped_pairs == 0


def test_missing_images_are_listed_or_skipped(lfw_like):
    (lfw_like / "images" / "Bob" / "Bob_0002.jpg").unlink()
    (lfw_like / "images" / "Cy" / "Cy_0001.jpg").unlink()
    pairs = read_pairs(lfw_like / "pairs.txt")
    with pytest.raises(DatasetError, match=r"2 image\(s\) .* missing: Bob/Bob_0002, Cy/Cy_0001 .*--skip-missing"):
        locate_pair_images(pairs, lfw_like / "images")
    found = locate_pair_images(pairs, lfw_like / "images", skip_missing=True)
    assert found.missing == ("Bob/Bob_0002", "Cy/Cy_0001")
    assert found.skipped_pairs == 4                    # Bob 1 2, Cy 1 Dee 1, Cy 1 2, Bob 2 Dee 2
    np.testing.assert_array_equal(found.folds, [0, 0, 1, 1])     # the others keep their fold
    np.testing.assert_array_equal(found.issame, [1, 0, 1, 0])


def test_one_kind_of_pair_is_refused(lfw_like):
    pairs = parse_pairs("2 1\nAnn 1 2\nBob 1 2\nCy 1 2\nDee 1 2\n")
    with pytest.raises(DatasetError, match="same and different"):
        locate_pair_images(pairs, lfw_like / "images")


def test_evaluate_with_a_model_that_separates_people(lfw_like):
    model = ColourModel()
    report = evaluate_verification(model, read_pairs(lfw_like / "pairs.txt"), lfw_like / "images")
    d = report.to_dict()
    assert model.calls == [8]                          # one batched call, each image once
    assert d["accuracy"] == 1.0 and d["accuracy_std"] == 0.0
    assert d["auc"] == 1.0 and d["eer"] == 0.0
    assert d["threshold_accuracy"] == 1.0
    assert d["pairs"] == 8 and d["folds"] == 2 and d["mode"] == "aligned"
    assert json.dumps(d)                               # JSON-serialisable as is


def test_flip_fuses_the_mirrored_embedding():
    e = np.array([[1.0, 0.0], [0.0, 1.0]])
    f = np.array([[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(flip_fused(e, f), [[2 ** -0.5, 2 ** -0.5], [0.0, 1.0]], atol=1e-7)


def test_analyze_files_with_flip_sees_both_orientations(lfw_like):
    left_red = np.zeros((40, 40, 3), np.uint8)
    left_red[:, :20, 0] = 255
    path = lfw_like / "half.png"
    Image.fromarray(left_red).save(path)
    seen = []

    class Recorder(ColourModel):
        def analyze(self, faces):
            seen.extend(np.asarray(f) for f in faces)
            return super().analyze(faces)

    out = analyze_files(Recorder(), [str(path)], flip=True)
    assert len(seen) == 2 and seen[1][0, -1, 0] == 255 and seen[1][0, 0, 0] == 0
    assert out.embeddings.shape == (1, 3)
    assert np.linalg.norm(out.embeddings[0]) == pytest.approx(1.0, abs=1e-6)


class FakeDetector:
    """Finds a face (the middle third) only in images whose top-left pixel is bright."""

    def detect_batch(self, images):
        out = []
        for im in images:
            h, w = im.shape[:2]
            if im[0, 0].mean() > 100:
                out.append([SimpleNamespace(box=(w / 3, h / 3, 2 * w / 3, 2 * h / 3), score=0.99,
                                            landmarks=np.zeros((5, 2), np.float32))])
            else:
                out.append([])
        return out


def test_detected_face_aligns_or_falls_back_to_a_centre_crop(tmp_path):
    bright = np.full((90, 120, 3), 200, np.uint8)
    dark = np.full((90, 120, 3), 10, np.uint8)
    paths = []
    for name, img in (("bright.png", bright), ("dark.png", dark)):
        Image.fromarray(img).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    model = ColourModel()
    crops = DetectedFace(model.config, FakeDetector())
    faces, found = crops([bright, dark])
    assert found == [True, False]
    assert all(f.shape == (40, 40, 3) for f in faces)
    out = analyze_files(model, paths, crops=crops)
    assert out.no_face == (paths[1],)
    assert center_box((90, 120)) == (37.5, 22.5, 82.5, 67.5)


# --- the command -----------------------------------------------------------------------------

def test_cli_json_and_roc_png(runner, lfw_like, tiny_model_path):
    roc = lfw_like / "roc.png"
    res = runner.invoke(cli, ["evaluate-verification", "--pairs", str(lfw_like / "pairs.txt"),
                              "--images", str(lfw_like / "images"), "--model", str(tiny_model_path),
                              "--aligned", "--flip", "--roc", str(roc), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("accuracy", "accuracy_std", "val", "far", "auc", "eer", "threshold", "pairs", "folds",
                "missing", "no_face"):
        assert key in d
    assert d["pairs"] == 8 and d["flip"] is True and 0.0 <= d["accuracy"] <= 1.0
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    human = runner.invoke(cli, ["evaluate-verification", "--pairs", str(lfw_like / "pairs.txt"), "--aligned",
                                "--images", str(lfw_like / "images"), "--model", str(tiny_model_path), "-q"])
    assert human.exit_code == 0 and "accuracy:" in human.stdout and "EER:" in human.stdout
    # 4 different pairs cannot measure FAR 1e-3: said in the report, the summary and on stderr.
    assert d["far_measurable"] is False and "not measurable" in human.stdout and "warning:" in human.stderr
    # The model's own threshold, computed by hand from the report's distances.
    own = d["model_threshold"]
    from facelivenet.api import load_model

    assert own["threshold"] == pytest.approx(load_model(tiny_model_path).config.verification_threshold)
    assert 0 <= own["accuracy"] <= 1 and 0 <= own["tar"] <= 1 and 0 <= own["far"] <= 1
    assert "model's:" in human.stdout


def test_operating_point_and_pair_limit():
    from facelivenet.data.pairs import Pair, PairsFile
    from facelivenet.eval.verification import limit_pairs, operating_point

    op = operating_point(np.array([0.1, 0.5, 0.9, 1.5]), np.array([True, True, False, False]), 1.0)
    assert op == {"threshold": 1.0, "accuracy": 0.75, "tar": 1.0, "far": 0.5}
    pairs = PairsFile(2, 2, tuple(Pair("a", i + 1, "a" if (i // 2) % 2 == 0 else "b", i + 2) for i in range(8)))
    small = limit_pairs(pairs, 4)
    assert len(small.pairs) == 4 and small.issame.sum() == 2  # both kinds kept
    assert limit_pairs(pairs, None) is pairs and limit_pairs(pairs, 100) is pairs


def test_cli_detects_by_default_and_limits_pairs(runner, lfw_like, tiny_model_path):
    res = runner.invoke(cli, ["evaluate-verification", "--pairs", str(lfw_like / "pairs.txt"),
                              "--images", str(lfw_like / "images"), "--model", str(tiny_model_path),
                              "--max-pairs", "4", "--json", "-q"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["mode"] == "detect" and d["pairs"] == 4


def test_cli_missing_images_exit_2_unless_skipped(runner, lfw_like, tiny_model_path):
    (lfw_like / "images" / "Dee" / "Dee_0002.jpg").unlink()
    args = ["evaluate-verification", "--pairs", str(lfw_like / "pairs.txt"), "--images",
            str(lfw_like / "images"), "--model", str(tiny_model_path), "--aligned", "--json", "-q"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 2
    assert "Dee/Dee_0002" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(cli, args + ["--skip-missing"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["missing"] == ["Dee/Dee_0002"] and d["skipped_pairs"] == 2 and d["pairs"] == 6


def test_cli_bad_pairs_file_and_roc_name(runner, lfw_like, tiny_model_path):
    (lfw_like / "bad.txt").write_text("2 2\nAnn 1\n")
    res = runner.invoke(cli, ["evaluate-verification", "--pairs", str(lfw_like / "bad.txt"),
                              "--images", str(lfw_like / "images"), "--model", str(tiny_model_path)])
    assert res.exit_code == 2 and "bad.txt:2" in res.stderr
    res = runner.invoke(cli, ["evaluate-verification", "--pairs", str(lfw_like / "pairs.txt"),
                              "--images", str(lfw_like / "images"), "--roc", "x.jpg"])
    assert res.exit_code == 2 and ".png" in res.stderr


# --- real data --------------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_lfw_pairs_file():
    pairs = read_pairs(shared_data("lfw", "pairs.txt"))
    assert (pairs.folds, pairs.pairs_per_fold, len(pairs.pairs)) == (10, 300, 6000)
    assert pairs.issame.sum() == 3000
    found = locate_pair_images(pairs, shared_data("lfw", "lfw_deepfunneled"))
    assert found.missing == () and len(found.paths) == 7701
    assert np.bincount(found.folds).tolist() == [600] * 10


def small_lfw_pairs(path, per_fold: int = 3, folds: int = 2) -> None:
    """A pairs file of the first ``per_fold`` same and different pairs of the real file's first folds."""
    lines = shared_data("lfw", "pairs.txt").read_text().splitlines()[1:]
    out = [f"{folds} {per_fold}"]
    for k in range(folds):
        block = lines[k * 600 : (k + 1) * 600]
        out += block[:per_fold] + block[300 : 300 + per_fold]
    path.write_text("\n".join(out) + "\n")


@pytest.mark.slow
@pytest.mark.realdata
def test_real_lfw_slice_with_detection_end_to_end(runner, tmp_path, tiny_model_path):
    images = shared_data("lfw", "lfw_deepfunneled")
    small_lfw_pairs(tmp_path / "pairs.txt")
    roc = tmp_path / "roc.png"
    res = runner.invoke(cli, ["evaluate-verification", "--pairs", str(tmp_path / "pairs.txt"),
                              "--images", str(images), "--model", str(tiny_model_path), "--detect",
                              "--roc", str(roc), "--json", "-q"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["pairs"] == 12 and d["folds"] == 2 and d["mode"] == "detect"
    assert len(d["no_face"]) <= 1                       # deep-funneled LFW: a face in (nearly) every image
    assert 0.0 <= d["auc"] <= 1.0 and roc.exists()
