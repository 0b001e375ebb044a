"""The t-SNE identity map and its nearest-neighbour figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facelivenet.cli import cli
from facelivenet.errors import DatasetError
from facelivenet.eval.embeddings import nearest_neighbour_accuracy, tsne_points


def test_nearest_neighbour_accuracy_hand_example():
    e = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.0, 1.2], [0.2, 0.0]])
    g = np.array([0, 0, 1, 1, 1])
    # neighbours: 1, 0, 3, 2, 1 -> right, right, right, right, wrong
    assert nearest_neighbour_accuracy(e, g) == pytest.approx(0.8)
    assert nearest_neighbour_accuracy(e[:1], g[:1]) is None


def test_tsne_points_keeps_clusters_apart():
    rng = np.random.default_rng(0)
    e = np.concatenate([rng.normal(0, 0.05, (10, 8)), rng.normal(3, 0.05, (10, 8))])
    p = tsne_points(e, perplexity=30, seed=0)               # perplexity capped at (20 - 1) / 3
    assert p.shape == (20, 2)
    assert nearest_neighbour_accuracy(p, np.repeat([0, 1], 10)) == 1.0
    with pytest.raises(DatasetError, match="at least 4"):
        tsne_points(e[:3])


def test_cli_plot_embeddings(runner, tmp_path, tiny_model_path):
    rng = np.random.default_rng(0)
    for person in ("s1", "s2", "s3"):
        (tmp_path / "d" / person).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "d" / person / f"{k}.png")
    out = tmp_path / "tsne.png"
    res = runner.invoke(cli, ["plot-embeddings", "--data", str(tmp_path / "d"), "--out", str(out),
                              "--model", str(tiny_model_path), "--max-images", "10", "--json", "-q"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["images"] == 10 and d["identities"] == 3 and 0.0 <= d["nearest_neighbour_accuracy"] <= 1.0
    assert out.read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(cli, ["plot-embeddings", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "x.svg")])
    assert res.exit_code == 2 and ".png" in res.stderr
