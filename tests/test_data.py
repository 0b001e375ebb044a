"""Dataset scanning, subject regex, group splits, lr schedules, pairs files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelivenet.data.datasets import (
    CKPLUS_SUBJECT_REGEX, align_classes, scan_class_folders, split_by_group, with_subjects,
)
from facelivenet.data.pairs import parse_pairs, read_pairs, resolve_pair_images, sample_pairs
from facelivenet.data.schedule import parse_lr_schedule, read_lr_schedule
from facelivenet.errors import DatasetError, FileFormatError

ROOT = Path(__file__).resolve().parent.parent


def make_tree(root: Path, layout: dict[str, list[str]], size=(20, 24), mode="L") -> Path:
    rng = np.random.default_rng(0)
    for cls, names in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / cls / name)
    return root


def test_scan_class_folders(tmp_path):
    root = make_tree(tmp_path, {"b": ["1.png", "2.pgm"], "a": ["x.jpg"], "empty": []})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".hidden.png").write_text("")
    ds = scan_class_folders(root)
    assert ds.class_names == ("a", "b")
    assert [Path(p).name for p in ds.paths] == ["x.jpg", "1.png", "2.pgm"]
    assert ds.labels.tolist() == [0, 1, 1]
    assert ds.groups == ("a", "b", "b")
    with pytest.raises(DatasetError, match="only one class"):
        scan_class_folders(root, min_images_per_class=2)


def test_scan_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        scan_class_folders(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no class folders"):
        scan_class_folders(tmp_path)


def ck_tree(tmp_path):
    layout = {
        "happy": [f"S{s:03d}_00{q}_0000001{f}.png" for s in (10, 11, 12, 13) for q in (1,) for f in (7, 8, 9)],
        "surprise": [f"S{s:03d}_00{q}_0000001{f}.png" for s in (10, 12, 14) for q in (2,) for f in (7, 8)],
    }
    return make_tree(tmp_path, layout)


def test_ckplus_subjects_and_split_by_subject(tmp_path):
    ds = with_subjects(scan_class_folders(ck_tree(tmp_path)), CKPLUS_SUBJECT_REGEX)
    assert set(ds.groups) == {"S010", "S011", "S012", "S013", "S014"}
    train, val = split_by_group(ds, 0.4, seed=3)
    assert set(train.groups).isdisjoint(val.groups)
    assert len(set(val.groups)) == 2 and len(train) + len(val) == len(ds)
    again = split_by_group(ds, 0.4, seed=3)[1]
    assert again.paths == val.paths                     # seeded
    others = {split_by_group(ds, 0.4, seed=s)[1].group_names() for s in range(10)}
    assert len(others) > 1                              # the seed matters
    labels, names = train.group_labels()
    assert names == train.group_names() and labels.max() == len(names) - 1


def test_custom_subject_regex_and_mismatches(tmp_path):
    root = make_tree(tmp_path, {"a": ["p01-x.png", "p02-y.png"], "b": ["p01-z.png", "other.png"]})
    with pytest.raises(DatasetError, match="other.png.*1 of 4"):
        with_subjects(scan_class_folders(root), r"^(p\d+)-")
    ok = with_subjects(scan_class_folders(root), r"^(p\d+)-|^(other)")
    assert ok.groups == ("p01", "p02", "other", "p01")
    with pytest.raises(DatasetError, match="invalid subject regex"):
        with_subjects(scan_class_folders(root), "(")


def test_no_subjects_means_one_group_per_image_unless_required(tmp_path):
    ds = scan_class_folders(make_tree(tmp_path, {"a": ["1.png", "2.png"], "b": ["3.png"]}))
    assert with_subjects(ds).groups == ds.paths
    with pytest.raises(DatasetError, match="no subject"):
        with_subjects(ds, required=True)


def test_split_edge_cases(tmp_path):
    ds = scan_class_folders(make_tree(tmp_path, {"a": ["1.png"], "b": ["2.png"]}))
    train, val = split_by_group(ds, 0.0)
    assert len(train) == 2 and len(val) == 0
    train, val = split_by_group(ds, 0.9)
    assert len(train) == 1 and len(val) == 1             # never empties the training side
    with pytest.raises(DatasetError, match=r"\[0, 1\)"):
        split_by_group(ds, 1.0)


def test_align_classes(tmp_path):
    ds = scan_class_folders(make_tree(tmp_path, {"b": ["1.png"], "c": ["2.png"]}))
    aligned = align_classes(ds, ("a", "b", "c"), "val")
    assert aligned.labels.tolist() == [1, 2]
    with pytest.raises(DatasetError, match=r"\['c'\]"):
        align_classes(ds, ("a", "b"), "val")


# --- lr schedules ---------------------------------------------------------------------

def test_schedule_lookup():
    s = parse_lr_schedule("# comment\n0: 0.01\n2: 1e-3  # drop\n\n5: 1e-4\n8: -1\n")
    assert [s.lr_at(e) for e in range(10)] == [0.01, 0.01, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, None, None]
    assert s.stop_epoch == 8


def test_shipped_schedules_parse():
    assert read_lr_schedule(ROOT / "data" / "lr_schedule_expression.txt").lr_at(9) == 1e-5
    assert read_lr_schedule(ROOT / "data" / "lr_schedule_verification.txt").stop_epoch == 91


@pytest.mark.parametrize("text, message", [
    ("0: 0.1\n3 0.01\n", r"s.txt:2: expected 'epoch: learning_rate'"),
    ("0: 0.1\nx: 0.01\n", r"s.txt:2: epoch must be a whole number"),
    ("0: 0.1\n\n2: fast\n", r"s.txt:3: learning rate must be a number"),
    ("0: 0.1\n2: 0.01\n2: 0.001\n", r"s.txt:3: epochs must increase"),
    ("1: 0.1\n", r"s.txt:1: the first entry must be for epoch 0"),
    ("0: 0.1\n4: -1\n6: 0.1\n", r"s.txt:3: no entry may follow"),
    ("0: 0\n", r"s.txt:1: .*non-zero"),
    ("# nothing\n", r"s.txt: no 'epoch"),
])
def test_schedule_errors_name_the_line(text, message):
    with pytest.raises(FileFormatError, match=message):
        parse_lr_schedule(text, "s.txt")


def test_schedule_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="no such schedule file"):
        read_lr_schedule(tmp_path / "none.txt")


# --- pairs ----------------------------------------------------------------------------

PAIRS = "2 1\nAnn 1 2\nAnn 1 Bob 1\nBob 1 2\nBob 2 Cy 1\n"


def test_parse_pairs():
    p = parse_pairs(PAIRS)
    assert (p.folds, p.pairs_per_fold, len(p.pairs)) == (2, 1, 4)
    assert p.issame.tolist() == [True, False, True, False]
    assert p.pairs[1].name2 == "Bob" and p.pairs[1].index2 == 1


@pytest.mark.parametrize("text, message", [
    ("", "empty pairs file"),
    ("ten 300\n", r"p.txt:1: expected a header"),
    ("1 1\nAnn 1\nAnn 1 Bob 2\n", r"p.txt:2: expected 'name i j'"),
    ("1 1\nAnn 1 x\nAnn 1 Bob 2\n", r"p.txt:2: image number must be a whole number"),
    ("1 1\nAnn 1 2\n\nAnn 0 Bob 2\n", r"p.txt:4: image numbers start at 1"),
    ("1 2\nAnn 1 2\nAnn 1 Bob 2\n", r"announces 1 folds x 2 x 2 = 4 pairs, file has 2"),
])
def test_pairs_errors_name_the_line(text, message):
    with pytest.raises(FileFormatError, match=message):
        parse_pairs(text, "p.txt")


def test_resolve_pair_images(tmp_path):
    make_tree(tmp_path, {"Ann": ["Ann_0001.jpg", "Ann_0002.jpg"], "Bob": ["Bob_0001.png", "Bob_0002.jpg"]})
    (tmp_path / "p.txt").write_text("1 1\nAnn 1 2\nAnn 2 Bob 1\n")
    paths, a, b = resolve_pair_images(read_pairs(tmp_path / "p.txt"), tmp_path)
    assert [Path(p).name for p in paths] == ["Ann_0001.jpg", "Ann_0002.jpg", "Bob_0001.png"]
    assert a.tolist() == [0, 1] and b.tolist() == [1, 2]
    with pytest.raises(DatasetError, match="2 pair image.*missing, first Cy/Cy_0001"):
        resolve_pair_images(parse_pairs("1 1\nCy 1 2\nAnn 1 Bob 1\n"), tmp_path)


def test_sample_pairs_balanced_and_seeded():
    groups = np.repeat(np.arange(5), 4)
    a, b, same = sample_pairs(groups, 40, seed=1)
    assert len(a) == 40 and same.sum() == 20
    np.testing.assert_array_equal(groups[a] == groups[b], same)
    assert np.all(a != b)
    a2, b2, _ = sample_pairs(groups, 40, seed=1)
    np.testing.assert_array_equal(a, a2)
    # 30 same pairs exist (5 groups x 6): asking for more is capped at what exists.
    assert sample_pairs(groups, 1000)[2].sum() == 30
    # One group only: no different pairs, so no pairs.
    assert len(sample_pairs(np.zeros(4, int), 10)[0]) == 0
    # Few different pairs possible: capped, never loops.
    assert len(sample_pairs(np.array([0] * 10 + [1]), 100)[0]) == 20
