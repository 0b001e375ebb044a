import keras
import numpy as np
import pytest

from facelivenet.config import NetworkConfig
from facelivenet.models.network import EXPR, OUTPUTS, VERIF, FaceLiveNet, count_params, task_weights_mean

# Measured on facenet's and facenet-pytorch's Inception-ResNet-v1 (512-d embedding).
FACENET_IRV1_PARAMS = 23_482_624


@pytest.fixture(scope="module")
def full_net():
    keras.utils.set_random_seed(0)
    return FaceLiveNet(NetworkConfig.from_preset("full", embedding_size=512))


def test_full_stem_and_branch1_match_facenet_parameter_count(full_net):
    assert count_params(full_net.verification_layers()) == FACENET_IRV1_PARAMS


@pytest.mark.parametrize("preset", ["full", "simple"])
def test_output_shapes_at_160(preset, full_net):
    net = full_net if preset == "full" else FaceLiveNet(NetworkConfig.from_preset("simple"))
    out = net(np.zeros((2, 160, 160, 3), np.uint8), training=False)
    assert set(out) == set(OUTPUTS)
    assert tuple(out["embedding"].shape) == (2, 512)
    assert tuple(out["expression_logits"].shape) == (2, 7)
    assert tuple(out["expression_probs"].shape) == (2, 7)
    assert tuple(out["expression_features"].shape) == (2, 128)
    assert tuple(out["task_weights"].shape) == (2, 2)
    # Mixed_7a is 3x3x1792 at 160 px, as in facenet.
    assert tuple(net.get_layer("Mixed_7a_concat").output.shape) == (None, 3, 3, 1792)


def test_outputs_are_normalised_and_logits_unclipped(tiny_model, rng):
    x = rng.integers(0, 255, (3, 80, 80, 3), dtype=np.uint8)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in tiny_model.network(x, training=False).items()}
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["expression_probs"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["task_weights"].sum(axis=1), 1.0, rtol=1e-5)
    w = keras.ops.convert_to_numpy(task_weights_mean(out["task_weights"]))
    assert w.shape == (2,) and abs(w.sum() - 1) < 1e-5
    # No ReLU on the logits (the original had one): a random init gives negative logits.
    assert (out["expression_logits"] < 0).any()


def test_custom_depths_and_classes():
    cfg = NetworkConfig(preset="custom", depths=(2, 0, 1), image_size=96, embedding_size=64,
                        expression_classes=("neutral", "happy", "surprise"))
    net = FaceLiveNet(cfg)
    names = [l.name for l in net.layers]
    assert "Block35_2_sum" in names and not any(n.startswith("Block17_") for n in names)
    out = net(np.zeros((1, 96, 96, 3), np.float32))
    assert tuple(out["expression_probs"].shape) == (1, 3)
    assert tuple(out["embedding"].shape) == (1, 64)


def test_get_config_round_trip(tiny_model):
    net = tiny_model.network
    clone = FaceLiveNet.from_config(net.get_config())
    assert clone.network_config == net.network_config
    assert clone.count_params() == net.count_params()
    assert [l.name for l in clone.layers] == [l.name for l in net.layers]


def test_weight_decay_enters_model_losses(tiny_config):
    with_decay = FaceLiveNet(tiny_config.replace(weight_decay=1e-3))
    without = FaceLiveNet(tiny_config.replace(weight_decay=0.0))
    assert len(without.losses) == 0
    assert len(with_decay.losses) > 50  # one per kernel
    total = float(sum(keras.ops.convert_to_numpy(l) for l in with_decay.losses))
    assert total > 0


def test_branch2_is_initialised_from_branch1(tiny_config):
    net = FaceLiveNet(tiny_config)
    src = net.get_layer(f"{VERIF}_Block8_1_up").get_weights()[0]
    assert not np.array_equal(src, net.get_layer(f"{EXPR}_Block8_1_up").get_weights()[0])
    copied = net.copy_branch1_to_branch2()
    # Block8 x (1 + 1 linear), each: 4 conv + 4 BN + up = 9 layers; bottleneck widths differ.
    assert copied == 18
    np.testing.assert_array_equal(src, net.get_layer(f"{EXPR}_Block8_1_up").get_weights()[0])


def test_width_multiplier_scales_filters_and_keeps_the_graph():
    narrow = FaceLiveNet(NetworkConfig.from_preset("simple", width=0.28))
    # About the ICPR paper's 1.31M parameters for its light model.
    assert narrow.count_params() == 1_359_682
    # Mixed_7a concatenates 384 + 256 + 256 conv filters (x 0.28, rounded: 108 + 72 + 72) and
    # the pooled 17x17 map, whose channels are Mixed_6a's: 384 + 256 filters + the 256-channel
    # stem output, also x 0.28 (108 + 72 + 72).
    assert narrow.get_layer("Mixed_7a_concat").output.shape[-1] == (108 + 72 + 72) + (108 + 72 + 72)
    out = narrow(np.zeros((1, 160, 160, 3), np.uint8))
    assert tuple(out["embedding"].shape) == (1, 512) and tuple(out["expression_probs"].shape) == (1, 7)
    assert [l.name for l in narrow.layers] == [l.name for l in FaceLiveNet(NetworkConfig.from_preset("simple")).layers]


def test_width_round_trips_through_save(tmp_path):
    from facelivenet.api import load_model, new_model

    new_model(NetworkConfig.from_preset("simple", width=0.5, image_size=80, embedding_size=16)).save(tmp_path / "w.keras")
    assert load_model(tmp_path / "w.keras").config.width == 0.5
