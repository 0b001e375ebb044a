import numpy as np
import pytest

from facelivenet.api import Analysis, load_model
from facelivenet.errors import ModelLoadError


def test_analyze_shapes_norms_and_probabilities(tiny_model, rng):
    faces = rng.integers(0, 255, (5, 80, 80, 3), dtype=np.uint8)
    res = tiny_model.analyze(faces)
    assert isinstance(res, Analysis) and len(res) == 5
    assert res.embeddings.shape == (5, 32) and res.embeddings.dtype == np.float32
    assert res.expressions.shape == (5, 7) and res.expressions.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(res.expressions.sum(axis=1), 1.0, rtol=1e-5)
    assert res.expression_classes == tiny_model.expression_classes
    assert len(res.top_expressions()) == 5
    assert res.probability("happy").shape == (5,)


def test_analyze_matches_the_keras_model(tiny_model, rng):
    faces = rng.integers(0, 255, (2, 80, 80, 3), dtype=np.uint8)
    res = tiny_model.analyze(faces)
    ref = tiny_model.network(faces, training=False)
    np.testing.assert_allclose(res.embeddings, np.asarray(ref["embedding"]), atol=1e-5)
    np.testing.assert_allclose(res.expressions, np.asarray(ref["expression_probs"]), atol=1e-5)


def test_analyze_resizes_crops_of_any_size_and_colour(tiny_model, rng):
    faces = [rng.integers(0, 255, (120, 100, 3), dtype=np.uint8), rng.integers(0, 255, (40, 40), dtype=np.uint8)]
    res = tiny_model.analyze(faces)
    assert res.embeddings.shape == (2, 32)


def test_analyze_empty_batch(tiny_model):
    res = tiny_model.analyze(np.zeros((0, 80, 80, 3), np.uint8))
    assert res.embeddings.shape == (0, 32) and res.expressions.shape == (0, 7)


def test_forward_is_compiled_once_and_reused(tiny_model, rng):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tracing count is a TensorFlow notion")
    for n in (1, 3, 2):
        tiny_model.analyze(rng.integers(0, 255, (n, 80, 80, 3), dtype=np.uint8))
    forward = tiny_model._forward
    tiny_model.analyze(rng.integers(0, 255, (4, 80, 80, 3), dtype=np.uint8))
    assert tiny_model._forward is forward
    assert forward.graph_function.experimental_get_tracing_count() == 1


def test_save_load_round_trip_reproduces_outputs_exactly(tiny_model, tiny_model_path, rng):
    faces = rng.integers(0, 255, (3, 80, 80, 3), dtype=np.uint8)
    loaded = load_model(tiny_model_path)
    assert loaded.config == tiny_model.config
    assert loaded.expression_classes == tiny_model.expression_classes
    assert loaded.source == tiny_model_path
    a, b = tiny_model.analyze(faces), loaded.analyze(faces)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.expressions, b.expressions)


def test_saved_file_carries_preprocessing_and_threshold(tiny_config, tmp_path):
    from facelivenet.api import new_model

    cfg = tiny_config.replace(standardization="per_image", verification_threshold=0.8,
                              expression_classes=("neutral", "happy", "surprise"))
    new_model(cfg).save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.config.standardization == "per_image"
    assert loaded.config.verification_threshold == 0.8
    assert loaded.expression_classes == ("neutral", "happy", "surprise")
    assert loaded.network.get_layer("standardize").method == "per_image"


def test_not_a_model_errors_name_the_file(tmp_path):
    import keras

    junk = tmp_path / "junk.keras"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ModelLoadError, match="junk.keras: not a .keras model file"):
        load_model(junk)
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "absent.keras")
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(tmp_path)
    foreign = tmp_path / "foreign.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(foreign)
    with pytest.raises(ModelLoadError, match="foreign.keras: a Keras model of class Sequential, not a facelivenet model"):
        load_model(foreign)


def test_missing_default_model_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELIVENET_MODEL", str(tmp_path / "none.keras"))
    with pytest.raises(ModelLoadError) as info:
        load_model()
    assert str(tmp_path / "none.keras") in str(info.value) and "--model" in str(info.value)


def test_interrupted_save_leaves_previous_file_intact(tiny_model, tmp_path, monkeypatch):
    target = tmp_path / "m.keras"
    tiny_model.save(target)
    before = target.read_bytes()

    def boom(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(tiny_model.network), "save", boom)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]
