"""The identity teacher (dlib's ResNet descriptor) on LFW, with our protocol and our faces.

Each LFW image of pairs.txt goes through our MTCNN (main face, full resolution); the
five landmarks place dlib's 150 px chip (facelivenet.train.teacher.teacher_chip), and
the descriptor's squared L2 distances are scored with the same 10-fold protocol as
`facelivenet evaluate-verification` (best threshold on 9 folds, accuracy on the 10th).
Images where no face is found take the mean landmarks of the others (LFW's deep-funneled
images are centred), and are counted. Needs the [teacher] extra.

    .venv/bin/python bench/teacher_lfw.py [--lfw ../shared/data/lfw] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from facelivenet.data.pairs import read_pairs, resolve_pair_images  # noqa: E402
from facelivenet.detect import FaceDetector, pick_main_face  # noqa: E402
from facelivenet.eval.metrics import kfold_accuracy, squared_l2_distances  # noqa: E402
from facelivenet.images import read_image  # noqa: E402
from facelivenet.train.teacher import DlibTeacher, teacher_chip  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pairs = read_pairs(args.lfw / "pairs.txt")
    paths, first, second = resolve_pair_images(pairs, args.lfw / "lfw_deepfunneled")
    detector, teacher = FaceDetector().load(), DlibTeacher()
    t0 = time.perf_counter()
    images, marks = [], []
    for i, p in enumerate(paths):
        image = read_image(p)
        face = pick_main_face(detector.detect(image), image.shape)
        images.append(image)
        marks.append(None if face is None else face.landmarks / np.array(image.shape[1::-1], np.float32))
        if i % 500 == 0:
            print(f"detect {i}/{len(paths)}", file=sys.stderr, flush=True)
    found = [m for m in marks if m is not None]
    mean = np.mean(found, axis=0)
    no_face = sum(m is None for m in marks)
    t1 = time.perf_counter()
    emb = []
    for s in range(0, len(images), 64):
        chips = [teacher_chip(im, (m if m is not None else mean) * np.array(im.shape[1::-1], np.float32))
                 for im, m in zip(images[s:s + 64], marks[s:s + 64])]
        emb.append(teacher.embed(chips))
        print(f"teacher {s}/{len(images)}", file=sys.stderr, flush=True)
    emb = np.concatenate(emb)
    t2 = time.perf_counter()
    d = squared_l2_distances(emb[first], emb[second])
    res = kfold_accuracy(d, pairs.issame, n_folds=pairs.folds)
    out = {"teacher": "dlib_face_recognition_resnet_model_v1", "pairs": len(first), "images": len(paths),
           "no_face": int(no_face), "accuracy": round(float(res.accuracy), 4),
           "accuracy_std": round(float(res.std), 4),
           "detect_s": round(t1 - t0, 1), "teacher_ms_per_face": round(1000 * (t2 - t1) / len(paths), 1)}
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
