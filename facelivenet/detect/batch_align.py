"""Align a whole dataset laid out one folder per class (``facelivenet align``).

``align_dataset(input_dir, output_dir, settings)`` mirrors the folder tree of
``input_dir`` under ``output_dir`` with one aligned face per image (``<name>.png``;
with ``all_faces`` every face, ``<name>_<k>.png``), and keeps three files there:

* ``align.json``: the settings; a rerun with other settings is refused.
* ``manifest.jsonl``: one JSON line per written face: source, output (relative paths),
  box, score, landmarks (input pixels).
* ``failures.jsonl``: one JSON line per image that gave nothing: source, reason
  (``unreadable``, ``no_face`` or ``error``), message.

A bad file never stops the run. The two lists are rewritten atomically every few
seconds and at the end (also on Ctrl-C), so a rerun skips every image already listed
(failures too, unless ``retry_failures``) and redoes at most the last few seconds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from facelivenet.errors import FaceLiveNetError, InputError, ImageReadError
from facelivenet.faces import IMAGE_EXTENSIONS
from facelivenet.utils import atomic_path, atomic_write_text

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)
SETTINGS_FILE = "align.json"
MANIFEST_FILE = "manifest.jsonl"
FAILURES_FILE = "failures.jsonl"
#: Seconds between rewrites of the manifest and failures lists.
FLUSH_SECONDS = 5.0

Progress = Callable[[Iterable, int], Iterable]


@dataclass(frozen=True)
class AlignSettings:
    """How faces are detected and cut out.

    Attributes:
        image_size: side of the output faces in pixels.
        margin: ``crop`` margin in output pixels (see :func:`facelivenet.detect.crop_face`).
        mode: ``"crop"`` or ``"similarity"``.
        min_face_size: smallest face the detector looks for, in image pixels.
        all_faces: write every face; else only the largest, most central one.
    """

    image_size: int = 160
    margin: int = 32
    mode: str = "crop"
    min_face_size: float = 20
    all_faces: bool = False

    def __post_init__(self) -> None:
        from facelivenet.detect.align import ALIGN_MODES

        if self.mode not in ALIGN_MODES:
            raise InputError(f"mode must be one of {ALIGN_MODES}. Received: mode={self.mode!r}")
        if self.image_size < 8:
            raise InputError(f"image_size must be >= 8. Received: image_size={self.image_size}")
        if not 0 <= self.margin < self.image_size:
            raise InputError(f"margin must be in [0, image_size). Received: margin={self.margin}")
        if self.min_face_size < 12:
            raise InputError(f"min_face_size must be >= 12. Received: min_face_size={self.min_face_size}")


@dataclass(frozen=True)
class ItemResult:
    """What became of one source image.

    Attributes:
        source: path relative to the input folder (POSIX separators).
        status: ``"aligned"``, ``"no_face"``, ``"unreadable"`` or ``"error"``.
        faces: manifest records of the faces written (for ``"aligned"``).
        message: why nothing was written (for the other statuses).
    """

    source: str
    status: str
    faces: tuple[dict, ...] = ()
    message: str = ""


@dataclass
class AlignSummary:
    """Counts and timing of one :func:`align_dataset` run."""

    input_dir: str
    output_dir: str
    images: int = 0
    skipped: int = 0
    aligned: int = 0
    faces: int = 0
    no_face: int = 0
    unreadable: int = 0
    errors: int = 0
    seconds: float = 0.0
    manifest: str = ""
    failures: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.aligned + self.no_face + self.unreadable + self.errors

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["processed"] = self.processed
        d["images_per_second"] = round(self.images_per_second, 2)
        d["seconds"] = round(self.seconds, 3)
        return d

    def line(self) -> str:
        """The one-line human summary."""
        return (
            f"aligned {self.aligned} ({self.faces} faces), no face {self.no_face}, "
            f"unreadable {self.unreadable}, errors {self.errors}; {self.skipped} done before; "
            f"{self.processed} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s) "
            f"-> {self.output_dir}"
        )


def list_images(input_dir: Path, exclude: Path | None = None) -> list[str]:
    """Image files under ``input_dir`` (recursive, sorted), as POSIX relative paths.

    ``exclude`` (e.g. an output folder inside the input folder) is not entered.
    """
    found = []
    for root, dirs, files in os.walk(input_dir):
        rootp = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or (rootp / d).resolve() != exclude))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((rootp / name).relative_to(input_dir).as_posix())
    return sorted(found)


def output_names(source: str, count: int, all_faces: bool) -> list[str]:
    """Relative output paths for ``count`` faces of ``source`` (``a/b.jpg`` → ``a/b.png``)."""
    stem = source.rsplit(".", 1)[0]
    if not all_faces:
        return [f"{stem}.png"]
    return [f"{stem}_{k}.png" for k in range(count)]


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a torn or foreign line is skipped, a missing file is empty."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("source"), str):
            out.append(rec)
    return out


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, separators=(", ", ": ")) + "\n" for r in records))


class _Worker:
    """Detects and aligns one image at a time (one per process)."""

    def __init__(self, input_dir: Path, output_dir: Path, settings: AlignSettings):
        from facelivenet.detect.detector import FaceDetector

        self.input_dir, self.output_dir, self.settings = input_dir, output_dir, settings
        self.detector = FaceDetector(min_face_size=settings.min_face_size).load()

    def __call__(self, source: str) -> ItemResult:
        try:
            return self._align(source)
        except ImageReadError as exc:
            return ItemResult(source, "unreadable", message=str(exc))
        except FaceLiveNetError as exc:
            return ItemResult(source, "error", message=str(exc))
        except Exception as exc:  # one bad image must not stop a dataset run
            return ItemResult(source, "error", message=f"{type(exc).__name__}: {exc}")

    def _align(self, source: str) -> ItemResult:
        import cv2

        from facelivenet.detect.align import align_face, pick_main_face
        from facelivenet.images import read_image

        s = self.settings
        image = read_image(self.input_dir / source)
        faces = self.detector.detect(image)
        if not s.all_faces:
            main = pick_main_face(faces, image.shape)
            faces = [main] if main is not None else []
        if not faces:
            return ItemResult(source, "no_face", message="no face found")
        records = []
        for det, name in zip(faces, output_names(source, len(faces), s.all_faces)):
            face = align_face(image, det, s.image_size, s.mode, s.margin)
            target = self.output_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                if not cv2.imwrite(str(tmp), cv2.cvtColor(face, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"cannot write {target}")
            records.append({"source": source, "output": name, **det.to_dict()})
        return ItemResult(source, "aligned", tuple(records))


_PROCESS_WORKER: list[_Worker] = []  # the worker of a pool process (set by _init_process)


def _init_process(input_dir: Path, output_dir: Path, settings: AlignSettings, threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from facelivenet.backend import load_backend

    load_backend()  # import TensorFlow without its start-up log lines
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _PROCESS_WORKER.append(_Worker(input_dir, output_dir, settings))


def _run_in_process(source: str) -> ItemResult:
    return _PROCESS_WORKER[0](source)


def _results(todo: list[str], input_dir: Path, output_dir: Path, settings: AlignSettings, workers: int) -> Iterator[ItemResult]:
    if workers <= 1 or len(todo) <= 1:
        worker = _Worker(input_dir, output_dir, settings)
        for source in todo:
            yield worker(source)
        return
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # TensorFlow is not fork-safe
    with ctx.Pool(workers, _init_process, (input_dir, output_dir, settings, threads)) as pool:
        yield from pool.imap_unordered(_run_in_process, todo, chunksize=4)


def align_dataset(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: AlignSettings = AlignSettings(),
    *,
    workers: int = 1,
    retry_failures: bool = False,
    progress: Progress | None = None,
) -> AlignSummary:
    """Align every image under ``input_dir`` into ``output_dir`` (see the module doc).

    Args:
        workers: processes; 1 runs in this process.
        retry_failures: also redo images listed in ``failures.jsonl``.
        progress: ``progress(iterable, length)`` wrapper (a progress bar), or None.

    Raises:
        InputError: ``input_dir`` is not a folder, ``output_dir`` is the input folder
            or holds an alignment made with other settings.
    """
    src, dst = Path(input_dir), Path(output_dir)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder" if not src.exists() else f"{src}: not a folder")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dst}: exists and is not a folder")
    if dst.resolve() == src.resolve():
        raise InputError("OUTPUT_DIR must differ from INPUT_DIR")
    if workers < 1:
        raise InputError(f"workers must be >= 1. Received: workers={workers}")
    settings_path, manifest_path, failures_path = dst / SETTINGS_FILE, dst / MANIFEST_FILE, dst / FAILURES_FILE
    wanted = asdict(settings)
    if settings_path.exists():
        try:
            previous = json.loads(settings_path.read_text())
        except ValueError:
            previous = None
        if previous != wanted:
            raise InputError(
                f"{dst} holds faces aligned with other settings ({settings_path}: {previous}); "
                "use another OUTPUT_DIR or the same options"
            )
    dst.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings_path, json.dumps(wanted, indent=2) + "\n")

    manifest = _read_jsonl(manifest_path)
    incomplete = {r["source"] for r in manifest if not (dst / str(r.get("output", ""))).is_file()}
    manifest = [r for r in manifest if r["source"] not in incomplete]  # redo a source missing any face
    failures = [] if retry_failures else _read_jsonl(failures_path)
    done = {r["source"] for r in manifest} | {r["source"] for r in failures}
    sources = list_images(src, exclude=dst.resolve())
    todo = [s for s in sources if s not in done]
    summary = AlignSummary(
        input_dir=str(src), output_dir=str(dst), images=len(sources), skipped=len(sources) - len(todo),
        manifest=str(manifest_path), failures=str(failures_path), settings=wanted,
    )
    todo_set = set(todo)  # results for these replace any stale record
    manifest = [r for r in manifest if r["source"] not in todo_set]
    failures = [r for r in failures if r["source"] not in todo_set]

    def flush() -> None:
        _write_jsonl(manifest_path, manifest)
        _write_jsonl(failures_path, failures)

    start = last_flush = time.perf_counter()
    results = _results(todo, src, dst, settings, workers)
    try:
        for item in progress(results, len(todo)) if progress else results:
            if item.status == "aligned":
                summary.aligned += 1
                summary.faces += len(item.faces)
                manifest.extend(item.faces)
            else:
                counter = {"no_face": "no_face", "unreadable": "unreadable"}.get(item.status, "errors")
                setattr(summary, counter, getattr(summary, counter) + 1)
                failures.append({"source": item.source, "reason": item.status, "message": item.message})
            if time.perf_counter() - last_flush > FLUSH_SECONDS:
                flush()
                last_flush = time.perf_counter()
    finally:
        summary.seconds = time.perf_counter() - start
        results.close()  # stops the worker pool at once on an interruption
        flush()
    return summary
