"""End to end, side by side: our ONNX Runtime path, our Keras path, ipazc/mtcnn and facenet-pytorch's MTCNN.

From ../shared/data/videos/d18.mp4 it builds a 640x480 clip (the 480x480 frames centred on
black) and prints, in one run:

* detection at full resolution, ms/frame: our MTCNN on ONNX Runtime (every frame, and
  with tracking: the full cascade every 5th frame), on Keras, and ipazc/mtcnn (the
  ``mtcnn`` package, same weights) and facenet-pytorch's MTCNN (``facenet-pytorch``: not
  a dependency, as its torch<=2.3 / numpy<2 pins would downgrade this environment; skipped
  with a note when it is not importable), with the IoU of each one's faces against ipazc's;
* the face network, ms/face at batch 1 and batched (16 faces), ONNX Runtime and Keras;
* end to end, frames/s of the verify-video pipeline (decode, detection at the product's
  320 px, alignment, network, challenge engine) on every frame of the clip;
* realtime latency, ms per frame (p50, p95, max) at batch 1: the frames of the clip fed one
  at a time, as a live source gives them, through the ``realtime`` command's per-frame work
  (the analyser at its 320 px detection with the periodic full-resolution search, and
  the challenge engine);
* start-up: seconds from starting a fresh interpreter to the first analysed frame
  (imports, model load, first detection and forward), per runtime; the ONNX files are
  cached first (the one-time export is not start-up).

    .venv/bin/python bench/e2e.py [--model M.keras] [--frames 60] [--repeats 2]

The machine's load average is printed with the figures: on a shared machine they are
upper bounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facelivenet.auth.analyzer import FULL_CHECK_EVERY, FrameAnalyzer  # noqa: E402
from facelivenet.auth.challenge import Challenge, ChallengeEngine, ChallengeSettings  # noqa: E402
from facelivenet.auth.verify import FRAME_BATCH, verify_clip  # noqa: E402
from facelivenet.detect.boxes import iou  # noqa: E402
from facelivenet.runtime import TrackingDetector, inference_backend  # noqa: E402
from facelivenet.video import VideoSource, VideoWriter, read_frames  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "videos" / "d18.mp4"

#: A fresh interpreter: import, load the runtime, analyse the first frame; prints the time.
STARTUP = """
import sys, time
from facelivenet.auth.analyzer import FrameAnalyzer
from facelivenet.runtime import inference_backend
from facelivenet.video import read_frames
backend = inference_backend(sys.argv[1], sys.argv[2] or None)
frame = read_frames(sys.argv[3], max_frames=1)[1][0].image
FrameAnalyzer(backend.model, backend.detector).analyze(frame)
print(time.time(), 'tensorflow' in sys.modules)
"""


def make_clip(src: Path, out: Path, size: tuple[int, int]) -> Path:
    """Copy ``src`` into a ``size`` (w, h) clip: centred, padded with black, never upscaled."""
    info, frames = read_frames(src)
    w, h = size
    scale = min(w / info.width, h / info.height, 1.0)
    nw, nh = int(info.width * scale), int(info.height * scale)
    with VideoWriter(out, info.fps, size) as writer:
        for f in frames:
            canvas = np.zeros((h, w, 3), np.uint8)
            img = cv2.resize(f.image, (nw, nh), interpolation=cv2.INTER_AREA) if scale < 1 else f.image
            y, x = (h - nh) // 2, (w - nw) // 2
            canvas[y : y + nh, x : x + nw] = img
            writer.write(canvas)
    return out


def per_call_ms(fn, items, repeats: int) -> float:
    """Best of ``repeats`` passes over ``items``: ms per item."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best * 1e3


def facenet_pytorch_mtcnn():
    """facenet-pytorch's MTCNN set as ours (min face 20, thresholds 0.6/0.7/0.7, factor 0.709), or None."""
    try:
        from facenet_pytorch import MTCNN as TorchMTCNN
    except ImportError:
        return None
    return TorchMTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709, device="cpu")


def facenet_pytorch_boxes(mtcnn, frame: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes with probability > 0.9 of facenet-pytorch's MTCNN."""
    boxes, probs = mtcnn.detect(frame)
    if boxes is None:
        return np.zeros((0, 4))
    return np.asarray(boxes, np.float64)[np.asarray(probs) > 0.9]


def live_latencies_ms(analyzer: FrameAnalyzer, frames: list[np.ndarray], reference: np.ndarray,
                      settings: ChallengeSettings, fps: float) -> np.ndarray:
    """Per-frame ms of the realtime loop's work (analyse at batch 1, then the engine), frame by frame."""
    challenge = Challenge.for_clip(("surprise",), len(frames) / fps + 60.0)
    engine = ChallengeEngine(challenge, settings, expression_classes=analyzer.model.expression_classes,
                             clock=lambda: 0.0)
    out = []
    for i, image in enumerate(frames):
        t = time.perf_counter()
        engine.observe(analyzer.analyze(image).observation(i / fps, reference, i))
        out.append(time.perf_counter() - t)
    return np.array(out) * 1e3


def startup_seconds(runtime: str, model: str | None, clip: Path) -> tuple[float, bool]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t = time.time()
    out = subprocess.run([sys.executable, "-c", STARTUP, runtime, model or "", str(clip)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]) - t, out[-1] == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file (default: the bundled default model)")
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--frames", type=int, default=60, help="frames for the detector figures")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from mtcnn import MTCNN

    backends = {r: inference_backend(r, args.model) for r in ("onnx", "keras")}
    model = backends["keras"].model
    print(f"model {model.source} ({model.config.preset}, {model.image_size} px); {os.cpu_count()} CPUs; "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(args.clip), Path(tmp) / "clip_640x480.mp4", (640, 480))
        frames = [f.image for f in read_frames(clip, max_frames=args.frames)[1]]

        print(f"\ndetection, 640x480 full resolution, {len(frames)} frames (ms/frame, best of {args.repeats}):")
        ipazc = MTCNN()
        theirs = []
        for f in frames:  # rows of (image index, x1, y1, x2, y2, score, landmarks), as bench/detect.py reads them
            out = ipazc.detect_faces(f, box_format="xyxy", output_type="numpy", threshold_onet=0.7)
            out = np.asarray(out, dtype=np.float64).reshape(-1, 16) if len(out) else np.zeros((0, 16))
            theirs.append(out[out[:, 5] > 0.9, 1:5])
        t_ipazc = per_call_ms(ipazc.detect_faces, frames, args.repeats)
        rows = []
        for name, det in (("ours, ONNX Runtime", backends["onnx"].detector),
                          ("ours, ONNX Runtime + tracking (full every 5)", TrackingDetector(backends["onnx"].detector)),
                          ("ours, Keras", backends["keras"].detector)):
            det.detect(frames[0])
            ms = per_call_ms(det.detect, frames, args.repeats)
            if isinstance(det, TrackingDetector):
                det.reset()
            found = [[d for d in det.detect(f) if d.score > 0.9] for f in frames]
            ious = [float(iou(np.array(b), np.array([d.box for d in mine])).max(initial=0.0)) if mine else 0.0
                    for mine, ref in zip(found, theirs) for b in ref]
            rows.append((name, ms, min(ious) if ious else float("nan"), float(np.mean(ious)) if ious else float("nan")))
        torch_mtcnn = facenet_pytorch_mtcnn()
        if torch_mtcnn is None:
            print("  facenet-pytorch: not installed, skipped. Its only release (2.6.0) pins torch<=2.3 and "
                  "numpy<2: pip resolves it to torch 2.2.2 with ~3 GB of CUDA wheels and a downgrade of this "
                  "environment's numpy 2 (TensorFlow, ONNX Runtime); 'pip install facenet-pytorch' in a venv of "
                  "its own to compare.")
        else:
            torch_mtcnn.detect(frames[0])
            t_torch = per_call_ms(torch_mtcnn.detect, frames, args.repeats)
            ious = [float(iou(np.array(b), facenet_pytorch_boxes(torch_mtcnn, f)).max(initial=0.0))
                    for f, ref in zip(frames, theirs) for b in ref]
            rows.insert(0, ("facenet-pytorch MTCNN", t_torch, min(ious, default=float("nan")),
                            float(np.mean(ious)) if ious else float("nan")))
        print(f"  {'ipazc/mtcnn':<46} {t_ipazc:7.1f}")
        for name, ms, worst, mean in rows:
            print(f"  {name:<46} {ms:7.1f}  ({t_ipazc / ms:4.1f}x ipazc; IoU with ipazc min {worst:.3f} mean {mean:.3f})")

        crop = FrameAnalyzer(model, backends["keras"].detector)
        face = crop.path.faces(frames[0], "main")[0].crop
        one, sixteen = face[None], np.repeat(face[None], 16, axis=0)
        print(f"\nnetwork ({model.image_size} px faces; ms/face, best of {args.repeats}):")
        for r, b in backends.items():
            b.embed_and_classify(sixteen)
            at1 = per_call_ms(b.embed_and_classify, [one] * 10, args.repeats)
            at16 = per_call_ms(b.embed_and_classify, [sixteen] * 4, args.repeats) / 16
            print(f"  {r:<6} batch 1 {at1:6.2f}   batch 16 {at16:6.2f}")

        print("\nend to end, verify-video pipeline on every frame of the 640x480 clip (detection at 320 px, "
              f"every {FULL_CHECK_EVERY}th frame at full resolution):")
        settings = ChallengeSettings.for_model(model.config)
        reference = backends["keras"].embed_and_classify(one).embeddings
        for name, r, track in (("onnx", "onnx", 0), ("onnx + tracking 5", "onnx", 5), ("keras", "keras", 0)):
            b = backends[r]
            det = TrackingDetector(b.detector, track) if track else b.detector
            best = None
            for _ in range(args.repeats):
                if track:
                    det.reset()
                res = verify_clip(clip, FrameAnalyzer(b.model, det), reference,
                                  Challenge.for_clip(("surprise",), 15.0), settings)
                if best is None or res.seconds["total"] < best.seconds["total"]:
                    best = res
            n, s = best.frames_analyzed, best.seconds
            print(f"  {name:<18} {n} frames {n / s['total']:6.1f} frames/s | detect {s['detect'] / n * 1e3:5.1f} "
                  f"network {s['network'] / n * 1e3:5.1f} ms/frame | decision {best.decision.decision}")
            # The engine stops at its decision; the analyser on every frame of the clip, decode
            # included, in the offline batches of verify-video, is the throughput of a whole clip.
            det = TrackingDetector(b.detector, track) if track else b.detector
            t = time.perf_counter()
            frames_all = list(VideoSource(clip))
            analyzer = FrameAnalyzer(b.model, det)
            for start in range(0, len(frames_all), FRAME_BATCH):
                analyzer.analyze_batch([f.image for f in frames_all[start : start + FRAME_BATCH]])
            print(f"  {'':<18} all {len(frames_all)} frames of the clip: "
                  f"{len(frames_all) / (time.perf_counter() - t):6.1f} frames/s (decode + analyser)")

        fps = read_frames(clip, max_frames=1)[0].fps
        every = [f.image for f in read_frames(clip)[1]]
        print(f"\nrealtime latency, {len(every)} frames of the 640x480 clip one at a time (batch 1; ms/frame):")
        for r, b in backends.items():
            live_latencies_ms(FrameAnalyzer(b.model, b.detector), every[:5], reference, settings, fps)  # warm-up
            lat = live_latencies_ms(FrameAnalyzer(b.model, b.detector), every, reference, settings, fps)
            p50, p95 = np.percentile(lat, [50, 95])
            print(f"  {r:<6} p50 {p50:6.1f}  p95 {p95:6.1f}  max {lat.max():6.1f}  "
                  f"(every {FULL_CHECK_EVERY}th frame searched at full resolution)")

        print("\nstart-up, fresh interpreter to the first analysed frame (s):")
        for r in ("onnx", "keras"):
            secs, tf = startup_seconds(r, args.model, clip)
            print(f"  {r:<6} {secs:5.1f}   (TensorFlow imported: {tf})")
    print(f"\nload average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
