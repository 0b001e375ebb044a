"""Start-up: wall time from the command's start to the first analysed frame of ``verify-video``.

Runs ``facelivenet verify-video`` on a 640x480 clip (d18.mp4 of ../shared/data, 480x480,
centred on a grey 640x480 canvas, written to a temporary folder) in a fresh interpreter
per run, on the default runtime and on ``--runtime keras``, alternating, and prints per
runtime the median over the runs of:

    first frame   process start -> the frame analyser's first frame analysed (detector + network)
    total         process start -> the command's exit (whole clip, every 3rd frame)
    tensorflow    whether TensorFlow (or Keras) was imported

plus the cost of the one start-up check the default runtime adds: the SHA-256 of the
model file that says the shipped ONNX files belong to it.

    .venv/bin/python bench/startup.py [--runs 3] [--clip PATH] [--runtimes auto,keras]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Runs the CLI in the child and reports, on stderr, when the first frame was analysed.
CHILD = r"""
import json, os, runpy, sys, time
t0 = float(os.environ["STARTUP_T0"])
from facelivenet.auth import analyzer
first = {}
original = analyzer.FrameAnalyzer.analyze_batch
def analyze_batch(self, images):
    out = original(self, images)
    first.setdefault("t", time.time() - t0)
    return out
analyzer.FrameAnalyzer.analyze_batch = analyze_batch
sys.argv = ["facelivenet"] + json.loads(os.environ["STARTUP_ARGS"])
rc = 0
try:
    runpy.run_module("facelivenet", run_name="__main__")
except SystemExit as e:
    rc = e.code
tf = any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
sys.stderr.write("\nSTARTUP " + json.dumps({"first": first.get("t"), "total": time.time() - t0, "rc": rc,
                                            "tensorflow": tf}) + "\n")
"""


def make_clip(src: Path, out: Path, frames: int = 120) -> tuple[Path, Path]:
    """``src`` centred on a 640x480 grey canvas (its first ``frames`` frames) and its first frame as the reference."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer, ref = None, out.with_suffix(".png")
    for i in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        canvas = np.full((480, 640, 3), 128, np.uint8)
        y, x = (480 - min(h, 480)) // 2, (640 - min(w, 640)) // 2
        canvas[y:y + min(h, 480), x:x + min(w, 640)] = frame[:480, :640]
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
            cv2.imwrite(str(ref), canvas)
        writer.write(canvas)
    writer.release()
    return out, ref


def run_once(clip: Path, ref: Path, runtime: str) -> dict:
    args = ["verify-video", str(clip), "--ref", str(ref), "--challenge", "surprise", "--stride", "3",
            "--json", "--quiet"]
    if runtime != "default":
        args += ["--runtime", runtime]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STARTUP_ARGS": json.dumps(args), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["STARTUP_T0"] = repr(time.time())
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    tail = res.stderr.rsplit("STARTUP ", 1)
    if len(tail) != 2:
        raise SystemExit(f"verify-video failed on {runtime}: {res.stderr[-1000:]}")
    out = json.loads(tail[1])
    out["decision"] = json.loads(res.stdout)["decision"] if res.stdout.strip() else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clip", type=Path, default=ROOT.parent / "shared" / "data" / "videos" / "d18.mp4")
    ap.add_argument("--runtimes", default="default,keras", help="comma-separated: default, auto, onnx, keras")
    args = ap.parse_args()
    if not args.clip.is_file():
        raise SystemExit(f"{args.clip}: no such clip (../shared/data)")
    from facelivenet.paths import default_model_path
    from facelivenet.runtime import cache
    from facelivenet.runtime.inference import DEFAULT_RUNTIME

    model = default_model_path()
    t = time.perf_counter()
    cache.file_digest([model])
    digest_ms = (time.perf_counter() - t) * 1000
    runtimes = args.runtimes.split(",")
    results: dict[str, list[dict]] = {r: [] for r in runtimes}
    with tempfile.TemporaryDirectory() as tmp:
        clip, ref = make_clip(args.clip, Path(tmp) / "clip640x480.mp4")
        for i in range(args.runs):
            for r in runtimes:
                results[r].append(run_once(clip, ref, r))
                print(f"  run {i + 1} {r}: first frame {results[r][-1]['first']:.2f} s, "
                      f"total {results[r][-1]['total']:.2f} s", file=sys.stderr)
    print(f"verify-video, 640x480 clip from {args.clip.name}, every 3rd frame, {args.runs} runs, "
          f"{os.cpu_count()} CPUs (default runtime: {DEFAULT_RUNTIME}); SHA-256 of {model.name} "
          f"({model.stat().st_size / 1e6:.1f} MB): {digest_ms:.0f} ms")
    print("| runtime | first frame (s, median) | total (s, median) | TensorFlow imported | decision |")
    print("|---|---|---|---|---|")
    for r, rows in results.items():
        first = statistics.median(x["first"] for x in rows)
        total = statistics.median(x["total"] for x in rows)
        tf = sorted({x["tensorflow"] for x in rows})
        print(f"| {r} | {first:.2f} | {total:.2f} | {'/'.join(map(str, tf))} | {rows[0]['decision']} |")


if __name__ == "__main__":
    main()
