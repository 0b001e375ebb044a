"""``facelivenet align`` end to end on a small folder tree."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facelivenet.cli import cli


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """in/alice/{astro.jpg, astro_small.png}, in/bob/{blank.png, broken.jpg, notes.txt}."""
    skimage_data = pytest.importorskip("skimage.data")
    face = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    root = tmp_path / "in"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    cv2.imwrite(str(root / "alice" / "astro.jpg"), face)
    cv2.imwrite(str(root / "alice" / "astro_small.png"), cv2.resize(face, (256, 256)))
    cv2.imwrite(str(root / "bob" / "blank.png"), np.full((120, 160, 3), 200, np.uint8))
    (root / "bob" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "bob" / "notes.txt").write_text("not an image")
    return root


def _run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_align_writes_faces_manifest_and_failures(dataset, tmp_path):
    out = tmp_path / "out"
    res = _run("align", dataset, out, "--image-size", 96, "--quiet")
    assert res.exit_code == 0, res.output
    assert "aligned 2" in res.output and "no face 1" in res.output and "unreadable 1" in res.output
    assert "images/s" in res.output
    for name in ("alice/astro.png", "alice/astro_small.png"):
        face = cv2.imread(str(out / name))
        assert face.shape == (96, 96, 3)
    assert not (out / "bob").exists() or not any((out / "bob").iterdir())
    manifest = _jsonl(out / "manifest.jsonl")
    assert sorted(r["source"] for r in manifest) == ["alice/astro.jpg", "alice/astro_small.png"]
    rec = next(r for r in manifest if r["source"] == "alice/astro.jpg")
    assert rec["output"] == "alice/astro.png" and rec["score"] > 0.99
    x1, y1, x2, y2 = rec["box"]
    assert 170 < x1 < 195 and 50 < y1 < 80 and 250 < x2 < 280 and 160 < y2 < 185
    assert len(rec["landmarks"]) == 5
    failures = {r["source"]: r["reason"] for r in _jsonl(out / "failures.jsonl")}
    assert failures == {"bob/blank.png": "no_face", "bob/broken.jpg": "unreadable"}


def test_align_is_resumable(dataset, tmp_path):
    out = tmp_path / "out"
    assert _run("align", dataset, out, "--quiet").exit_code == 0
    (out / "alice" / "astro_small.png").unlink()  # lost output: redone
    res = _run("align", dataset, out, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["skipped"] == 3 and summary["aligned"] == 1 and summary["processed"] == 1
    assert len(_jsonl(out / "manifest.jsonl")) == 2
    res = _run("align", dataset, out, "--json", "--quiet", "--retry-failures")
    summary = json.loads(res.output)
    assert summary["processed"] == 2 and summary["no_face"] == 1 and summary["unreadable"] == 1
    assert len(_jsonl(out / "failures.jsonl")) == 2


def test_align_similarity_and_all_faces(dataset, tmp_path):
    out = tmp_path / "out"
    res = _run("align", dataset, out, "--mode", "similarity", "--all-faces", "--image-size", 112, "--quiet")
    assert res.exit_code == 0, res.output
    names = sorted(r["output"] for r in _jsonl(out / "manifest.jsonl"))
    assert "alice/astro_0.png" in names and all("_" in Path(n).stem for n in names)
    assert cv2.imread(str(out / "alice" / "astro_0.png")).shape == (112, 112, 3)


def test_align_errors_are_one_line_with_exit_2(dataset, tmp_path):
    res = _run("align", tmp_path / "missing", tmp_path / "out")
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "no such folder" in res.output
    out = tmp_path / "out"
    assert _run("align", dataset, out, "--quiet").exit_code == 0
    res = _run("align", dataset, out, "--image-size", 120, "--quiet")
    assert res.exit_code == 2 and "other settings" in res.output and "Traceback" not in res.output
    res = _run("align", dataset, dataset)
    assert res.exit_code == 2 and "differ" in res.output


@pytest.mark.slow
def test_align_with_two_workers(dataset, tmp_path):
    out = tmp_path / "out"
    res = _run("align", dataset, out, "--workers", 2, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["aligned"] == 2 and summary["no_face"] == 1 and summary["unreadable"] == 1
    assert (out / "alice" / "astro.png").is_file()


def test_all_faces_rerun_redoes_an_image_with_a_lost_face(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    face = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    (tmp_path / "in" / "pair").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "pair" / "two.png"), np.concatenate([face, face[:, ::-1]], axis=1))
    out = tmp_path / "out"
    assert _run("align", tmp_path / "in", out, "--all-faces", "--quiet").exit_code == 0
    names = sorted(r["output"] for r in _jsonl(out / "manifest.jsonl"))
    assert names == ["pair/two_0.png", "pair/two_1.png"]
    (out / "pair" / "two_1.png").unlink()
    summary = json.loads(_run("align", tmp_path / "in", out, "--all-faces", "--quiet", "--json").output)
    assert summary["processed"] == 1 and summary["faces"] == 2
    assert sorted(r["output"] for r in _jsonl(out / "manifest.jsonl")) == names
    assert (out / "pair" / "two_1.png").is_file()
