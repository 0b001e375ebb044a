"""Training logs: CSV files, TensorBoard scalars, and the multi-task weights/losses plot."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping

from facelivenet.utils import atomic_path


class CsvLog:
    """A CSV file appended row by row; the header comes from the first row written.

    On a resumed run, :meth:`truncate` drops rows past the checkpoint so the file reads
    as one uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if resume and self.path.exists():
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), None)
        elif self.path.exists():
            self.path.unlink()

    def truncate(self, key: str, last: int) -> None:
        """Keep only rows whose ``key`` column is <= ``last``."""
        if self.fields is None:
            return
        rows = read_csv(self.path)
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.fields, extrasaction="ignore")
                w.writeheader()
                for row in rows:
                    if int(float(row[key])) <= last:
                        w.writerow(row)

    def write(self, row: Mapping[str, object]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(row.get(k)) for k in self.fields})


def _fmt(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class TensorBoard:
    """Scalars to a TensorBoard event folder (a no-op when ``path`` is None).

    Written with ``tf.summary.write`` and the scalars plugin's metadata, so the
    ``tensorboard`` package is needed only to view the logs, not to write them.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.writer = None
        if path is not None:
            import tensorflow as tf
            from tensorflow.core.framework import summary_pb2

            self.writer = tf.summary.create_file_writer(str(path))
            self._metadata = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
                data_class=summary_pb2.DATA_CLASS_SCALAR,
            ).SerializeToString()

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        import tensorflow as tf

        with self.writer.as_default(step=step):
            for k, v in values.items():
                if v is not None:
                    tf.summary.write(prefix + k, tf.constant(float(v), tf.float32), metadata=self._metadata)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def plot_multitask(steps_csv: str | os.PathLike, png: str | os.PathLike) -> Path:
    """Plot w1, w2 and L1, L2 per step (FaceLiveNet+ Fig. 6-7) from the steps CSV to ``png``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = read_csv(steps_csv)
    steps = [int(r["step"]) for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(steps, [float(r["w1"]) for r in rows], label="w1 (verification)")
    top.plot(steps, [float(r["w2"]) for r in rows], label="w2 (expression)")
    top.set_ylabel("dynamic weight")
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="best")
    bottom.plot(steps, [float(r["l1"]) for r in rows], label="L1 (verification)")
    bottom.plot(steps, [float(r["l2"]) for r in rows], label="L2 (expression)")
    bottom.set_ylabel("loss")
    bottom.set_xlabel("step")
    bottom.legend(loc="best")
    fig.suptitle("FaceLiveNet+ dynamic task weights and losses")
    fig.tight_layout()
    png = Path(png)
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return png
