"""Training: weight decay in the loss, the three stages end to end, resume, Ctrl-C, logs, CLI.

Synthetic data (coloured block patterns + noise) keeps these small; the tiny network
(simple preset, 80 px, 32-d embedding) keeps them quick.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

TINY = dict(image_size=80, embedding_size=32)  # tests/conftest.py's tiny network

SUBJECTS = [f"S{s:03d}" for s in range(1, 7)]
EXPRESSIONS = ["happy", "surprise"]


def _pattern(rng, size=12):
    return rng.integers(0, 255, (size, size, 3)).astype(np.float64)


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def id_data(tmp_path_factory) -> Path:
    """6 identities x 6 images: a block pattern per identity plus noise."""
    root = tmp_path_factory.mktemp("ids")
    rng = np.random.default_rng(0)
    for c in range(6):
        base = np.kron(_pattern(rng), np.ones((8, 8, 1)))
        for i in range(6):
            _save(root / f"id{c}" / f"{i}.png", base + rng.normal(0, 25, base.shape))
    return root


@pytest.fixture(scope="module")
def ck_data(tmp_path_factory) -> Path:
    """CK+-style names: expression folders, subject in the file name, 3 frames per sequence."""
    root = tmp_path_factory.mktemp("ck")
    rng = np.random.default_rng(1)
    faces = {s: np.kron(_pattern(rng), np.ones((8, 8, 1))) for s in SUBJECTS}
    marks = {e: np.kron(_pattern(rng, 4), np.ones((24, 24, 1))) for e in EXPRESSIONS}
    for s in SUBJECTS:
        for q, e in enumerate(EXPRESSIONS, start=1):
            for f in range(3):
                img = 0.5 * faces[s] + 0.5 * marks[e] + rng.normal(0, 10, faces[s].shape)
                _save(root / e / f"{s}_{q:03d}_{f + 10:08d}.png", img)
    return root


def _vcfg(id_data, tmp_path, **kw):
    from facelivenet.train.options import VerificationConfig

    base = dict(
        data=str(id_data), out=str(tmp_path / "s1.keras"), epochs=2, batch_size=8, steps_per_epoch=2,
        image_size=TINY["image_size"], embedding_size=TINY["embedding_size"], val_fraction=0.34,
        quiet=True, dropout=0.0,
    )
    base.update(kw)
    return VerificationConfig(**base)


def _weights(path) -> list[np.ndarray]:
    from facelivenet.models.io import load_network

    return load_network(path).get_weights()


# --- weight decay really enters the loss -----------------------------------------------------

@pytest.mark.slow
def test_weight_decay_is_in_the_differentiated_loss(tiny_config):
    import keras
    import tensorflow as tf

    from facelivenet import losses
    from facelivenet.models.network import FaceLiveNet
    from facelivenet.train.options import VerificationLossConfig
    from facelivenet.train.stages import VerificationStage

    keras.utils.set_random_seed(0)
    wd = 0.01
    stage = VerificationStage(FaceLiveNet(tiny_config.replace(weight_decay=wd, dropout=0.0)), 3,
                              VerificationLossConfig(kind="center", alpha=0.5))
    images = np.random.default_rng(0).integers(0, 255, (4, 80, 80, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    kernel = stage.body.get_layer("verif_bottleneck").kernel
    with tf.GradientTape(persistent=True) as tape:
        out = stage.step(images, labels, scale=1.0, replicas=1)
        without_wd = out.loss - out.logs["weight_decay"]
    expected_wd = float(losses.weight_decay(stage.body)) + float(losses.weight_decay(stage.term.head))
    assert float(out.logs["weight_decay"]) == pytest.approx(expected_wd, rel=1e-5)
    assert expected_wd > 0
    assert float(out.loss) == pytest.approx(
        float(out.logs["ce_id"]) + 0.5 * float(out.logs["lc"]) + expected_wd, rel=1e-5)
    # d(loss)/d(kernel) - d(loss - wd)/d(kernel) = d(wd * ||K||^2)/dK = 2 wd K
    g_full = tape.gradient(out.loss, kernel.value)
    g_plain = tape.gradient(without_wd, kernel.value)
    np.testing.assert_allclose(np.asarray(g_full - g_plain), 2 * wd * np.asarray(kernel.value), rtol=1e-4, atol=1e-7)


# --- stage 1 end to end, logs, best model ------------------------------------------------------

@pytest.mark.slow
def test_stage1_writes_model_best_checkpoint_and_logs(id_data, tmp_path):
    from facelivenet.models.io import load_network
    from facelivenet.models.network import FaceLiveNet
    from facelivenet.train.logs import read_csv
    from facelivenet.train.run import train_verification

    sched = tmp_path / "lr.txt"
    sched.write_text("0: 0.01\n1: 0.002\n")
    # An LFW-style folder and pairs file over the same synthetic faces.
    lfw = tmp_path / "lfw"
    for c in range(6):
        (lfw / f"id{c}").mkdir(parents=True)
        for i in range(6):
            os.symlink(id_data / f"id{c}" / f"{i}.png", lfw / f"id{c}" / f"id{c}_{i + 1:04d}.png")
    pairs = ["2 3"]
    for fold in range(2):
        pairs += [f"id{c} 1 {2 + fold}" for c in range(3 * fold, 3 * fold + 3)]
        pairs += [f"id{c} 1 id{(c + 1) % 6} {2 + fold}" for c in range(3 * fold, 3 * fold + 3)]
    (tmp_path / "pairs.txt").write_text("\n".join(pairs) + "\n")
    result = train_verification(_vcfg(id_data, tmp_path, lr_schedule=str(sched),
                                      val_pairs=str(tmp_path / "pairs.txt"), val_images=str(lfw)))
    net = load_network(result.model)
    assert isinstance(net, FaceLiveNet)
    assert net.network_config.image_size == 80 and net.network_config.embedding_size == 32
    assert not any(l.name == "identity_logits" for l in net.layers)     # training-only head not saved
    assert result.metric == "lfw_accuracy" and result.best_model.is_file()  # the pairs file picks the best
    assert 0.0 <= result.best_metric <= 1.0
    work = result.work_dir
    steps = read_csv(work / "steps.csv")
    assert [int(r["step"]) for r in steps] == [1, 2, 3, 4]
    assert {"loss", "ce_id", "lc", "weight_decay", "acc_id", "lr"} <= set(steps[0])
    epochs = read_csv(work / "epochs.csv")
    assert [float(r["lr"]) for r in epochs] == [0.01, 0.002]          # the schedule file is used
    assert "val_pair_accuracy" in epochs[0] and 0 <= float(epochs[0]["lfw_accuracy"]) <= 1
    assert any(p.name.startswith("events.out.tfevents") for p in (work / "tensorboard").iterdir())
    assert (work / "checkpoint" / "variables.npz").is_file()
    assert (work / "identities.txt").read_text().split() == sorted(
        (work / "identities.txt").read_text().split())
    # A second run into the same work folder must not silently overwrite it.
    from facelivenet.errors import TrainingError

    with pytest.raises(TrainingError, match="--resume"):
        train_verification(_vcfg(id_data, tmp_path))


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues_exactly(id_data, tmp_path):
    import json as _json

    from facelivenet.train.run import train_verification

    straight = train_verification(_vcfg(id_data, tmp_path / "a", out=str(tmp_path / "a.keras")))

    def interrupt(step, logs):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)   # a real Ctrl-C, mid-epoch 2

    cfg = _vcfg(id_data, tmp_path / "b", out=str(tmp_path / "b.keras"))
    with pytest.raises(KeyboardInterrupt):
        train_verification(cfg, on_step=interrupt)
    state = _json.loads((cfg.work_path / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 1, 3)
    assert not Path(cfg.out).exists()
    from dataclasses import replace

    resumed = train_verification(replace(cfg, resume=True))
    assert resumed.global_step == 4
    for a, b in zip(_weights(straight.model), _weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed.best_metric == pytest.approx(straight.best_metric)
    from facelivenet.train.logs import read_csv

    assert [int(r["step"]) for r in read_csv(cfg.work_path / "steps.csv")] == [1, 2, 3, 4]


# --- stage 2 ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_stage2_freezes_stem_and_branch1_and_takes_the_dataset_classes(ck_data, tiny_model_path, tmp_path):
    from facelivenet.models.io import load_network
    from facelivenet.train.options import ExpressionConfig
    from facelivenet.train.logs import read_csv
    from facelivenet.train.run import train_expression

    cfg = ExpressionConfig(
        data=str(ck_data), out=str(tmp_path / "s2.keras"), model=str(tiny_model_path), epochs=1,
        batch_size=8, steps_per_epoch=3, val_fraction=0.34, quiet=True, learning_rate=0.01,
        center_loss_factor=0.1, center_loss_alfa=0.5,
    )
    result = train_expression(cfg)
    before, after = load_network(tiny_model_path), load_network(result.model)
    assert after.network_config.expression_classes == tuple(EXPRESSIONS)
    for layer in before.verification_layers():
        for a, b in zip(layer.get_weights(), after.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)      # frozen, BN statistics too
    src = before.get_layer("verif_Block8_1_up").get_weights()[0]
    dst = after.get_layer("expr_Block8_1_up").get_weights()[0]
    assert src.shape == dst.shape and not np.allclose(src, dst)        # started from branch 1, then trained
    assert np.abs(src - dst).max() < 0.5                                 # ... but started there
    steps = read_csv(result.work_dir / "steps.csv")
    assert float(steps[0]["center_loss"]) >= 0 and "acc_expr" in steps[0]
    assert result.metric == "val_accuracy"


def test_stage2_train_all_fine_tunes_the_stem_and_keep_branch2_keeps_branch2(ck_data, tiny_model_path, tmp_path):
    from facelivenet.errors import ConfigError
    from facelivenet.models.io import load_network
    from facelivenet.train.options import ExpressionConfig
    from facelivenet.train.run import train_expression

    common = dict(data=str(ck_data), epochs=1, batch_size=8, steps_per_epoch=2, val_fraction=0.34, quiet=True,
                  learning_rate=0.01, bn_batches=0)
    first = train_expression(ExpressionConfig(out=str(tmp_path / "a.keras"), model=str(tiny_model_path), **common))
    # With lr 0, --train-all --keep-branch2 starts from (and stays at) the first model's branch 2.
    kept = train_expression(ExpressionConfig(out=str(tmp_path / "b.keras"), model=str(first.model), train_all=True,
                                             keep_branch2=True, **{**common, "learning_rate": 1e-30}))
    a, b = load_network(first.model), load_network(kept.model)
    for name in ("expr_Block8_1_up", "expression_logits"):
        for x, y in zip(a.get_layer(name).get_weights(), b.get_layer(name).get_weights()):
            np.testing.assert_allclose(x, y, atol=1e-6, err_msg=name)
    tuned = train_expression(ExpressionConfig(out=str(tmp_path / "c.keras"), model=str(first.model), train_all=True,
                                              keep_branch2=True, **common))
    c = load_network(tuned.model)
    stem = next(l.name for l in a.verification_layers() if l.get_weights())
    moved = [not np.allclose(x, y) for x, y in zip(a.get_layer(stem).get_weights(), c.get_layer(stem).get_weights())]
    assert any(moved), stem                                               # the stem is trained too
    with pytest.raises(ConfigError, match="go with --model"):
        ExpressionConfig(out=str(tmp_path / "d.keras"), from_scratch=True, train_all=True, data=str(ck_data))


# --- multitask ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_multitask_logs_weights_every_step_and_plots(ck_data, tiny_model_path, tmp_path):
    from facelivenet.models.io import load_network
    from facelivenet.train.options import MultitaskConfig
    from facelivenet.train.logs import read_csv
    from facelivenet.train.run import train_multitask

    cfg = MultitaskConfig(
        data=str(ck_data), out=str(tmp_path / "mt.keras"), model=str(tiny_model_path), epochs=1,
        batch_size=8, steps_per_epoch=3, val_fraction=0.34, quiet=True, weight_lr=5.0,
    )
    result = train_multitask(cfg)
    steps = read_csv(result.work_dir / "steps.csv")
    assert len(steps) == 3                                              # 24 training images / 8
    w1 = [float(r["w1"]) for r in steps]
    for r in steps:
        assert float(r["w1"]) + float(r["w2"]) == pytest.approx(1.0, abs=1e-5)
        assert float(r["l1"]) > 0 and float(r["l2"]) > 0
    assert max(w1) - min(w1) > 1e-4                                     # the weights move
    png = result.work_dir / "task_weights.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before, after = load_network(tiny_model_path), load_network(result.model)
    assert not np.allclose(before.get_layer("dyn_dense").get_weights()[0], after.get_layer("dyn_dense").get_weights()[0])
    assert after.network_config.expression_classes == tuple(EXPRESSIONS)
    assert result.metric == "val_score" and result.best_model is not None


# --- CLI ------------------------------------------------------------------------------------

def _cli(args):
    from facelivenet.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.mark.slow
def test_cli_train_verification_bf16_mirrored_json(id_data, tmp_path):
    import keras

    from facelivenet.models.io import load_network

    r = _cli(["train-verification", "--data", str(id_data), "--out", str(tmp_path / "m.keras"),
              "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "1", "--image-size", "80",
              "--embedding-size", "32", "--val-fraction", "0.34", "--precision", "bf16", "--strategy", "mirrored",
              "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["model"].endswith("m.keras") and d["steps"] == 1 and d["metric"] == "val_pair_accuracy"
    assert np.isfinite(d["epochs"][0]["loss"])
    assert keras.config.dtype_policy().name == "float32"                # policy restored
    assert all(w.dtype == np.float32 for w in load_network(d["model"]).get_weights())


@pytest.mark.parametrize("args, message", [
    (["train-verification", "--data", "{ids}", "--out", "m.h5"], "must be a .keras file"),
    (["train-verification", "--data", "{tmp}/none", "--out", "m.keras"], "no such dataset folder"),
    (["train-verification", "--data", "{ids}", "--out", "{tmp}/m.keras", "--resume"], "no checkpoint to resume"),
    (["train-verification", "--data", "{ids}", "--out", "m.keras", "--val-pairs", "p.txt"], "go together"),
    (["train-expression", "--data", "{ids}", "--out", "m.keras"], "--model STAGE1.keras or --from-scratch"),
    (["train-verification", "--data", "{ids}", "--out", "{tmp}/m.keras", "--lr-schedule", "{tmp}/bad.txt"],
     "bad.txt:2: epoch must be a whole number"),
    (["train-multitask", "--data", "{ids}", "--out", "m.keras", "--model", "{tmp}/none.keras"], "no such model file"),
])
def test_cli_errors_are_one_line_exit_2(id_data, tmp_path, args, message):
    (tmp_path / "bad.txt").write_text("0: 0.1\nten: 0.01\n")
    args = [a.format(ids=id_data, tmp=tmp_path) for a in args]
    r = _cli(args)
    assert r.exit_code == 2, r.output
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.output


def test_multitask_help_states_the_unit_rule():
    r = _cli(["train-multitask", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "w1 / (L1 + 0.01) + w2 / (L2 + 0.01)" in text and "(1 + w1) L1 + w2 L2" in text


def test_is_chief_reads_the_cluster_role():
    from types import SimpleNamespace

    from facelivenet.train.distribute import is_chief

    def strategy(task_type, task_id, spec):
        spec_obj = SimpleNamespace(as_dict=lambda: spec)
        return SimpleNamespace(cluster_resolver=SimpleNamespace(
            task_type=task_type, task_id=task_id, cluster_spec=lambda: spec_obj))

    workers = {"worker": ["a:1", "b:1"]}
    assert is_chief(SimpleNamespace())                                     # no cluster: one process
    assert is_chief(strategy("worker", 0, workers))
    assert not is_chief(strategy("worker", 1, workers))
    with_chief = {"chief": ["c:1"], "worker": ["a:1"]}
    assert is_chief(strategy("chief", 0, with_chief))
    assert not is_chief(strategy("worker", 0, with_chief))


def test_cli_unreadable_training_image_is_one_line(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(2):
            _save(tmp_path / "d" / c / f"{i}.png", rng.integers(0, 255, (90, 90, 3)))
    (tmp_path / "d" / "b" / "1.png").write_text("not a png")
    r = _cli(["train-verification", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m.keras"),
              "--batch-size", "4", "--image-size", "80", "--embedding-size", "32", "--val-fraction", "0",
              "--quiet"])
    assert r.exit_code == 2, r.output
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "1.png: not a readable image" in lines[0], r.stderr


# --- checkpoint and log files (no training) ------------------------------------------------

def test_checkpoint_round_trip_and_mismatches(tmp_path):
    import keras

    from facelivenet.errors import TrainingError
    from facelivenet.train import checkpoint as ckpt

    a, b = keras.Variable(np.arange(6.0).reshape(2, 3)), keras.Variable(np.ones(4))
    state = ckpt.TrainState(epoch=3, step=2, global_step=14, best_metric=0.5, best_epoch=1, fingerprint={"x": 1})
    ckpt.save_checkpoint(tmp_path, [a, b], state)
    ckpt.save_checkpoint(tmp_path, [a, b], state)                       # replaces the previous one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    a.assign(np.zeros((2, 3)))
    ckpt.restore_variables(tmp_path, [a, b])
    np.testing.assert_array_equal(np.asarray(a), np.arange(6.0).reshape(2, 3))
    assert ckpt.load_state(tmp_path) == state
    with pytest.raises(TrainingError, match="holds 2 variables, this run has 1"):
        ckpt.restore_variables(tmp_path, [a])
    with pytest.raises(TrainingError, match=r"shape \(3,\), checkpoint has \(4,\)"):
        ckpt.restore_variables(tmp_path, [a, keras.Variable(np.ones(3))])
    with pytest.raises(TrainingError, match="no checkpoint"):
        ckpt.load_state(tmp_path / "none")


def test_csv_log_resume_truncates_and_plot(tmp_path):
    from facelivenet.train.logs import CsvLog, plot_multitask, read_csv

    log = CsvLog(tmp_path / "steps.csv", resume=False)
    for step in range(1, 6):
        log.write({"step": step, "w1": 0.1 * step, "w2": 1 - 0.1 * step, "l1": 2.0 / step, "l2": 1.0})
    again = CsvLog(tmp_path / "steps.csv", resume=True)
    again.truncate("step", 3)
    again.write({"step": 4, "w1": 0.9, "w2": 0.1, "l1": 0.5, "l2": 1.0})
    rows = read_csv(tmp_path / "steps.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and rows[-1]["w1"] == "0.9"
    png = plot_multitask(tmp_path / "steps.csv", tmp_path / "w.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    CsvLog(tmp_path / "steps.csv", resume=False)                        # a fresh run starts a new file
    assert not (tmp_path / "steps.csv").exists()


@pytest.mark.slow
def test_resume_refuses_other_settings(id_data, tmp_path):
    from dataclasses import replace

    from facelivenet.errors import TrainingError
    from facelivenet.train import checkpoint as ckpt
    from facelivenet.train.run import train_verification

    cfg = _vcfg(id_data, tmp_path, resume=True)
    ckpt.save_checkpoint(cfg.work_path, [], ckpt.TrainState(fingerprint={"stage": "expression"}))
    with pytest.raises(TrainingError, match=r"other settings \(.*stage.*\); cannot resume"):
        train_verification(cfg)
    with pytest.raises(TrainingError, match="holds a checkpoint"):
        train_verification(replace(cfg, resume=False))


def test_width_reaches_the_fresh_network(tmp_path):
    from facelivenet.errors import ConfigError
    from facelivenet.train.run import _fresh_network

    net = _fresh_network(_vcfg(tmp_path, tmp_path, width=0.5))
    assert net.network_config.width == 0.5
    assert net.get_layer("Conv2d_1a_3x3_conv").filters == 16
    with pytest.raises(ConfigError, match="width"):
        _vcfg(tmp_path, tmp_path, width=0.0)
