"""Joint training data: every face of every source, with the labels it has and its landmarks.

A joint manifest (``manifest.jsonl``) holds one record per image::

    {"path": ..., "source": "fer", "split": "train"|"val",
     "identity": "celeba/2880" | null,            # identity key, null when unknown
     "expression": [7 floats] | null,             # target distribution in model class order
     "smiling": 0 | 1 | null,                     # CelebA attribute (partial label on p(happy))
     "landmarks": [[x, y] x 5], "fallback": bool} # in source-image pixels

so one run can mix identity samples and expression samples and mask each loss to the
samples that have its label (DESIGN.md §3b). Every face goes through the same geometry:
the five landmarks are mapped by a similarity transform onto the model's template
(:func:`facelivenet.detect.align.similarity_align`), in training as at run time.

Landmarks come from our MTCNN. Tightly pre-cropped sources (FER2013 and CK+ at 48 px,
CelebA's aligned crops) are detected on a padded, upscaled copy (:func:`find_landmarks`);
when that finds no face, the record takes the source's mean landmarks in relative
coordinates (``fallback: true``): those sources are cropped the same way image after
image, so the mean is a fair dataset-level transform. The share that fell back is in
``summary.json``.

Sources (``--source KIND=PATH``; layouts in ``data/README.md``):

* ``identities``: ``DIR/<identity>/*`` photos (CelebA identities, AT&T, any face set);
* ``celeba-aligned``: ``DIR/images``, ``identity.csv``, ``attributes.csv``;
* ``fer``: ``DIR/{train,validation}/<class>/*.jpg`` with ``DIR/ferplus.csv`` (FER+ votes);
* ``taiwanese``: ``DIR/images``, ``labels.csv`` (performer, expression);
* ``ckplus``: ``DIR/<expression>/S<subject>_*.png`` with ``labels.csv`` (every 4th subject in
  sorted order is held out, as in ``bin/train-default``'s holistic protocol).

Held-out identities (``split: "val"``) are chosen by a hash of the identity key, so the
same CelebA number is held out in both CelebA folders and no identity leaks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from facelivenet.config import FER2013_CLASSES
from facelivenet.errors import DatasetError
from facelivenet.faces import IMAGE_EXTENSIONS

SOURCE_KINDS = ("identities", "celeba-aligned", "fer", "taiwanese", "ckplus")

#: Sources that are already tight face crops: detect on a padded, upscaled copy.
TIGHT_SOURCES = {"fer": (0.25, 3.0), "ckplus": (0.25, 3.0), "celeba-aligned": (0.1, 1.5)}

#: FER+ vote columns → our class names; contempt, unknown and NF are dropped.
FERPLUS_COLUMNS = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear",
}
#: Expression names of the sources → our class names (None: not one of ours).
EXPRESSION_NAMES = {
    "neutral": "neutral", "happy": "happy", "happiness": "happy", "surprise": "surprise",
    "sad": "sad", "sadness": "sad", "angry": "angry", "anger": "angry", "disgust": "disgust",
    "fear": "fear", "contempt": None,
}
#: Images per detector call while landmarking (images of one shape share P/R/O-Net calls).
DETECT_CHUNK = 64


@dataclass
class Record:
    """One image of the manifest (see the module doc for the fields)."""

    path: str
    source: str
    split: str = "train"
    identity: str | None = None
    expression: list[float] | None = None
    smiling: int | None = None
    landmarks: list[list[float]] | None = None
    fallback: bool = False

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        return cls(**d)


@dataclass(frozen=True)
class Source:
    """A ``KIND=PATH`` source of the joint manifest."""

    kind: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> "Source":
        kind, sep, path = text.partition("=")
        if not sep or kind not in SOURCE_KINDS:
            raise DatasetError(f"a source is KIND=PATH with KIND one of {list(SOURCE_KINDS)}; got {text!r}")
        p = Path(path)
        if not p.is_dir():
            raise DatasetError(f"{p}: source folder not found")
        return cls(kind, p)


def held_out(identity: str, val_fraction: float, seed: int = 0) -> bool:
    """Whether ``identity`` is a validation identity (a stable hash, the same in every folder)."""
    h = hashlib.sha256(f"{seed}:{identity}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64 < val_fraction


def one_hot(name: str, classes: Sequence[str] = FER2013_CLASSES) -> list[float] | None:
    ours = EXPRESSION_NAMES.get(name.lower())
    if ours is None or ours not in classes:
        return None
    return [1.0 if c == ours else 0.0 for c in classes]


def ferplus_targets(csv_path: Path, classes: Sequence[str] = FER2013_CLASSES) -> dict[str, list[float]]:
    """``{"train/angry/x.jpg": distribution}`` from the FER+ votes (rows with no usable vote dropped)."""
    out: dict[str, list[float]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            votes = {FERPLUS_COLUMNS[c]: float(row[c]) for c in FERPLUS_COLUMNS}
            total = sum(votes.values())
            if total <= 0:
                continue
            out[row["file"]] = [votes.get(c, 0.0) / total for c in classes]
    return out


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _csv_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def source_records(src: Source, *, val_fraction: float, seed: int = 0) -> list[Record]:
    """The records of one source, labels filled in, landmarks not yet."""
    kind, root = src.kind, src.path
    recs: list[Record] = []

    def split_of(identity: str | None) -> str:
        return "val" if identity is not None and held_out(identity, val_fraction, seed) else "train"

    if kind == "identities":
        tag = root.name
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            ident = f"celeba/{d.name}" if tag.startswith("celeba") else f"{tag}/{d.name}"
            for p in _images(d):
                recs.append(Record(str(p), kind, split_of(ident), identity=ident))
    elif kind == "celeba-aligned":
        ids = {r["file"]: r["identity"] for r in _csv_rows(root / "identity.csv")}
        attrs = {r["file"]: r for r in _csv_rows(root / "attributes.csv")}
        for name, number in sorted(ids.items()):
            ident = f"celeba/{number}"
            a = attrs.get(name)
            smiling = None if a is None else int(int(a["Smiling"]) > 0)
            recs.append(Record(str(root / name), kind, split_of(ident), identity=ident, smiling=smiling))
    elif kind == "fer":
        votes = ferplus_targets(root / "ferplus.csv")
        for split, ours in (("train", "train"), ("validation", "val")):
            for d in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                for p in _images(d):
                    target = votes.get(f"{split}/{d.name}/{p.name}")
                    if target is not None:
                        recs.append(Record(str(p), kind, ours, expression=target))
    elif kind == "taiwanese":
        for r in _csv_rows(root / "labels.csv"):
            ident = f"taiwanese/{r['performer']}"
            recs.append(Record(str(root / r["file"]), kind, split_of(ident), identity=ident,
                               expression=one_hot(r["expression"])))
    elif kind == "ckplus":
        rows = _csv_rows(root / "labels.csv")
        # bin/train-default's rule: every 4th subject in sorted order is held out (the
        # holistic protocol's subjects), so no held-out CK+ face is ever trained on.
        subjects = sorted({r["subject"] for r in rows})
        held_set = {s for i, s in enumerate(subjects) if i % 4 == 3}
        for r in rows:
            subject = r["subject"]
            held = subject in held_set
            recs.append(Record(str(root / r["path"]), kind, "val" if held else "train",
                               identity=f"ckplus/{subject}", expression=one_hot(r["expression"])))
    else:  # pragma: no cover - Source.parse checks the kind
        raise DatasetError(f"unknown source kind {kind!r}")
    if not recs:
        raise DatasetError(f"{root}: no images found for a {kind!r} source")
    return recs


# --- landmarks ---------------------------------------------------------------------------


def _detector_view(image: np.ndarray, kind: str) -> tuple[np.ndarray, int, float]:
    """The copy of ``image`` the detector sees: padded and upscaled for a tight crop."""
    import cv2

    pad_share, scale = TIGHT_SOURCES.get(kind, (0.0, 1.0))
    pad = int(round(pad_share * max(image.shape[:2])))
    big = image
    if pad:
        big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    if scale != 1.0:
        big = cv2.resize(big, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return big, pad, scale


def find_landmarks_batch(detector, images: Sequence[np.ndarray], kind: str) -> list[np.ndarray | None]:
    """The main face's (5, 2) landmarks in each image's pixels, or None where none is found.

    A tight crop (:data:`TIGHT_SOURCES`) is padded by replicating its border (a share of
    its longest side) and upscaled before detection, so MTCNN sees a whole face with
    context at a size it finds reliably; the landmarks are mapped back. Images of one
    shape share the detector's calls.
    """
    from facelivenet.detect.align import pick_main_face

    views = [_detector_view(im, kind) for im in images]
    found = detector.detect_batch([v[0] for v in views])
    out: list[np.ndarray | None] = []
    for (big, pad, scale), faces in zip(views, found):
        face = pick_main_face(faces, big.shape)
        out.append(None if face is None else
                   ((face.landmarks.astype(np.float64) + 0.5) / scale - 0.5 - pad).astype(np.float32))
    return out


def find_landmarks(detector, image: np.ndarray, kind: str) -> np.ndarray | None:
    """:func:`find_landmarks_batch` for one image."""
    return find_landmarks_batch(detector, [image], kind)[0]


def mean_relative_landmarks(records: Iterable[Record], sizes: dict[str, tuple[int, int]]) -> np.ndarray | None:
    """Mean landmarks of the detected records, as shares of their image (W, H)."""
    rel = [np.asarray(r.landmarks) / np.array(sizes[r.path][::-1], np.float64)
           for r in records if r.landmarks is not None and not r.fallback and r.path in sizes]
    return np.mean(rel, axis=0) if rel else None


# --- manifest ----------------------------------------------------------------------------


@dataclass
class ManifestSummary:
    """Counts of a manifest by source: images, detected, fell back, dropped (no face, no fallback)."""

    by_source: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, source: str, key: str, n: int = 1) -> None:
        self.by_source.setdefault(source, {"images": 0, "detected": 0, "fallback": 0, "dropped": 0})
        self.by_source[source][key] += n

    def to_dict(self) -> dict:
        out = {}
        for s, c in self.by_source.items():
            out[s] = {**c, "fallback_share": round(c["fallback"] / max(c["images"], 1), 4)}
        return out


def read_manifest(path: str | os.PathLike) -> list[Record]:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: joint manifest not found (make it with `facelivenet prepare-joint`)")
    out = []
    with open(p) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(Record.from_dict(json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise DatasetError(f"{p}:{i}: not a manifest record ({exc})") from None
    if not out:
        raise DatasetError(f"{p}: empty joint manifest")
    return out


def build_manifest(
    sources: Sequence[Source],
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    detector=None,
    landmarks_cache: str | os.PathLike | None = None,
    progress: Callable[[Iterable, int, str], Iterator] | None = None,
) -> ManifestSummary:
    """Label, landmark and write ``out_dir/manifest.jsonl`` (+ ``summary.json``).

    Resumable: landmarks already found (``landmarks_cache``, default
    ``out_dir/landmarks.jsonl``, appended line by line as the run goes) are reused, so an
    interrupted run picks up where it stopped, and runs on different sources may share
    one cache.
    """
    from facelivenet.detect.detector import FaceDetector
    from facelivenet.images import read_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = detector or FaceDetector(min_face_size=20)
    cache_path = Path(landmarks_cache) if landmarks_cache else out / "landmarks.jsonl"
    cache: dict[str, dict] = {}
    if cache_path.exists():
        with open(cache_path) as f:
            for line in f:
                try:
                    d = json.loads(line)
                    cache[d["path"]] = d
                except (ValueError, KeyError):
                    continue  # a line cut by an interruption
    summary = ManifestSummary()
    records: list[Record] = []
    with open(cache_path, "a") as log:
        for src in sources:
            recs = source_records(src, val_fraction=val_fraction, seed=seed)
            sizes: dict[str, tuple[int, int]] = {}
            todo = [r for r in recs if r.path not in cache]
            chunks = [todo[i : i + DETECT_CHUNK] for i in range(0, len(todo), DETECT_CHUNK)]
            for chunk in (progress(chunks, len(chunks), f"landmarks {src.kind}") if progress else chunks):
                images, readable = [], []
                for r in chunk:
                    try:
                        images.append(read_image(r.path))
                        readable.append(r)
                    except Exception:  # an unreadable file is dropped, never stops the run
                        cache[r.path] = {"path": r.path, "size": None, "landmarks": None}
                        log.write(json.dumps(cache[r.path]) + "\n")
                for r, image, lm in zip(readable, images, find_landmarks_batch(detector, images, src.kind)):
                    cache[r.path] = {"path": r.path, "size": list(image.shape[:2]),
                                     "landmarks": None if lm is None else np.round(lm, 2).tolist()}
                    log.write(json.dumps(cache[r.path]) + "\n")
                log.flush()
            for r in recs:
                hit = cache[r.path]
                if hit["size"] is None:
                    continue
                sizes[r.path] = tuple(hit["size"])
                r.landmarks = hit["landmarks"]
            mean = mean_relative_landmarks(recs, sizes) if src.kind in TIGHT_SOURCES else None
            for r in recs:
                summary.add(src.kind, "images")
                if r.path not in sizes:
                    summary.add(src.kind, "dropped")
                    continue
                if r.landmarks is None:
                    if mean is None:
                        summary.add(src.kind, "dropped")
                        continue
                    h, w = sizes[r.path]
                    r.landmarks = np.round(mean * [w, h], 2).tolist()
                    r.fallback = True
                    summary.add(src.kind, "fallback")
                else:
                    summary.add(src.kind, "detected")
                records.append(r)
    from facelivenet.utils import atomic_write_text

    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in records))
    atomic_write_text(out / "summary.json", json.dumps(
        {"sources": [f"{s.kind}={s.path}" for s in sources], "val_fraction": val_fraction, "seed": seed,
         "records": len(records), "by_source": summary.to_dict()}, indent=2) + "\n")
    return summary


# --- the face every source and the runtime share -------------------------------------------

#: Training jitter of the similarity transform: rotation (degrees), scale, shift (share of the side).
JITTER = (8.0, 0.06, 0.03)


def warp_face(image: np.ndarray, landmarks, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The face as the model sees it: the five landmarks onto the template at ``size`` px.

    Without ``rng`` this is exactly :func:`facelivenet.detect.align.similarity_align`, the
    run-time path of a ``similarity`` model. With ``rng``, a small random rotation, scale
    and shift about the face centre (:data:`JITTER`) is composed on top (training only).
    """
    import cv2

    from facelivenet.detect.align import similarity_matrix, warp

    matrix = similarity_matrix(landmarks, size)
    if rng is not None:
        rot, scl, shift = JITTER
        jitter = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), rng.uniform(-rot, rot), 1.0 + rng.uniform(-scl, scl))
        jitter[:, 2] += rng.uniform(-shift, shift, size=2) * size
        matrix = np.concatenate([jitter[:, :2] @ matrix[:, :2], (jitter[:, :2] @ matrix[:, 2] + jitter[:, 2])[:, None]], 1)
    return warp(image, matrix, size)


def to_gray(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in all three channels (how the grey datasets look)."""
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def load_face(path: str, landmarks, size: int, *, seed: Sequence[int] | None = None, flip: bool = False,
              gray_share: float = 0.0) -> np.ndarray:
    """Read, warp (jittered when ``seed`` is given), maybe flip and turn grey: one training face.

    ``seed`` makes the augmentation a function of (run seed, epoch, position), so a
    resumed run sees the same faces.
    """
    from facelivenet.images import read_image

    rng = np.random.default_rng(list(seed)) if seed is not None else None
    face = warp_face(read_image(path), landmarks, size, rng)
    if rng is not None:
        if flip and rng.random() < 0.5:
            face = np.ascontiguousarray(face[:, ::-1])
        if gray_share > 0 and rng.random() < gray_share:
            face = to_gray(face)
    return face


def write_faces(records: Sequence[Record], out_dir: str | os.PathLike, *, size: int, by: str,
                alignment: str = "similarity", progress: Callable | None = None) -> dict[str, int]:
    """Write the records' faces as class folders: ``OUT/<class>/<file>.png``.

    ``by="identity"`` names folders by identity (``/`` becomes ``_``), ``by="expression"``
    by the majority of the record's expression distribution (FER+ majority, or the label).
    Faces are cut with ``alignment``: ``similarity`` is the joint models' geometry (the
    landmarks onto the template); ``crop`` resizes a tight source's whole image, which
    is how a model of the older crop geometry saw FER2013 and CK+ in training.
    Returns the number of faces per class. The faces stay outside the project (they are
    derived from the datasets).
    """
    import cv2

    from facelivenet.config import FER2013_CLASSES
    from facelivenet.images import read_image
    from facelivenet.preprocess import resize_face

    if by not in ("identity", "expression"):
        raise DatasetError(f"write_faces: by must be 'identity' or 'expression'. Received: {by!r}")
    root = Path(out_dir)
    counts: dict[str, int] = {}
    items = progress(records, len(records), "faces") if progress else records
    for r in items:
        if by == "identity":
            if r.identity is None:
                continue
            cls = r.identity.replace("/", "_")
        else:
            if r.expression is None:
                continue
            cls = FER2013_CLASSES[int(np.argmax(r.expression))]
        image = read_image(r.path)
        if alignment == "similarity":
            face = warp_face(image, r.landmarks, size)
        elif r.source in TIGHT_SOURCES:
            face = resize_face(image, size)
        else:
            raise DatasetError(f"{r.path}: a {r.source!r} photo has no crop-geometry face here; use similarity")
        target = root / cls / (Path(r.path).stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        counts[cls] = counts.get(cls, 0) + 1
    return counts
