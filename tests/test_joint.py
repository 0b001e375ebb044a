"""Joint training: the manifest of mixed sources, one face geometry, packed targets, a run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelivenet.data import joint
from facelivenet.detect.align import landmark_template
from facelivenet.detect.detector import Detection
from facelivenet.errors import DatasetError

from conftest import TINY

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _img(path: Path, size=(48, 48), value=None, rng=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = rng or np.random.default_rng(abs(hash(path.name)) % 1000)
    a = rng.integers(0, 255, (*size, 3)).astype(np.uint8) if value is None else np.full((*size, 3), value, np.uint8)
    Image.fromarray(a).save(path)


class FakeDetector:
    """Finds a face (template landmarks scaled to the view) in views wider than ``min_side``,
    except in images whose top-left pixel is 0; counts its calls."""

    def __init__(self):
        self.images = 0

    def detect_batch(self, images):
        out = []
        for im in images:
            self.images += 1
            if im[0, 0, 0] == 0:
                out.append([])
                continue
            h, w = im.shape[:2]
            lm = landmark_template(112) * np.array([w / 112, h / 112], np.float32)
            out.append([Detection((0.0, 0.0, float(w), float(h)), 0.99, lm.astype(np.float32))])
        return out


@pytest.fixture
def fer_dir(tmp_path):
    root = tmp_path / "fer"
    rows = []
    for split in ("train", "validation"):
        for cls in ("happy", "neutral"):
            for i in range(3):
                _img(root / split / cls / f"{split}_{cls}_{i}.jpg", value=0 if i == 2 else 128)
                rows.append({"split": split, "file": f"{split}/{cls}/{split}_{cls}_{i}.jpg",
                             "neutral": 6 if cls == "neutral" else 1, "happiness": 4 if cls == "happy" else 0,
                             "surprise": 0, "sadness": 0, "anger": 0, "disgust": 0, "fear": 0,
                             "contempt": 3, "unknown": 0, "NF": 0})
    rows.append({**rows[0], "file": "train/happy/missing.jpg"})
    with open(root / "ferplus.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_source_parse_errors(tmp_path):
    with pytest.raises(DatasetError, match="KIND=PATH"):
        joint.Source.parse("nonsense")
    with pytest.raises(DatasetError, match="KIND one of"):
        joint.Source.parse(f"lfw={tmp_path}")
    with pytest.raises(DatasetError, match="not found"):
        joint.Source.parse(f"fer={tmp_path / 'none'}")


def test_held_out_is_a_stable_share_of_identities():
    ids = [f"celeba/{i}" for i in range(4000)]
    held = [joint.held_out(i, 0.1) for i in ids]
    assert 0.08 < np.mean(held) < 0.12
    assert held == [joint.held_out(i, 0.1) for i in ids]          # the same in every folder, every run
    assert held != [joint.held_out(i, 0.1, seed=1) for i in ids]


def test_ferplus_votes_become_distributions_without_contempt(fer_dir):
    t = joint.ferplus_targets(fer_dir / "ferplus.csv")
    happy = t["train/happy/train_happy_0.jpg"]
    assert len(happy) == 7 and sum(happy) == pytest.approx(1.0)
    assert happy[CLASSES.index("happy")] == pytest.approx(0.8) and happy[CLASSES.index("neutral")] == pytest.approx(0.2)


def test_one_hot_maps_source_names_and_drops_contempt():
    assert joint.one_hot("Happiness") == [0, 0, 0, 1, 0, 0, 0]
    assert joint.one_hot("anger")[0] == 1
    assert joint.one_hot("contempt") is None


def test_manifest_labels_landmarks_fallback_and_resume(fer_dir, tmp_path):
    ids = tmp_path / "celeba-identities"
    for person in ("101", "102"):
        for i in range(2):
            _img(ids / person / f"{i}.jpg", size=(64, 64), value=90)
    det = FakeDetector()
    sources = [joint.Source.parse(f"fer={fer_dir}"), joint.Source.parse(f"identities={ids}")]
    summary = joint.build_manifest(sources, tmp_path / "m", detector=det).to_dict()
    # value-0 images (one per class and split) find no face: FER falls back to its mean landmarks
    assert summary["fer"] == {"images": 12, "detected": 8, "fallback": 4, "dropped": 0, "fallback_share": 0.3333}
    assert summary["identities"]["detected"] == 4
    recs = joint.read_manifest(tmp_path / "m" / "manifest.jsonl")
    fer = [r for r in recs if r.source == "fer"]
    assert {r.split for r in fer} == {"train", "val"} and all(r.identity is None for r in fer)
    fell = [r for r in fer if r.fallback]
    found = [r for r in fer if not r.fallback]
    np.testing.assert_allclose(fell[0].landmarks, found[0].landmarks, atol=0.05)   # same crop, same mean
    # the padded, upscaled view was mapped back into the 48 px image
    assert 0 < min(np.ravel(found[0].landmarks)) and max(np.ravel(found[0].landmarks)) < 48
    people = [r for r in recs if r.source == "identities"]
    assert {r.identity for r in people} == {"celeba/101", "celeba/102"}
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["records"] == 16
    # a second run reuses every landmark: no detector call
    again = FakeDetector()
    joint.build_manifest(sources, tmp_path / "m", detector=again)
    assert again.images == 0


def test_warp_face_at_the_template_is_the_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (112, 112, 3)).astype(np.uint8)
    out = joint.warp_face(image, landmark_template(112), 112)
    assert np.abs(out.astype(int) - image).max() <= 1
    small = joint.warp_face(image, landmark_template(112), 80)
    assert small.shape == (80, 80, 3)
    jittered = joint.warp_face(image, landmark_template(112), 112, np.random.default_rng(1))
    assert jittered.shape == (112, 112, 3) and not np.array_equal(jittered, out)


def test_load_face_augmentation_is_a_function_of_the_seed(tmp_path):
    _img(tmp_path / "a.png", size=(112, 112), rng=np.random.default_rng(3))
    lm = landmark_template(112)
    a = joint.load_face(str(tmp_path / "a.png"), lm, 80, seed=(0, 1, 5), flip=True, gray_share=0.5)
    b = joint.load_face(str(tmp_path / "a.png"), lm, 80, seed=(0, 1, 5), flip=True, gray_share=0.5)
    assert np.array_equal(a, b)
    greys = [joint.load_face(str(tmp_path / "a.png"), lm, 80, seed=(0, 1, k), gray_share=1.0) for k in range(3)]
    assert all(np.array_equal(g[..., 0], g[..., 1]) for g in greys)


def test_joint_targets_pack_every_label_and_mask():
    from facelivenet.train.run import joint_targets
    from facelivenet.train.teacher import record_key

    lm = landmark_template(112).tolist()
    recs = [
        joint.Record("a.jpg", "identities", identity="x/1", landmarks=lm),
        joint.Record("b.jpg", "identities", identity="x/1", landmarks=lm),
        joint.Record("c.jpg", "celeba-aligned", identity="x/2", smiling=1, landmarks=lm),
        joint.Record("d.jpg", "fer", expression=[0, 0, 0, 0.75, 0, 0, 0.25], landmarks=lm),
    ]
    keys = [record_key("a.jpg", lm), record_key("d.jpg", lm)]
    teacher = (keys, np.array([[3.0, 0.0], [1.0, 0.0]], np.float32))
    y, ids, layout = joint_targets(recs, CLASSES, min_images=2, teacher=teacher)
    assert ids == ["x/1"] and layout.teacher_dim == 2 and y.shape == (4, layout.width)
    ident, expr, em, smile, sm, t, tm = (np.asarray(v) for v in layout.split(y))
    np.testing.assert_array_equal(ident, [0, 0, -1, -1])           # x/2 has one image: no label
    np.testing.assert_array_equal(em, [0, 0, 0, 1])
    assert expr[3, CLASSES.index("happy")] == pytest.approx(0.75)
    np.testing.assert_array_equal(sm, [0, 0, 1, 0]) and smile[2] == 1
    np.testing.assert_array_equal(tm, [1, 0, 0, 1])
    np.testing.assert_allclose(t[[0, 3]], [[1, 0], [-1, 0]])        # centred on the mean, normalised


def test_source_repeats_put_a_face_in_the_epoch_n_times_each_with_its_own_jitter(tmp_path):
    from facelivenet.data import tfdata

    lm = landmark_template(112)
    paths = []
    for i in range(4):
        _img(tmp_path / f"{i}.png", size=(112, 112), rng=np.random.default_rng(i))
        paths.append(str(tmp_path / f"{i}.png"))
    marks = np.stack([lm] * 4)
    targets = np.arange(4, dtype=np.float32)[:, None]
    kw = dict(image_size=80, batch_size=2, seed=0, epoch=0, gray_share=0.0)
    batches = list(tfdata.joint_dataset(paths, marks, targets, repeats=np.array([1, 3, 1, 1]), **kw))
    assert len(batches) == 3  # a pool of 6 faces
    seen = np.concatenate([y.numpy()[:, 0] for _, y in batches]).astype(int)
    assert sorted(seen.tolist()) == [0, 1, 1, 1, 2, 3]
    images = np.concatenate([x.numpy() for x, _ in batches])
    copies = images[seen == 1]
    assert not np.array_equal(copies[0], copies[1]) and not np.array_equal(copies[1], copies[2])
    # Resuming after one batch gives the rest of the same epoch.
    rest = list(tfdata.joint_dataset(paths, marks, targets, repeats=np.array([1, 3, 1, 1]), skip_batches=1, **kw))
    np.testing.assert_array_equal(np.concatenate([y.numpy()[:, 0] for _, y in rest]), seen[2:])
    plain = list(tfdata.joint_dataset(paths, marks, targets, **kw))
    assert sorted(np.concatenate([y.numpy()[:, 0] for _, y in plain]).astype(int).tolist()) == [0, 1, 2, 3]


def test_source_repeats_are_checked(runner):
    from facelivenet.cli import cli
    from facelivenet.errors import ConfigError
    from facelivenet.train.options import JointConfig

    cfg = JointConfig(data="d", out="o.keras", source_repeats=(("taiwanese", 4), ("ckplus", 2)))
    assert dict(cfg.source_repeats) == {"taiwanese": 4, "ckplus": 2}
    with pytest.raises(ConfigError, match="unknown source kind 'lfw'"):
        JointConfig(data="d", out="o.keras", source_repeats=(("lfw", 2),))
    with pytest.raises(ConfigError, match="integer >= 1"):
        JointConfig(data="d", out="o.keras", source_repeats=(("fer", 0),))
    r = runner.invoke(cli, ["train-joint", "--data", "d", "--out", "o.keras", "--source-repeat", "taiwanese=x"])
    assert r.exit_code == 2 and "'taiwanese=x': expected KIND=N" in r.stderr


def test_teacher_key_changes_with_the_landmarks():
    from facelivenet.train.teacher import record_key

    lm = landmark_template(112)
    assert record_key("a.jpg", lm) == record_key("a.jpg", lm.copy())
    assert record_key("a.jpg", lm) != record_key("a.jpg", lm + 1)
    assert record_key("a.jpg", lm) != record_key("b.jpg", lm)


def test_joint_config_refuses_center_losses():
    from facelivenet.errors import ConfigError
    from facelivenet.train.options import JointConfig, VerificationLossConfig

    with pytest.raises(ConfigError, match="none, arcface or cosface"):
        JointConfig(data="d", out="o.keras", loss=VerificationLossConfig(kind="center"))


@pytest.mark.slow
def test_train_joint_runs_masked_losses_and_records_the_geometry(fer_dir, tmp_path):
    from facelivenet.models.io import load_network
    from facelivenet.train.options import JointConfig, VerificationLossConfig
    from facelivenet.train.logs import read_csv
    from facelivenet.train.run import train_joint

    ids = tmp_path / "celeba-identities"
    rng = np.random.default_rng(0)
    for person in range(8):
        for i in range(3):
            _img(ids / str(200 + person) / f"{i}.png", size=(64, 64), rng=rng)
    sources = [joint.Source.parse(f"fer={fer_dir}"), joint.Source.parse(f"identities={ids}")]
    joint.build_manifest(sources, tmp_path / "m", val_fraction=0.3, detector=FakeDetector())
    cfg = JointConfig(
        data=str(tmp_path / "m"), out=str(tmp_path / "j.keras"), epochs=1, batch_size=8, steps_per_epoch=2,
        image_size=TINY["image_size"], embedding_size=TINY["embedding_size"], optimizer="momentum",
        learning_rate=0.01, quiet=True, bn_batches=1, loss=VerificationLossConfig(kind="arcface"),
        source_repeats=(("fer", 2),),
    )
    result = train_joint(cfg)
    net = load_network(result.model)
    assert net.network_config.alignment == "similarity"
    assert net.network_config.expression_classes == CLASSES
    steps = read_csv(result.work_dir / "steps.csv")
    assert len(steps) == 2 and {"l_id", "l_kd", "l_expr", "l_smile", "acc_expr"} <= set(steps[0])
    assert float(steps[0]["l_kd"]) == 0.0            # no teacher cache: no distillation term
    assert float(steps[0]["l_id"]) > 0.0
    epochs = read_csv(result.work_dir / "epochs.csv")
    assert "val_expression_accuracy" in epochs[0] and "val_score" in epochs[0]


def test_write_faces_by_expression_and_identity(fer_dir, tmp_path):
    ids = tmp_path / "celeba-identities"
    for person in ("301", "302"):
        _img(ids / person / "0.jpg", size=(64, 64), value=80)
    sources = [joint.Source.parse(f"fer={fer_dir}"), joint.Source.parse(f"identities={ids}")]
    joint.build_manifest(sources, tmp_path / "m", val_fraction=0.0, detector=FakeDetector())
    recs = joint.read_manifest(tmp_path / "m" / "manifest.jsonl")
    val = [r for r in recs if r.split == "val"]
    counts = joint.write_faces(val, tmp_path / "expr", size=80, by="expression")
    assert counts == {"happy": 3, "neutral": 3}                    # FER+ majority, not the folder
    face = np.asarray(Image.open(next((tmp_path / "expr" / "happy").iterdir())))
    assert face.shape == (80, 80, 3)
    train = [r for r in recs if r.split == "train"]
    assert joint.write_faces(train, tmp_path / "ids", size=80, by="identity") == {"celeba_301": 1, "celeba_302": 1}
    crop = joint.write_faces([r for r in val if r.source == "fer"], tmp_path / "crop", size=80, by="expression",
                             alignment="crop")
    assert sum(crop.values()) == 6
    with pytest.raises(DatasetError, match="use similarity"):
        joint.write_faces(train, tmp_path / "bad", size=80, by="identity", alignment="crop")
