"""int8 against float on ONNX Runtime: LFW 10-fold, FER2013 validation (FER+ majority), ms/face.

Both networks (``precision="fp32"`` and ``"int8"`` of one model, see
``facelivenet.runtime.quantize``) score the SAME aligned crops: the faces are found and
cut once (our MTCNN on ONNX Runtime, in the model's geometry) and kept as .npy files in
--work, so a second run skips the costly part.

- LFW: ``pairs.txt`` 10-fold accuracy as ``evaluate-verification --detect`` computes it
  (the same face path: main face, else a centre crop; squared L2; threshold per fold).
- FER2013 validation (PublicTest) under its FER+ majority labels, as ``manifest-faces
  --by expression --source fer`` cuts it for the model card: the tight 48 px crop is
  padded and upscaled for the detector, the face warped onto the model's template from
  its landmarks (the mean landmarks where none is found). 7-class accuracy and the
  neutral/happy/surprise sub-problem.
- ms/face of each network at batch 1 and batch 32, interleaved, best of the rounds.

    python bench/int8.py [--model M.keras] [--work /tmp/facelivenet-int8] [--lfw-pairs N]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACELIVENET_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHUNK = 64


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def chunked(n: int, label: str):
    for start in range(0, n, CHUNK):
        if start % (CHUNK * 16) == 0:
            log(f"{label}: {start}/{n}")
        yield start


def lfw_crops(model, detector, pairs_path: Path, images: Path, work: Path, max_pairs: int | None):
    """(crops (N, S, S, 3) uint8, PairImages) of the pairs' images, cut once and cached."""
    from facelivenet.data.pairs import read_pairs
    from facelivenet.eval.crops import DetectedFace
    from facelivenet.eval.verification import limit_pairs, locate_pair_images
    from facelivenet.images import read_image

    found = locate_pair_images(limit_pairs(read_pairs(pairs_path), max_pairs), images)
    cache = work / f"lfw_{len(found.paths)}_{model.image_size}.npz"
    if cache.is_file():
        z = np.load(cache)
        if list(z["paths"]) == list(found.paths):
            return z["crops"], found, int(z["no_face"])
    cut = DetectedFace(model.config, detector)
    crops, no_face = [], 0
    for start in chunked(len(found.paths), "LFW alignment"):
        faces, ok = cut([read_image(p) for p in found.paths[start : start + CHUNK]])
        crops.extend(faces)
        no_face += ok.count(False)
    crops = np.stack(crops)
    np.savez(cache, crops=crops, paths=np.array(found.paths), no_face=no_face)
    return crops, found, no_face


def fer_crops(model, detector, fer: Path, work: Path):
    """(crops, labels (N,) index into the model's classes) of FER2013 validation, FER+ majority."""
    from facelivenet.config import FER2013_CLASSES
    from facelivenet.data.joint import FERPLUS_COLUMNS, find_landmarks_batch, warp_face
    from facelivenet.images import read_image

    cache = work / f"fer_{model.image_size}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["crops"], z["labels"], int(z["fallback"])
    classes = list(model.config.expression_classes)
    paths, labels = [], []
    with open(fer / "ferplus.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != "validation":
                continue
            votes = {FERPLUS_COLUMNS[c]: float(row[c]) for c in FERPLUS_COLUMNS}
            if sum(votes.values()) <= 0:
                continue
            # write_faces' rule: argmax of the distribution in FER2013_CLASSES order
            majority = FER2013_CLASSES[int(np.argmax([votes.get(c, 0.0) for c in FER2013_CLASSES]))]
            paths.append(fer / row["file"])
            labels.append(classes.index(majority))
    images = [read_image(p) for p in paths]
    marks = []
    for start in chunked(len(images), "FER landmarks"):
        marks.extend(find_landmarks_batch(detector, images[start : start + CHUNK], "fer"))
    rel = [m / np.array(im.shape[1::-1], np.float64) for m, im in zip(marks, images) if m is not None]
    mean = np.mean(rel, axis=0)
    fallback = sum(m is None for m in marks)
    crops = np.stack([warp_face(im, m if m is not None else mean * np.array(im.shape[1::-1]), model.image_size)
                      for im, m in zip(images, marks)])
    labels = np.array(labels, np.int64)
    np.savez(cache, crops=crops, labels=labels, fallback=fallback)
    return crops, labels, fallback


def analyze(model, crops: np.ndarray):
    out = [model.analyze(crops[i : i + CHUNK]) for i in range(0, len(crops), CHUNK)]
    return np.concatenate([o.embeddings for o in out]), np.concatenate([o.expressions for o in out])


def ms_per_face(models: dict, faces: np.ndarray, batch: int, rounds: int = 5, faces_per_round: int = 64) -> dict:
    """Best-of-``rounds`` ms/face of each model at ``batch``; the models take turns each round."""
    x = np.ascontiguousarray(faces[:batch])
    calls = max(1, faces_per_round // batch)
    best = {k: float("inf") for k in models}
    for m in models.values():
        m.analyze(x)
    for _ in range(rounds):
        for k, m in models.items():
            t = time.perf_counter()
            for _ in range(calls):
                m.analyze(x)
            best[k] = min(best[k], (time.perf_counter() - t) / (calls * batch) * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model file (default: the bundled default model)")
    ap.add_argument("--work", default="/tmp/facelivenet-int8", help="where the aligned crops are kept")
    ap.add_argument("--lfw", default=str(DATA / "lfw"), help="folder with pairs.txt and lfw_deepfunneled/")
    ap.add_argument("--fer", default=str(DATA / "fer2013"), help="folder with validation/ and ferplus.csv")
    ap.add_argument("--lfw-pairs", type=int, default=None, help="at most this many pairs (default: all 6000)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: lfw, fer, speed")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from facelivenet.eval.metrics import kfold_accuracy, squared_l2_distances
    from facelivenet.runtime import OnnxFaceDetector, load_onnx_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    models = {p: load_onnx_model(args.model, precision=p) for p in ("fp32", "int8")}
    log(f"networks ready in {time.perf_counter() - t:.1f} s: {models['int8'].path}")
    detector = OnnxFaceDetector()
    fp32 = models["fp32"]
    print(f"model: {fp32.source} ({fp32.config.preset}, {fp32.image_size} px); int8 parity on the parity faces: "
          f"min cosine {load_meta_parity(models['int8'])}")

    if "lfw" not in skip:
        lfw = Path(args.lfw)
        crops, found, no_face = lfw_crops(fp32, detector, lfw / "pairs.txt", lfw / "lfw_deepfunneled", work,
                                          args.lfw_pairs)
        print(f"\nLFW: {len(found.issame)} pairs, {len(crops)} images ({no_face} without a face: centre crop), "
              f"{len(set(found.folds.tolist()))}-fold")
        emb = {}
        for p, m in models.items():
            emb[p], _ = analyze(m, crops)
            d = squared_l2_distances(emb[p][found.first], emb[p][found.second])
            acc = kfold_accuracy(d, found.issame, folds=found.folds)
            print(f"  {p:5s} accuracy {acc.accuracy * 100:.2f} ± {acc.std * 100:.2f} %")
        cos = np.sum(emb["fp32"] * emb["int8"], axis=1)
        print(f"  int8 vs fp32 embeddings on these faces: cosine min {cos.min():.4f}, mean {cos.mean():.5f}")

    if "fer" not in skip:
        crops, labels, fallback = fer_crops(fp32, detector, Path(args.fer), work)
        classes = list(fp32.config.expression_classes)
        nhs = [classes.index(c) for c in ("neutral", "happy", "surprise")]
        keep = np.isin(labels, nhs)
        print(f"\nFER2013 validation, FER+ majority: {len(labels)} faces ({fallback} at the mean landmarks)")
        preds = {}
        for p, m in models.items():
            _, probs = analyze(m, crops)
            preds[p] = probs.argmax(1)
            sub = np.array(nhs)[probs[keep][:, nhs].argmax(1)]
            print(f"  {p:5s} 7 classes {np.mean(preds[p] == labels) * 100:.2f} %, "
                  f"neutral/happy/surprise ({keep.sum()} faces) {np.mean(sub == labels[keep]) * 100:.2f} %")
        print(f"  int8 and fp32 predict the same class on {np.mean(preds['fp32'] == preds['int8']) * 100:.2f} %")

    if "speed" not in skip:
        from facelivenet.export.parity import load_face_dir
        from facelivenet.paths import parity_faces_dir

        faces = load_face_dir(parity_faces_dir(), fp32.image_size)
        faces = np.concatenate([faces] * (32 // len(faces) + 1))
        print("\nms/face (ONNX Runtime, best of 5 interleaved rounds)")
        for batch in (1, 32):
            r = ms_per_face(models, faces, batch)
            print(f"  batch {batch:2d}: fp32 {r['fp32']:.2f}, int8 {r['int8']:.2f} ({r['fp32'] / r['int8']:.2f}x)")


def load_meta_parity(model) -> str:
    import json

    meta = json.loads((model.path.parent / "meta.json").read_text())
    p = meta["parity"]
    return f"{p['min_cosine']:.4f}, argmax agreement {p['argmax_agreement']:.3f} ({p['faces']} faces)"


if __name__ == "__main__":
    main()
