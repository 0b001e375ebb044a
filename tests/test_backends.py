"""The model code is backend-neutral: a model saved under TensorFlow runs under JAX.

Runs only where JAX is installed (it is not a dependency); skipped otherwise.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import sys
import numpy as np
import keras
from facelivenet.api import load_model
assert keras.backend.backend() == "jax", keras.backend.backend()
model = load_model(sys.argv[1])
faces = np.load(sys.argv[2])
result = model.analyze(faces)
np.save(sys.argv[3], result.embeddings)
np.save(sys.argv[4], result.expressions)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_model_saved_under_tensorflow_runs_under_jax(tiny_model, tiny_model_path, tmp_path, rng):
    faces = rng.integers(0, 255, (3, 80, 80, 3), dtype=np.uint8)
    np.save(tmp_path / "faces.npy", faces)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_path), str(tmp_path / "faces.npy"),
         str(tmp_path / "emb.npy"), str(tmp_path / "probs.npy")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = tiny_model.analyze(faces)
    np.testing.assert_allclose(np.load(tmp_path / "emb.npy"), ours.embeddings, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), ours.expressions, atol=1e-4)
