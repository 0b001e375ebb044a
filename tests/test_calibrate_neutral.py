"""The Neutral threshold, calibrated on held-out faces (`facelivenet calibrate-neutral`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facelivenet.auth.challenge import ChallengeSettings
from facelivenet.cli import cli
from facelivenet.config import NetworkConfig
from facelivenet.errors import ConfigError, InputError
from facelivenet.eval.calibrate import neutral_rates, neutral_threshold_for_recall

N = 2  # neutral's index in the 3-class probabilities below: happy, sad, neutral


def probs(*rows):
    return np.array(rows, np.float64)


def test_threshold_is_the_largest_that_reaches_the_recall():
    # Ten neutral faces, Neutral the most probable class of all, p from 0.9 down to 0.36.
    p_n = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.38, 0.36])
    rows = np.stack([(1 - p_n) / 2, (1 - p_n) / 2, p_n], axis=1)
    is_neutral = np.ones(10, bool)
    t, reached = neutral_threshold_for_recall(rows, is_neutral, N, 0.9)
    assert reached and t == pytest.approx(0.38)  # 9 of 10 at p >= 0.38, only 8 at 0.4
    assert neutral_rates(rows, is_neutral, N, t)[0] == pytest.approx(0.9)
    assert neutral_threshold_for_recall(rows, is_neutral, N, 0.5)[0] == pytest.approx(0.55)
    assert neutral_threshold_for_recall(rows, is_neutral, N, 1.0)[0] == pytest.approx(0.36)


def test_only_faces_whose_most_probable_class_is_neutral_count():
    rows = probs([0.1, 0.2, 0.7], [0.1, 0.3, 0.6], [0.0, 0.55, 0.45], [0.5, 0.1, 0.4])
    is_neutral = np.ones(4, bool)
    # Two of four have Neutral on top: 0.75 cannot be reached, whatever the threshold.
    t, reached = neutral_threshold_for_recall(rows, is_neutral, N, 0.75)
    assert not reached and t == pytest.approx(0.6)
    assert neutral_rates(rows, is_neutral, N, 0.3) == (pytest.approx(0.5), pytest.approx(float("nan"), nan_ok=True))


def test_false_neutral_rate_counts_other_faces_shown_as_neutral():
    rows = probs([0.1, 0.2, 0.7], [0.2, 0.3, 0.5],  # neutral faces
                 [0.3, 0.3, 0.4], [0.7, 0.1, 0.2], [0.1, 0.45, 0.45])  # others
    is_neutral = np.array([True, True, False, False, False])
    recall, false = neutral_rates(rows, is_neutral, N, 0.4)
    assert recall == 1.0 and false == pytest.approx(2 / 3)  # a tie counts as most probable
    assert neutral_rates(rows, is_neutral, N, 0.5) == (1.0, 0.0)


def test_bad_inputs():
    rows = probs([0.5, 0.2, 0.3])
    with pytest.raises(InputError, match="recall"):
        neutral_threshold_for_recall(rows, np.ones(1, bool), N, 0.0)
    with pytest.raises(InputError, match="no neutral faces"):
        neutral_threshold_for_recall(rows, np.zeros(1, bool), N, 0.9)
    with pytest.raises(InputError, match="none of the neutral faces"):
        neutral_threshold_for_recall(rows, np.ones(1, bool), N, 0.9)


def test_config_records_it_and_the_engine_uses_it():
    config = NetworkConfig(expression_threshold=0.5, neutral_threshold=0.31, verification_threshold=0.9)
    assert NetworkConfig.from_dict(config.to_dict()) == config
    s = ChallengeSettings.for_model(config)
    assert (s.neutral_threshold, s.expression_threshold, s.identity_threshold) == (0.31, 0.5, 0.9)
    # A model that records none keeps its expression threshold for Neutral, and its config
    # dict (so its fingerprint) is what it was before the field existed.
    assert "neutral_threshold" not in NetworkConfig().to_dict()
    assert ChallengeSettings.for_model(NetworkConfig(expression_threshold=0.6)).neutral_threshold == 0.6
    with pytest.raises(ConfigError, match="neutral_threshold"):
        NetworkConfig(neutral_threshold=0.0)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """25 'neutral' and 25 'happy' crops; the fake network below reads p from the pixels."""
    root = tmp_path_factory.mktemp("neutral")
    for name in ("neutral", "happy"):
        (root / name).mkdir()
        for k in range(25):
            value = 40 + 8 * k if name == "neutral" else 250
            Image.fromarray(np.full((80, 80, 3), value, np.uint8)).save(root / name / f"{k}.png")
    return root


@pytest.fixture
def fake_network(monkeypatch):
    """analyze_files → probabilities from each crop's grey level: neutral crops give
    p(neutral) = level / 255 over the model's classes; happy crops give happy 0.9."""
    from facelivenet.eval import crops
    from facelivenet.eval.crops import FileOutputs
    from facelivenet.images import read_image

    def analyze_files(model, paths, progress=None, **_):
        classes = list(model.config.expression_classes)
        n, h = classes.index("neutral"), classes.index("happy")
        out = np.zeros((len(paths), len(classes)), np.float32)
        for i, path in enumerate(paths):
            level = float(read_image(path)[0, 0, 0])
            if level == 250:
                out[i] = 0.1 / (len(classes) - 1)
                out[i, h] = 0.9
            else:
                out[i] = (1 - level / 255) / (len(classes) - 1)
                out[i, n] = level / 255
        return FileOutputs(np.zeros((len(paths), 4), np.float32), out, ())

    monkeypatch.setattr(crops, "analyze_files", analyze_files)


def test_cli_writes_the_threshold_into_a_copy(runner, tiny_model_path, faces, fake_network, tmp_path):
    from facelivenet.api import load_model

    out = tmp_path / "cal.keras"
    r = runner.invoke(cli, ["calibrate-neutral", "--model", str(tiny_model_path), "--data", str(faces),
                            "--out", str(out), "--recall", "0.8", "--json", "-q"])
    assert r.exit_code == 0, r.output + r.stderr
    d = json.loads(r.stdout)
    assert (d["neutral_faces"], d["other_faces"]) == (25, 25)
    # Levels 40 + 8k: 20 of 25 neutral faces reach p = (40 + 8*5) / 255 = 0.3137.
    assert d["threshold"] == pytest.approx(0.3137) and d["reached"]
    assert d["recall"] == pytest.approx(0.8) and d["false_neutral"] == 0.0
    # At 0.5 only levels >= 127.5 count (k >= 11): 14 of 25.
    assert d["recall_at_expression_threshold"] == pytest.approx(14 / 25)
    cal = load_model(out)
    assert cal.config.neutral_threshold == pytest.approx(0.3137)
    assert ChallengeSettings.for_model(cal.config).neutral_threshold == pytest.approx(0.3137)
    assert cal.config.verification_threshold == load_model(tiny_model_path).config.verification_threshold


def test_cli_errors(runner, tiny_model_path, faces, fake_network, tmp_path):
    existing = tmp_path / "x.keras"
    existing.write_bytes(b"")
    r = runner.invoke(cli, ["calibrate-neutral", "--model", str(tiny_model_path), "--data", str(faces),
                            "--out", str(existing)])
    assert r.exit_code == 2 and "already exists" in r.stderr
    few = tmp_path / "few"
    for name in ("neutral", "happy"):
        (few / name).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((80, 80, 3), 100, np.uint8)).save(few / name / f"{k}.png")
    r = runner.invoke(cli, ["calibrate-neutral", "--model", str(tiny_model_path), "--data", str(few),
                            "--out", str(tmp_path / "y.keras")])
    assert r.exit_code == 2 and "at least 20 neutral and 20 other faces, found 3 and 3" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.keras").exists()
