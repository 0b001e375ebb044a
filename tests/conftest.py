"""Shared fixtures: a tiny model, the shared real-data folder, temporary files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Property tests draw fresh examples on every local run; CI (.ci/run sets
# HYPOTHESIS_PROFILE=ci) replays the same examples each time, so that its verdict on a
# commit does not depend on the draw, and keeps no example database in the checkout.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent
#: Real face data beside the project (never copied into it); tests skip without it.
SHARED_DATA = Path(os.environ.get("FACELIVENET_SHARED_DATA", ROOT.parent / "shared" / "data"))

#: A small, fast configuration: the simple preset at 80 px with a 32-d embedding.
TINY = dict(image_size=80, embedding_size=32)


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture(scope="session")
def tiny_config():
    from facelivenet.config import NetworkConfig

    return NetworkConfig.from_preset("simple", **TINY)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """A freshly initialised simple-preset FaceModel at 80 px (seeded)."""
    from facelivenet.api import new_model

    return new_model(tiny_config, seed=0)


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model, tmp_path_factory) -> Path:
    """The tiny model saved to a .keras file."""
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    tiny_model.save(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def private_config_dir(tmp_path_factory):
    """Keys the tests create (challenge.key, gallery.key) go to a private temporary
    config folder, never the user's (a test may still point elsewhere)."""
    if os.environ.get("FACELIVENET_CONFIG_DIR"):
        yield Path(os.environ["FACELIVENET_CONFIG_DIR"])
        return
    d = tmp_path_factory.mktemp("config") / "facelivenet"
    os.environ["FACELIVENET_CONFIG_DIR"] = str(d)
    try:
        yield d
    finally:
        os.environ.pop("FACELIVENET_CONFIG_DIR", None)


@pytest.fixture(scope="session", autouse=True)
def private_onnx_cache(tmp_path_factory):
    """The ONNX files the default runtime exports for the tests' own models go to a private
    temporary cache, never the user's (the default model's ship with the package)."""
    if os.environ.get("FACELIVENET_CACHE"):
        yield Path(os.environ["FACELIVENET_CACHE"])
        return
    d = tmp_path_factory.mktemp("onnx-cache")
    os.environ["FACELIVENET_CACHE"] = str(d)
    try:
        yield d
    finally:
        os.environ.pop("FACELIVENET_CACHE", None)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def runner():
    """Click's CliRunner with stdout and stderr kept apart."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # Click >= 8.2 keeps stderr apart already
        return CliRunner()


def assert_contract(document):
    """Fail unless ``document`` is a valid decision or error document of the JSON contract
    (facelivenet/schemas/decision.schema.json)."""
    import jsonschema

    from facelivenet.auth.decision import load_schema

    jsonschema.validate(document, load_schema(), cls=jsonschema.Draft202012Validator)
    return document


def run_isolated(code: str, cache_root) -> tuple[int | None, str, list[str], str]:
    """Run ``code`` (which may set ``rc``) in a fresh interpreter with its own ONNX cache.

    Returns (rc, stdout, the tensorflow/keras/tf2onnx modules it imported, stderr): the
    tests that the inference path never loads TensorFlow read the third.
    """
    from facelivenet.runtime import cache

    wrapper = (f"import json, sys\nrc = None\n{code}\n"
               "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(m for m in sys.modules "
               "if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))) + ' RC ' + str(rc) + '\\n')\n")
    env = {k: v for k, v in os.environ.items() if k != "FACELIVENET_MODEL"}
    env.update(PYTHONPATH=str(ROOT), **{cache.CACHE_ENV: str(cache_root)})
    res = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env, timeout=600)
    assert "MODULES " in res.stderr, res.stderr[-2000:]
    head, tail = res.stderr.rsplit("MODULES ", 1)
    modules, rc = tail.split(" RC ")
    return (None if rc.strip() == "None" else int(rc.strip())), res.stdout, json.loads(modules), head


def cli_code(args: list[str]) -> str:
    """Code for :func:`run_isolated` that runs ``facelivenet ARGS`` and sets ``rc`` to its exit code."""
    return ("import runpy\n"
            f"sys.argv = ['facelivenet'] + {list(args)!r}\n"
            "try:\n    runpy.run_module('facelivenet', run_name='__main__')\n"
            "except SystemExit as e:\n    rc = e.code\n")


def sealed_gallery_parts(path) -> tuple[str, bytes]:
    """A sealed gallery file's clear header (as JSON text, without the data) and its sealed bytes."""
    from facelivenet.auth.gallery import protect

    head = json.loads(Path(path).read_text())
    return json.dumps({k: v for k, v in head.items() if k != "data"}), protect._unb64(head["data"], "data", str(path))
