"""An identity teacher for training: dlib's ResNet face descriptor (training-only extra).

dlib's 29-layer ResNet maps a 150x150 face chip to a 128-d descriptor (its authors
report 99.38% on LFW). Its weights ship in the ``face_recognition_models`` wheel and it
runs on ``dlib-bin``; both come with ``pip install .[teacher]``. Nothing here is needed
by a trained model: the teacher's embeddings are computed once per training face, saved
in a cache, and read by :mod:`facelivenet.train.joint`.

The teacher sees the same face as the student, from the same five MTCNN landmarks: a
similarity transform onto :data:`TEACHER_TEMPLATE_150`, the place dlib's own chip
(``get_face_chip(size=150, padding=0.25)``) puts those five points. That template was
measured once: on 171 CelebA photos where dlib's HOG detector and our MTCNN found the
same face, our landmarks mapped into dlib's chip have these means (std 2-5 px).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from facelivenet.errors import ConfigError, DatasetError

#: Our five landmarks (left eye, right eye, nose, mouth left, mouth right) in dlib's
#: 150 px chip (padding 0.25), measured as the module doc says.
TEACHER_TEMPLATE_150 = np.array(
    [[46.89, 44.00], [100.80, 43.84], [72.98, 77.27], [49.23, 100.19], [98.25, 99.91]], dtype=np.float32
)
TEACHER_SIZE = 150
TEACHER_NAME = "dlib_face_recognition_resnet_model_v1"
#: Cache format version (changes when the geometry or the file layout changes).
CACHE_VERSION = 1


def _require():
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the identity teacher needs dlib and its weights: pip install '.[teacher]' "
            "(dlib-bin and face_recognition_models from the package registry)"
        ) from None


def teacher_chip(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 150x150 RGB chip dlib's descriptor expects, from our five landmarks."""
    import cv2

    src = np.asarray(landmarks, np.float32).reshape(5, 2)
    matrix, _ = cv2.estimateAffinePartial2D(src, TEACHER_TEMPLATE_150, method=cv2.RANSAC,
                                            ransacReprojThreshold=1e6)
    if matrix is None:
        raise DatasetError("degenerate landmarks: no similarity transform to the teacher's template")
    return cv2.warpAffine(image, matrix, (TEACHER_SIZE, TEACHER_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


class DlibTeacher:
    """dlib's face descriptor on chips: ``embed(chips) -> (N, 128) float32``."""

    def __init__(self) -> None:
        _require()
        import dlib
        import face_recognition_models as frm

        path = frm.face_recognition_model_location()
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: dlib's face descriptor weights are missing; reinstall face_recognition_models")
        self._net = dlib.face_recognition_model_v1(path)

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if not len(chips):
            return np.zeros((0, 128), np.float32)
        out = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(v) for v in out], np.float32)

    def embed_faces(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed([teacher_chip(im, lm) for im, lm in zip(images, landmarks)])


def record_key(path: str, landmarks) -> str:
    """Cache key of one face: its file and the landmarks (so another alignment is another key)."""
    text = json.dumps([str(path), np.round(np.asarray(landmarks, np.float64), 2).tolist()])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_teacher(
    records: Sequence,
    cache_dir: str | os.PathLike,
    *,
    teacher: DlibTeacher | None = None,
    batch: int = 64,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[Iterable, int, str], Iterator] | None = None,
) -> Path:
    """Compute the teacher's embedding of every record not yet in ``cache_dir``.

    The cache is a folder of ``part-*.npz`` files (keys, embeddings), appended batch by
    batch, so an interrupted run resumes; ``shard=(i, n)`` lets ``n`` processes share the
    work. :func:`load_teacher_cache` reads them all.
    """
    from facelivenet.images import read_image

    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    meta = root / "teacher.json"
    info = {"teacher": TEACHER_NAME, "template": TEACHER_TEMPLATE_150.tolist(), "version": CACHE_VERSION}
    if meta.exists():
        if json.loads(meta.read_text()) != info:
            raise DatasetError(f"{root}: a teacher cache of another teacher or geometry; use another folder")
    else:
        meta.write_text(json.dumps(info) + "\n")
    done = set(load_teacher_cache(root, allow_empty=True)[0])
    i, n = shard
    todo = [r for r in records if record_key(r.path, r.landmarks) not in done
            and int(record_key(r.path, r.landmarks)[:8], 16) % n == i]
    teacher = teacher or DlibTeacher()
    part = 0
    while (root / f"part-{i}-{part:05d}.npz").exists():
        part += 1
    starts = range(0, len(todo), batch)
    for s in (progress(starts, len(starts), "teacher") if progress else starts):
        chunk = todo[s : s + batch]
        chips, keys = [], []
        for r in chunk:
            try:
                chips.append(teacher_chip(read_image(r.path), r.landmarks))
                keys.append(record_key(r.path, r.landmarks))
            except Exception:  # unreadable or degenerate: no teacher target for it
                continue
        emb = teacher.embed(chips)
        target = root / f"part-{i}-{part:05d}.npz"
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.asarray(keys), embeddings=emb)
        os.replace(tmp, target)
        part += 1
    return root


def load_teacher_cache(cache_dir: str | os.PathLike, allow_empty: bool = False) -> tuple[list[str], np.ndarray]:
    """All (keys, (N, 128) embeddings) of a teacher cache folder."""
    root = Path(cache_dir)
    keys: list[str] = []
    embs = []
    for p in sorted(root.glob("part-*.npz")):
        if p.name.endswith(".tmp.npz"):
            continue
        with np.load(p) as z:
            keys.extend(str(k) for k in z["keys"])
            embs.append(z["embeddings"].astype(np.float32))
    if not keys and not allow_empty:
        raise DatasetError(f"{root}: no teacher embeddings (run `facelivenet teacher-cache` first)")
    return keys, (np.concatenate(embs) if embs else np.zeros((0, 128), np.float32))
