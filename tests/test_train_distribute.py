"""tf.distribute: a MirroredStrategy step over two logical CPUs equals a single-device step.

Runs in a subprocess, because logical devices must be configured before TensorFlow
starts. The global batch is one half-batch twice, so each replica's batch-norm
statistics equal the whole batch's and the two steps must agree to rounding: what is
checked is the distribution plumbing (loss scaling, gradient all-reduce, the ICPR
hinge decided on the global batch, centers and task weights summed across replicas).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from facelivenet.config import NetworkConfig
from facelivenet.models.network import FaceLiveNet
from facelivenet.train.options import VerificationLossConfig
from facelivenet.train.stages import MultitaskStage, VerificationStage
from facelivenet.train.steps import make_optimizer, make_step

kind, stage_name = sys.argv[1], sys.argv[2]
cfg = NetworkConfig.from_preset("simple", image_size=80, embedding_size=32, dropout=0.0, weight_decay=1e-3)
rng = np.random.default_rng(0)
half = rng.integers(0, 255, (4, 80, 80, 3)).astype(np.uint8)
images = np.concatenate([half, half])
ids = np.array([0, 1, 2, 0] * 2, np.int32)
labels = ids if stage_name == "verification" else np.stack([ids, np.array([1, 0, 3, 2] * 2)], 1).astype(np.int32)
loss_cfg = VerificationLossConfig(kind=kind, alpha=1e-3, margin=0.5)
init = []
NAMES = []

def run(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        net = FaceLiveNet(cfg)
        stage = (VerificationStage if stage_name == "verification" else MultitaskStage)(net, 3, loss_cfg)
        variables = stage.state_variables()
        if not init:
            init.extend(np.asarray(v.numpy()) for v in variables)
            if stage.centers is not None:
                i = next(k for k, v in enumerate(variables) if v is stage.centers.centers)
                init[i] = rng.normal(0, 1, init[i].shape).astype(np.float32)
        for v, x in zip(variables, init):
            v.assign(x)
        opt = make_optimizer("momentum", 0.01)
        opt.build(stage.trainable_variables())
        unit = None
        if stage.unit_variables():
            unit = keras.optimizers.SGD(0.5)
            unit.build(stage.unit_variables())
        step = make_step(stage, opt, unit, strategy, 8)
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8))
    for x, y in dist:
        logs = {k: float(v) for k, v in step(x, y).items()}
    NAMES[:] = [v.path for v in stage.state_variables()]
    return logs, [np.asarray(v.numpy(), np.float64) for v in stage.state_variables()], strategy.num_replicas_in_sync

single = run(tf.distribute.get_strategy())
mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
changed = sum(not np.allclose(a, b) for a, b in zip(init, single[1]))
# per variable: how far the two updates differ, relative to the size of the update
worst, worst_name = max(
    (float(np.max(np.abs(a - b)) / (np.max(np.abs(a - x)) + 1e-6)) if a.size else 0.0, name)
    for a, b, x, name in zip(single[1], mirrored[1], init, NAMES)
)
print(json.dumps({"single": single[0], "mirrored": mirrored[0], "replicas": [single[2], mirrored[2]],
                  "changed": changed, "worst_relative_difference": worst, "worst_variable": worst_name}))
'''


@pytest.mark.slow
@pytest.mark.parametrize("kind, stage", [("triplet-icpr", "multitask")])  # ICPR hinge, centers, unit, weights
def test_mirrored_two_cpus_matches_single_device(kind, stage):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, stage], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["replicas"] == [1, 2]
    assert r["changed"] > 10                                   # the step did train
    for k, v in r["single"].items():
        assert r["mirrored"][k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    # float32 rounding in another summation order stays ~1e-2 of an update; a wrongly
    # scaled or unreduced gradient or center update would be off by ~1 (100%).
    assert r["worst_relative_difference"] < 5e-2, r["worst_variable"]


@pytest.mark.slow
def test_multiworker_without_tf_config_is_one_chief_worker():
    script = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "from facelivenet.train.distribute import is_chief, make_strategy\n"
        "s = make_strategy('multiworker')\n"
        "print(type(s).__name__, s.num_replicas_in_sync, is_chief(s))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # MultiWorkerMirroredStrategy is an alias of CollectiveAllReduceStrategy
    assert proc.stdout.split()[-3:] == ["CollectiveAllReduceStrategy", "1", "True"]


def test_bad_tf_config_is_a_config_error(monkeypatch):
    from facelivenet.errors import ConfigError
    from facelivenet.train.distribute import make_strategy

    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multiworker")
