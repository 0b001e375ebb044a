"""Size, speed and parity of every export format next to the Keras model.

For each format: file size, ms/face at batch 1 (the phone case) on this CPU, and the
parity figures against our model on real face crops. Without --model a freshly
initialised model of --preset is used (parity of an untrained expression head is a
weak test of argmax agreement; use a trained model for the figures that matter).

    .venv/bin/python bench/export.py [--model M.keras | --preset simple] [--faces DIR]
        [--calibration DIR] [--formats savedmodel,tflite,tflite-int8,onnx]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from facelivenet.api import load_model, new_model  # noqa: E402
from facelivenet.config import NetworkConfig  # noqa: E402
from facelivenet.export import (  # noqa: E402
    DETECTOR_STAGES, FORMATS, artefact_size, check_parity, export, export_detector, load_face_dir, load_runner,
    stage_inputs,
)

ROOT = Path(__file__).resolve().parent.parent


def ms_per_face(run, faces: np.ndarray, repeats: int = 3) -> float:
    """Best-of-``repeats`` mean ms per face, one face per call."""
    run(faces[:1])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(len(faces)):
            run(faces[i : i + 1])
        best = min(best, (time.perf_counter() - t) / len(faces))
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--preset", default="simple")
    ap.add_argument("--faces", default=str(ROOT / "data" / "parity-faces"))
    ap.add_argument("--calibration", default=None, help="default: the --faces crops")
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args()

    model = load_model(args.model) if args.model else new_model(NetworkConfig.from_preset(args.preset), seed=0)
    faces = load_face_dir(args.faces, model.image_size, 64)
    calib = load_face_dir(args.calibration, model.image_size, 200) if args.calibration else faces

    def ours(x):
        r = model.analyze(x)
        return r.embeddings, r.expressions

    with tempfile.TemporaryDirectory() as tmp:
        keras_file = Path(tmp) / "model.keras"
        model.save(keras_file)
        print(f"model: {args.model or 'fresh ' + args.preset} ({model.config.preset}, {model.image_size} px), "
              f"{len(faces)} parity faces from {args.faces}")
        print(f"{'format':<12} {'size MB':>8} {'ms/face':>8} {'max|Δemb|':>10} {'min cos':>9} {'argmax':>7}")
        print(f"{'keras':<12} {keras_file.stat().st_size / 1e6:8.1f} {ms_per_face(ours, faces):8.1f}")
        for fmt in args.formats.split(","):
            out = Path(tmp) / f"model.{fmt}"
            export(model.network, fmt, out, calibration=calib if fmt == "tflite-int8" else None)
            run = load_runner(fmt, out)
            p = check_parity(fmt, ours, run, faces)
            print(f"{fmt:<12} {artefact_size(out) / 1e6:8.1f} {ms_per_face(run, faces):8.1f} "
                  f"{p.max_abs_embedding_diff:10.2e} {p.min_cosine:9.5f} {p.argmax_agreement:7.1%}"
                  f"{'' if p.ok else '  (below bounds)'}")

        print("\ndetector stages (ms per input: P-Net on a 160x160 crop, R-Net 24x24, O-Net 48x48)")
        print(f"{'format':<12} {'stage':<5} {'size MB':>8} {'ms/input':>9} {'max|Δ|':>9} {'agree':>7}")
        crops = load_face_dir(args.faces, 160, 64)
        for fmt in args.formats.split(","):
            results = export_detector(fmt, Path(tmp) / f"det_{fmt}", faces=crops, calibrate=fmt == "tflite-int8")
            for stage, (path, p) in results.items():
                run = load_runner(fmt, path, DETECTOR_STAGES[stage][1])
                print(f"{fmt:<12} {stage:<5} {artefact_size(path) / 1e6:8.2f} "
                      f"{ms_per_face(run, stage_inputs(stage, crops)):9.2f} {max(p.max_abs_diff.values()):9.1e} "
                      f"{p.decision_agreement:7.1%}{'' if p.ok else '  (below bounds)'}")


if __name__ == "__main__":
    main()
