"""Expression evaluation: class matching, the report, subject-independent cross-validation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from facelivenet.cli import cli
from facelivenet.errors import DatasetError
from facelivenet.eval.expression import (
    class_index, cross_validate_expression, evaluate_expression, match_classes, subject_folds,
)

from conftest import shared_data

#: Each expression folder holds images of one flat colour (a colour-reading fake model
#: then recognises them); anger is red, happy green, surprise blue.
COLOURS = {"anger": (255, 0, 0), "happy": (0, 255, 0), "surprise": (0, 0, 255)}


def make_dataset(root: Path, subjects: int = 4, colours=COLOURS, frames: int = 2) -> Path:
    """CK+-style ``root/<expression>/S<subj>_<seq>_<frame>.png`` of flat colours."""
    for c, (name, colour) in enumerate(colours.items()):
        (root / name).mkdir(parents=True)
        for s in range(subjects):
            for f in range(frames):
                img = np.zeros((48, 48, 3), np.uint8) + np.array(colour, np.uint8)
                Image.fromarray(img).save(root / name / f"S{s + 10:03d}_{c + 1:03d}_{f:08d}.png")
    return root


class ColourModel:
    """Fake FaceModel: probabilities from the face's mean colour over its classes' colours."""

    def __init__(self, classes=("angry", "happy", "sad", "surprise"), source=None):
        self.config = SimpleNamespace(expression_classes=tuple(classes), embedding_size=3, image_size=48)
        self.source = source
        palette = {"angry": (255, 0, 0), "anger": (255, 0, 0), "happy": (0, 255, 0),
                   "surprise": (0, 0, 255), "sad": (128, 128, 128)}
        self.palette = np.array([palette[c] for c in classes], np.float64)

    def analyze(self, faces):
        means = np.array([np.asarray(f, np.float64).reshape(-1, 3).mean(axis=0) for f in faces])
        score = -np.linalg.norm(means[:, None, :] - self.palette[None], axis=2)
        p = np.exp(score - score.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        e = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-9)
        return SimpleNamespace(embeddings=e.astype(np.float32), expressions=p.astype(np.float32))


def test_class_matching_case_and_synonyms():
    classes = ("angry", "Happy", "sad", "surprise")
    assert class_index("HAPPY", classes) == 1
    assert class_index("anger", classes) == 0 and class_index("sadness", classes) == 2
    assert class_index("contempt", classes) is None
    m = match_classes(["anger", "contempt", "happy"], classes, skip_unknown=True)
    assert dict(m.index) == {"anger": 0, "happy": 1} and m.unknown == ("contempt",)
    with pytest.raises(DatasetError, match=r"\['contempt'\] match no expression class.*--skip-unknown"):
        match_classes(["anger", "contempt"], classes)
    with pytest.raises(DatasetError, match="no folder matches"):
        match_classes(["contempt"], classes, skip_unknown=True)


def test_evaluate_expression_report(tmp_path):
    data = make_dataset(tmp_path / "data", subjects=2)
    (data / "contempt").mkdir()
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(data / "contempt" / "S010_009_00000001.png")
    with pytest.raises(DatasetError, match="contempt"):
        evaluate_expression(ColourModel(), data)
    d = evaluate_expression(ColourModel(), data, skip_unknown=True).to_dict()
    assert d["accuracy"] == 1.0 and d["images"] == 12 and d["skipped_folders"] == ["contempt"]
    assert d["classes"] == ["angry", "happy", "sad", "surprise"]
    assert d["confusion"][0] == [4, 0, 0, 0] and d["confusion"][2] == [0, 0, 0, 0]
    assert d["recall"]["sad"] is None and d["precision"]["happy"] == 1.0 and d["support"]["surprise"] == 4
    assert d["folders"] == {"anger": "angry", "happy": "happy", "surprise": "surprise"}
    json.dumps(d)


def test_evaluate_expression_counts_mistakes(tmp_path):
    # the model has no 'surprise': blue faces go to the nearest other colour
    data = make_dataset(tmp_path / "data", subjects=1, colours={"anger": (255, 0, 0), "happy": (0, 255, 0)})
    model = ColourModel(classes=("angry", "happy", "sad"))
    (data / "happy" / "S010_002_00000000.png").unlink()
    Image.fromarray(np.full((48, 48, 3), (250, 5, 5), np.uint8)).save(data / "happy" / "S010_002_00000000.png")
    d = evaluate_expression(model, data).to_dict()
    assert d["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert d["accuracy"] == 0.75 and d["precision"]["angry"] == pytest.approx(2 / 3) and d["recall"]["happy"] == 0.5


def test_evaluate_expression_sub_problem(tmp_path):
    # Happy faces that look angry: among all classes they count as errors; restricted to
    # happy/surprise, the prediction is the more probable of those two (here happy).
    data = make_dataset(tmp_path / "data", subjects=1)
    for f in (data / "happy").iterdir():
        Image.fromarray(np.full((48, 48, 3), (200, 120, 0), np.uint8)).save(f)
    full = evaluate_expression(ColourModel(), data).to_dict()
    assert full["accuracy"] == pytest.approx(4 / 6)
    d = evaluate_expression(ColourModel(), data, only=["HAPPY", "surprise"]).to_dict()
    assert d["classes"] == ["happy", "surprise"] and d["images"] == 4 and d["accuracy"] == 1.0
    assert d["confusion"] == [[2, 0], [0, 2]] and d["skipped_folders"] == ["anger"] and d["skipped_images"] == 2
    with pytest.raises(DatasetError, match="'contempt' is not an expression class"):
        evaluate_expression(ColourModel(), data, only=["contempt"])
    with pytest.raises(DatasetError, match="no images of the classes"):
        evaluate_expression(ColourModel(), data, only=["sad"])


def test_subject_folds_never_split_a_subject():
    groups = [f"S{i % 7}" for i in range(50)]
    folds = subject_folds(groups, 3, seed=1)
    for s in set(groups):
        assert len({folds[i] for i, g in enumerate(groups) if g == s}) == 1
    assert sorted(np.bincount([folds[groups.index(s)] for s in set(groups)])) == [2, 2, 3]
    np.testing.assert_array_equal(folds, subject_folds(groups, 3, seed=1))
    with pytest.raises(DatasetError, match="7 subject"):
        subject_folds(groups, 8)


def test_cross_validation_trains_on_other_subjects_only(tmp_path):
    data = make_dataset(tmp_path / "data", subjects=4)
    calls = []

    def fake_train(**options):
        train_files = sorted(p.name for p in Path(options["data"]).rglob("*.png"))
        calls.append((options, train_files))
        # the fold "model" knows only the classes it was trained on
        classes = sorted(p.name for p in Path(options["data"]).iterdir())
        return SimpleNamespace(model=options["out"], classes=classes)

    def fake_load(path):
        options, _ = calls[-1]
        return ColourModel(classes=tuple(sorted(p.name for p in Path(options["data"]).iterdir())))

    folds_seen = []
    report = cross_validate_expression(
        data, k=2, subject_regex=r"^(S\d+)_", train_options={"epochs": 1}, work_dir=tmp_path / "work",
        train=fake_train, load=fake_load, on_fold=folds_seen.append,
    )
    d = report.to_dict()
    assert len(calls) == 2 and [f.fold for f in folds_seen] == [0, 1]
    for (options, files), fold in zip(calls, folds_seen):
        assert options["val_fraction"] == 0.0 and options["epochs"] == 1 and options["seed"] == 0
        train_subjects = {f[:4] for f in files}
        assert len(train_subjects) == 2 and fold.test_subjects == 2
        assert len(files) == 2 * 3 * 2                     # 2 subjects x 3 classes x 2 frames
    all_subjects = [{f[:4] for f in files} for _, files in calls]
    assert not all_subjects[0] & all_subjects[1]           # each subject trained on once, tested once
    assert d["accuracy"] == 1.0 and d["accuracy_std"] == 0.0 and d["k"] == 2
    assert d["classes"] == ["anger", "happy", "surprise"] and np.sum(d["confusion"]) == 24
    assert (tmp_path / "work" / "fold1" / "data").is_dir()


def test_cli_expression_json_and_confusion_png(runner, tmp_path, tiny_model_path):
    data = make_dataset(tmp_path / "data", subjects=2)
    png = tmp_path / "confusion.png"
    res = runner.invoke(cli, ["evaluate-expression", "--data", str(data), "--model", str(tiny_model_path),
                              "--confusion", str(png), "--json", "-q"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {"accuracy", "classes", "confusion"} <= set(d)
    assert len(d["classes"]) == 7 and len(d["confusion"]) == 7 and d["images"] == 12
    assert png.read_bytes()[:4] == b"\x89PNG"
    human = runner.invoke(cli, ["evaluate-expression", "--data", str(data), "--model", str(tiny_model_path), "-q"])
    assert human.exit_code == 0 and "precision" in human.stdout


def test_cli_expression_errors(runner, tmp_path, tiny_model_path):
    data = make_dataset(tmp_path / "data", subjects=2, colours={"contempt": (1, 2, 3), "happy": (0, 255, 0)})
    res = runner.invoke(cli, ["evaluate-expression", "--data", str(data), "--model", str(tiny_model_path)])
    assert res.exit_code == 2 and "contempt" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(cli, ["evaluate-expression", "--data", str(data), "--model", str(tiny_model_path),
                              "--subject-regex", "S"])
    assert res.exit_code == 2 and "--cv" in res.stderr
    res = runner.invoke(cli, ["evaluate-expression", "--data", str(data), "--cv", "2"])
    assert res.exit_code == 2 and "--from-scratch" in res.stderr


@pytest.mark.slow
def test_cli_cross_validation_trains_each_fold(runner, tmp_path):
    data = make_dataset(tmp_path / "data", subjects=2)
    res = runner.invoke(cli, ["evaluate-expression", "--data", str(data), "--cv", "2", "--from-scratch",
                              "--image-size", "80", "--embedding-size", "16", "--epochs", "1",
                              "--steps-per-epoch", "1", "--batch-size", "4", "--work-dir", str(tmp_path / "w"),
                              "--confusion", str(tmp_path / "cv.png"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["k"] == 2 and len(d["fold_accuracies"]) == 2 and d["subjects"] == 2
    assert d["classes"] == ["anger", "happy", "surprise"] and np.sum(d["confusion"]) == 12
    assert (tmp_path / "w" / "fold0.keras").exists() and (tmp_path / "w" / "fold1.keras").exists()
    assert (tmp_path / "cv.png").exists()


@pytest.mark.realdata
def test_real_ckplus_folders_map_to_fer_classes(tiny_model):
    from facelivenet.data.datasets import scan_class_folders

    data = scan_class_folders(shared_data("ckplus48"))
    m = match_classes(data.class_names, tiny_model.config.expression_classes, skip_unknown=True)
    assert m.unknown == ("contempt",)
    assert {f: tiny_model.config.expression_classes[i] for f, i in m.index.items()} == {
        "anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
        "sadness": "sad", "surprise": "surprise",
    }
