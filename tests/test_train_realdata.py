"""Training on real faces from ../shared/data (skipped when absent); small and quick.

- stage 1 on att_faces: the loss falls and nearest-centroid identity accuracy on
  held-out images of the same people rises;
- stage 2 on a FER2013 sample: validation accuracy clearly above chance;
- multi-task on ckplus48: runs, and the dynamic weights move.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

TINY = dict(image_size=80, embedding_size=32)


def _link_tree(pairs: list[tuple[Path, Path]]) -> None:
    """Symlink source images into a temporary dataset layout (nothing is copied)."""
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dst)


def _centroid_accuracy(net, train_paths, train_ids, test_paths, test_ids) -> float:
    from facelivenet.api import FaceModel
    from facelivenet.images import read_image

    model = FaceModel(net)
    emb_train = model.analyze([read_image(p) for p in train_paths]).embeddings
    emb_test = model.analyze([read_image(p) for p in test_paths]).embeddings
    ids = np.unique(train_ids)
    centroids = np.stack([emb_train[train_ids == i].mean(axis=0) for i in ids])
    d = ((emb_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    return float(np.mean(ids[np.argmin(d, axis=1)] == test_ids))


def test_stage1_att_faces_learns_identities(tmp_path):
    from facelivenet.models.io import load_network
    from facelivenet.train.options import VerificationConfig, VerificationLossConfig
    from facelivenet.train.logs import read_csv
    from facelivenet.train.run import train_verification

    att = shared_data("att_faces")
    links, train, test = [], [], []
    for s in range(1, 41):
        for k in range(1, 11):
            src = att / f"s{s}" / f"{k}.pgm"
            if k <= 7:
                dst = tmp_path / "train" / f"s{s:02d}" / f"{k}.pgm"
                links.append((src, dst))
                train.append((str(dst), s))
            else:
                test.append((str(src), s))
    _link_tree(links)
    cfg = VerificationConfig(
        data=str(tmp_path / "train"), out=str(tmp_path / "att.keras"), epochs=5, batch_size=8,
        val_fraction=0.0, learning_rate=0.01, quiet=True, seed=0, dropout=0.0, bn_batches=4,
        loss=VerificationLossConfig(kind="center", alpha=0.01), **TINY,
    )
    result = train_verification(cfg)
    steps = read_csv(result.work_dir / "steps.csv")
    losses = np.array([float(r["ce_id"]) for r in steps])
    assert len(steps) == 5 * (280 // 8)                        # 175 steps
    assert losses[-35:].mean() < 0.6 * losses[:35].mean()

    import keras
    from facelivenet.config import NetworkConfig
    from facelivenet.models.network import FaceLiveNet

    keras.utils.set_random_seed(0)
    initial = FaceLiveNet(NetworkConfig.from_preset("simple", **TINY))
    tp, tid = [p for p, _ in train], np.array([s for _, s in train])
    hp, hid = [p for p, _ in test], np.array([s for _, s in test])
    before = _centroid_accuracy(initial, tp, tid, hp, hid)
    after = _centroid_accuracy(load_network(result.model), tp, tid, hp, hid)
    print(f"att_faces held-out nearest-centroid accuracy: {before:.3f} -> {after:.3f}; "
          f"ce {losses[:35].mean():.3f} -> {losses[-35:].mean():.3f}")
    assert after > before + 0.05


def test_stage2_fer2013_sample_beats_chance(tmp_path):
    from facelivenet.train.options import ExpressionConfig
    from facelivenet.train.run import train_expression

    fer = shared_data("fer2013")
    classes = ("happy", "neutral", "surprise")
    links = []
    for split, n in (("train", 150), ("validation", 50)):
        for c in classes:
            for f in sorted(os.listdir(fer / split / c))[:n]:
                links.append((fer / split / c / f, tmp_path / split / c / f))
    _link_tree(links)
    cfg = ExpressionConfig(
        data=str(tmp_path / "train"), val_data=str(tmp_path / "validation"), out=str(tmp_path / "fer.keras"),
        from_scratch=True, epochs=3, batch_size=15, learning_rate=0.003, quiet=True, dropout=0.0,
        bn_batches=4, **TINY,
    )
    result = train_expression(cfg)
    accs = [e["val_accuracy"] for e in result.epochs]
    print(f"FER2013 3-class sample, validation accuracy per epoch: {[round(a, 3) for a in accs]}")
    assert result.best_metric > 0.43                      # chance is 1/3


def test_multitask_ckplus48_runs_and_weights_move(tmp_path, tiny_model_path):
    from facelivenet.models.io import load_network
    from facelivenet.train.options import MultitaskConfig
    from facelivenet.train.logs import read_csv
    from facelivenet.train.run import train_multitask

    ck = shared_data("ckplus48")
    subjects = sorted({f.split("_")[0] for c in os.listdir(ck) if (ck / c).is_dir() for f in os.listdir(ck / c)})[:40]
    links = [(ck / c / f, tmp_path / "ck" / c / f)
             for c in sorted(os.listdir(ck)) if (ck / c).is_dir()
             for f in sorted(os.listdir(ck / c)) if f.split("_")[0] in subjects]
    _link_tree(links)
    cfg = MultitaskConfig(
        data=str(tmp_path / "ck"), out=str(tmp_path / "mt.keras"), model=str(tiny_model_path), epochs=2,
        batch_size=16, steps_per_epoch=8, val_fraction=0.2, quiet=True, weight_lr=1.0, learning_rate=0.003,
        bn_batches=4,
    )
    result = train_multitask(cfg)
    steps = read_csv(result.work_dir / "steps.csv")
    w1 = np.array([float(r["w1"]) for r in steps])
    l2 = np.array([float(r["l2"]) for r in steps])
    print(f"ckplus48 multitask: w1 {w1[0]:.3f} -> {w1[-1]:.3f}, L2 {l2[:4].mean():.3f} -> {l2[-4:].mean():.3f}")
    assert len(steps) == 16 and np.all(np.isfinite(w1))
    assert abs(w1[-1] - w1[0]) > 0.01
    assert (result.work_dir / "task_weights.png").is_file()
    net = load_network(result.model)
    assert net.network_config.expression_classes == tuple(sorted(os.listdir(tmp_path / "ck")))
