"""The MTCNN cascade on ONNX Runtime: :class:`OnnxFaceDetector` (no TensorFlow).

The stages' recipes (pyramid, thresholds, NMS, regression, landmarks) are those of
:class:`facelivenet.detect.FaceDetector`; only the three forwards change: P-Net gets
each pyramid level area-resized by OpenCV, R-Net and O-Net get bilinear patches from
:func:`facelivenet.detect.boxes.crop_patches` (the numpy twin of TensorFlow's
``crop_and_resize`` that the Keras path uses), all as float32 pixels.

Where the time goes (640x480, one face; profiled with cProfile and per-stage timers):
P-Net over the ten pyramid levels is about half of it, its largest level (384x288) half
of that; the ten area resizes of the frame about a quarter; R-Net on its ~80 proposals
most of the rest. The resizes run on a second thread, each level made while P-Net runs
on the one before (OpenCV and ONNX Runtime release the GIL), so on two cores they cost
little more than the first level; the values are those of resizing in turn.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from facelivenet.detect import boxes as bx
from facelivenet.detect.detector import FaceDetector
from facelivenet.detect.stages import ONetStage, PNetStage, RNetStage

#: The value outside the image in R-/O-Net patches: the networks' normalisation mean
#: (``facelivenet.detect.mtcnn_nets.MEAN``, which imports Keras), so it reads as 0.
PIXEL_MEAN = 127.5


#: Intra-op threads of each detector stage. Two, not one: P-Net's largest pyramid levels
#: and R-Net's batch of ~80 proposals split over two threads, so a frame's detection
#: uses both cores of a 2-core machine (the work itself is the same: CPU time per frame
#: did not change). On the shared, loaded machine the wall-time gain varied from none to
#: 95 instead of 130 ms per 640x480 frame, side by side; the smaller levels gain nothing.
DETECTOR_THREADS = min(2, os.cpu_count() or 1)


def session(path: Path, threads: int = 1):
    """An ONNX Runtime session on the CPU, all graph optimisations on.

    ONNX Runtime's default thread pool spins its threads waiting for work; on a busy
    machine (or beside the video decoder) that spinning takes the cores the work needs:
    P-Net over a 640x480 pyramid measured 140 ms with the defaults and 37 ms with one
    thread and no spinning. The face network gets ``threads`` (0: one per core); the
    detector's stages :data:`DETECTOR_THREADS`.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        from facelivenet.errors import ModelLoadError

        raise ModelLoadError("--runtime onnx needs ONNX Runtime (a dependency of facelivenet): "
                             "pip install onnxruntime") from None

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_PYRAMID_THREADS: dict[int, ThreadPoolExecutor] = {}


def _pyramid_thread() -> ThreadPoolExecutor:
    """This process's thread for pyramid resizes (one per process: a forked worker (uvicorn,
    ``align --workers``) inherits its parent's executor without its thread, and work sent
    to it would wait forever)."""
    pid = os.getpid()
    if pid not in _PYRAMID_THREADS:
        _PYRAMID_THREADS[pid] = ThreadPoolExecutor(1, thread_name_prefix="facelivenet-pyramid")
    return _PYRAMID_THREADS[pid]


def onnx_runners(folder: Path):
    """:class:`facelivenet.detect.compiled.CascadeRunners`-shaped forwards over ``folder/*.onnx``."""
    from types import SimpleNamespace

    pnet, rnet, onet = (session(folder / f"{n}.onnx", DETECTOR_THREADS) for n in ("pnet", "rnet", "onet"))

    def run_pnet(image, sizes):
        pixels = image.astype(np.float32)
        resizer = _pyramid_thread()
        levels = [resizer.submit(cv2.resize, pixels, (int(w), int(h)), interpolation=cv2.INTER_AREA)
                  for h, w in sizes]
        all_offsets, all_probs = [], []
        for level in levels:
            offsets, probs = pnet.run(["offsets", "probabilities"], {"image": level.result()[None]})
            all_offsets.append(offsets.reshape(-1, 4))
            all_probs.append(probs[..., 1].reshape(-1))
        return np.concatenate(all_offsets), np.concatenate(all_probs)

    def run_patches(sess, size, names):
        def run(images, boxes, index):
            patches = bx.crop_patches(images, boxes, index, size, fill=PIXEL_MEAN)
            out = sess.run(list(names), {"image": patches})
            return tuple(out[:-1]) + (out[-1][:, 1],)

        return run

    return SimpleNamespace(pnet=run_pnet, rnet=run_patches(rnet, 24, ("offsets", "probabilities")),
                           onet=run_patches(onet, 48, ("offsets", "landmarks", "probabilities")))


class OnnxFaceDetector(FaceDetector):
    """:class:`~facelivenet.detect.FaceDetector` whose networks run on ONNX Runtime.

    Args:
        folder: the folder of ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``; default: the
            package's export of the installed MTCNN weights (or the user cache's, built
            on first use; :func:`facelivenet.runtime.inference.detector_folder`).
        **kwargs: as :class:`~facelivenet.detect.FaceDetector`.
    """

    def __init__(self, folder: str | Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.folder = None if folder is None else Path(folder)

    def __repr__(self) -> str:
        return "Onnx" + super().__repr__()

    def load(self) -> "OnnxFaceDetector":
        if self._stages is None:
            from facelivenet.runtime.inference import detector_folder

            runners = onnx_runners(self.folder or detector_folder())
            t1, t2, t3 = self.thresholds
            self._stages = (PNetStage(runners, t1), RNetStage(runners, t2), ONetStage(runners, t3))
        return self
