import pytest

from facelivenet.config import FER2013_CLASSES, PRESETS, NetworkConfig
from facelivenet.errors import ConfigError


def test_presets_have_the_paper_depths():
    assert PRESETS["full"] == (5, 10, 5)
    assert PRESETS["simple"] == (1, 1, 1)
    assert NetworkConfig.from_preset("full").depths == (5, 10, 5)


def test_defaults():
    cfg = NetworkConfig()
    assert cfg.embedding_size == 512
    assert cfg.image_size == 160
    assert cfg.expression_classes == FER2013_CLASSES


def test_dict_round_trip_is_exact():
    cfg = NetworkConfig.from_preset("full", embedding_size=128, expression_classes=("neutral", "happy"))
    d = cfg.to_dict()
    assert d["depths"] == [5, 10, 5]
    assert NetworkConfig.from_dict(d) == cfg


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(depths=(1, 1)), "depths"),
        (dict(embedding_size=0), "embedding_size"),
        (dict(width=0.0), "width"),
        (dict(width=5.0), "width"),
        (dict(image_size=40), "image_size"),
        (dict(expression_classes=("happy",)), "at least 2"),
        (dict(expression_classes=("happy", "happy")), "distinct"),
        (dict(dropout=1.0), "dropout"),
        (dict(standardization="zscore"), "standardization"),
        (dict(alignment="warp"), "alignment"),
        (dict(verification_threshold=5.0), "verification_threshold"),
    ],
)
def test_invalid_values_are_named(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        NetworkConfig(**kwargs)


def test_unknown_preset_and_keys_are_errors():
    with pytest.raises(ConfigError, match="unknown preset"):
        NetworkConfig.from_preset("huge")
    with pytest.raises(ConfigError, match="unknown network config keys"):
        NetworkConfig.from_dict({"embeding_size": 3})
