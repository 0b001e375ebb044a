"""Threshold calibration on validation identities (`facelivenet calibrate`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facelivenet.cli import cli


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    """8 synthetic identities x 4 images: one random base face each, lightly jittered."""
    root = tmp_path_factory.mktemp("ids")
    rng = np.random.default_rng(1)
    for i in range(8):
        base = rng.integers(0, 256, (80, 80, 3)).astype(np.int16)
        (root / f"id{i}").mkdir()
        for k in range(4):
            img = np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"id{i}" / f"{k}.png")
    return root


def test_calibrate_records_threshold_and_margin(runner, tiny_model_path, identities, tmp_path):
    from facelivenet.api import load_model
    from facelivenet.images import read_image

    out = tmp_path / "cal.keras"
    r = runner.invoke(cli, ["calibrate", "--model", str(tiny_model_path), "--data", str(identities),
                            "--out", str(out), "--margin", "22", "--json", "-q"])
    assert r.exit_code == 0, r.output + r.stderr
    d = json.loads(r.stdout)
    assert d["identities"] == 8 and d["images"] == 32
    assert d["pairs"] == 2 * 8 * 6  # 48 same pairs, as many different ones
    assert d["rule"] == "best-accuracy"
    # Jittered copies of one base are far closer than different bases: the split is clean.
    assert d["accuracy"] == 1.0
    cal = load_model(out)
    assert cal.config.verification_threshold == pytest.approx(round(d["threshold"], 4))
    assert cal.config.margin == 22
    # Same weights: identical embeddings.
    face = read_image(next(identities.glob("id0/*.png")))
    base = load_model(tiny_model_path).analyze([face]).embeddings
    np.testing.assert_allclose(cal.analyze([face]).embeddings, base, atol=1e-6)


def test_calibrate_far_and_held_out_split(runner, tiny_model_path, identities, tmp_path):
    out = tmp_path / "far.keras"
    r = runner.invoke(cli, ["calibrate", "--model", str(tiny_model_path), "--data", str(identities),
                            "--out", str(out), "--far", "0.01", "--val-fraction", "0.5", "--json", "-q"])
    assert r.exit_code == 0, r.output + r.stderr
    d = json.loads(r.stdout)
    assert d["rule"] == "far<=0.01"
    assert d["far"] <= 0.01
    assert d["identities"] == 4  # the half train-verification would hold out


def test_calibrate_errors(runner, tiny_model_path, identities, tmp_path):
    existing = tmp_path / "x.keras"
    existing.write_bytes(b"")
    r = runner.invoke(cli, ["calibrate", "--model", str(tiny_model_path), "--data", str(identities),
                            "--out", str(existing)])
    assert r.exit_code == 2 and "already exists" in r.stderr
    lonely = tmp_path / "one"
    (lonely / "a").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(lonely / "a" / f"{k}.png")
    r = runner.invoke(cli, ["calibrate", "--model", str(tiny_model_path), "--data", str(lonely),
                            "--out", str(tmp_path / "y.keras")])
    assert r.exit_code == 2 and "only one class" in r.stderr
    assert not (tmp_path / "y.keras").exists()
