"""Export of the face detector's three MTCNN stages (TensorFlow-only module).

P-Net, R-Net and O-Net go out separately, each taking a uint8 RGB batch named ``image``
(P-Net any size, R-Net 24x24, O-Net 48x48) and giving its named outputs; the cascade
around them (pyramid, NMS, box regression) is numpy and stays with the caller. Each
stage is checked against ours on real inputs cut from face crops
(:class:`~facelivenet.export.parity.StageParity`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelivenet.export.formats import load_runner, write_artefact
from facelivenet.export.parity import DETECTOR_BOUNDS, StageParity, decision_agreement

#: MTCNN stages: input side (None: any size) and output names, in runner order.
DETECTOR_STAGES: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "pnet": (None, ("offsets", "probabilities")),
    "rnet": (24, ("offsets", "probabilities")),
    "onet": (48, ("offsets", "landmarks", "probabilities")),
}


def _stage_serving(stage: str):
    """(keras model with the pretrained weights, tf.function ``serve(image uint8) -> dict``)."""
    import tensorflow as tf

    from facelivenet.detect.mtcnn_nets import load_network, normalize

    net = load_network(stage)
    side, names = DETECTOR_STAGES[stage]

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 3], tf.uint8, name="image")])
    def serve(image):
        return dict(zip(names, net(normalize(image), training=False)))

    return net, serve


def stage_inputs(stage: str, faces: np.ndarray) -> np.ndarray:
    """Real inputs for a stage from (N, S, S, 3) uint8 face crops. P-Net takes the crops
    as they are; R-Net and O-Net get the central 70% (about the face box the cascade
    hands them, without the crop's margin), resized to 24 and 48 px."""
    import cv2

    side, _ = DETECTOR_STAGES[stage]
    if side is None:
        return faces
    s = faces.shape[1]
    m = int(round(s * 0.15))
    return np.stack([cv2.resize(f[m : s - m, m : s - m], (side, side), interpolation=cv2.INTER_AREA)
                     for f in faces])


def export_detector(fmt: str, out_dir: str | os.PathLike, *, faces: np.ndarray,
                    calibrate: bool = False) -> dict[str, tuple[Path, StageParity]]:
    """Export P-Net, R-Net and O-Net to ``out_dir/{pnet,rnet,onet}.<ext>`` and check each.

    Args:
        faces: (N, S, S, 3) uint8 real face crops: the parity inputs, and the int8
            calibration data when ``calibrate``.

    Returns:
        stage → (path, parity).
    """
    from keras import ops

    from facelivenet.detect.mtcnn_nets import normalize

    ext = {"savedmodel": "savedmodel", "tflite": "tflite", "tflite-int8": "int8.tflite", "onnx": "onnx"}[fmt]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for stage, (_, names) in DETECTOR_STAGES.items():
        net, serve = _stage_serving(stage)
        x = stage_inputs(stage, faces)
        calib = [x[i : i + 1] for i in range(len(x))] if calibrate else None
        path = write_artefact(serve, fmt, out / f"{stage}.{ext}", calib)

        def ours(batch, net=net):
            return tuple(ops.convert_to_numpy(t) for t in net(normalize(batch), training=False))

        a, b = ours(x), load_runner(fmt, path, names)(x)
        probs_a, probs_b = a[-1], b[-1]
        bound_diff, bound_agree = DETECTOR_BOUNDS[fmt]
        parity = StageParity(
            stage=stage, format=fmt, inputs=int(len(x)),
            max_abs_diff={n: float(np.abs(u - v).max()) for n, u, v in zip(names, a, b)},
            decision_agreement=decision_agreement(probs_a, probs_b),
            bound_abs_diff=bound_diff, bound_agreement=bound_agree,
        )
        results[stage] = (path, parity)
    return results
