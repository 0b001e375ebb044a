"""The holistic face-authentication protocol (ICPR §IV-C, FaceLiveNet+ §5.2, DESIGN.md §7).

A sample is (probe image, reference image, same identity?, required expression). The
system accepts it iff the probe matches the reference (squared L2 distance <= the
verification threshold) AND the probe shows the required expression (its probability
>= the expression threshold). Ground truth is positive only when the identities match
and the probe's true expression is the required one. The report gives, per sample:

- ``acc_auth``: fused decision == ground truth;
- ``acc_verif``: verification decision == same identity;
- ``acc_live``: liveness decision (required expression shown) == (probe's expression
  is the required one);
- ``acc_expre``: most probable class == the probe's expression (samples whose
  expression the model has a class for);
- the 2x2 cells of the papers' Table VI (ID true/false x expression true/false) with
  samples and acceptances in each;
- ROC, AUC and EER over the **fused score**
  ``min((t_v - d) / t_v, (p - t_e) / (1 - t_e))`` with d the distance, p the
  required expression's probability, t_v and t_e the two thresholds: each term is 1 at
  a perfect answer (d = 0, p = 1) and 0 at its threshold, so score >= 0 is exactly
  the fused decision, and lowering the score's threshold relaxes both tests together.

(The papers multiplied a verification accuracy with a liveness accuracy; here the
decision is fused per sample.)

Building samples (:func:`make_auth_protocol`) from an expression dataset with subjects
in its file names (CK+): the reference of a subject is its Neutral image where the
dataset has a neutral folder; **without one (``ckplus48``)** it is the subject's first
image (sorted by file name) from a class that is not a required expression, else from
any class. A probe never comes from its reference's class folder, so for CK+ (one
labelled sequence per expression) a probe never shares the reference's sequence. Each
subject with a reference contributes, for each required expression E, up to one
sample per cell: its own peak image of E (ID+, Ex+), its own image of another
expression (ID+, Ex-), another subject's peak image of E (ID-, Ex+) and another
subject's image of another expression (ID-, Ex-). "Peak" = last frame by file name
(CK+ sequences end at the apex).
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facelivenet.data.datasets import scan_class_folders, with_subjects
from facelivenet.errors import DatasetError, FileFormatError
from facelivenet.eval import metrics
from facelivenet.eval.expression import same_expression, class_index
from facelivenet.eval.crops import Progress, analyze_files

#: The papers' required expressions: the most universal and easiest to recognise.
REQUIRED_EXPRESSIONS: tuple[str, ...] = ("happy", "surprise")
NEUTRAL = "neutral"
#: Columns of a protocol CSV; the first five are required.
COLUMNS: tuple[str, ...] = (
    "probe", "reference", "same_id", "required_expression", "probe_expression",
    "probe_subject", "reference_subject", "cell",
)
REQUIRED_COLUMNS = COLUMNS[:5]
CELLS: tuple[str, ...] = ("id_true/ex_true", "id_true/ex_false", "id_false/ex_true", "id_false/ex_false")
REFERENCE_RULE_NEUTRAL = "reference = the subject's first neutral image"
REFERENCE_RULE_NO_NEUTRAL = (
    "no neutral class: reference = the subject's first image (by file name) from a class that is not a "
    "required expression, else from any class; probes never come from the reference's class folder"
)


@dataclass(frozen=True)
class AuthSample:
    """One sample of the protocol (paths as they will be read)."""

    probe: str
    reference: str
    same_id: bool
    required_expression: str
    probe_expression: str
    probe_subject: str = ""
    reference_subject: str = ""

    @property
    def expression_ok(self) -> bool:
        """The probe's true expression is the required one (case, synonyms)."""
        return same_expression(self.probe_expression, self.required_expression)

    @property
    def genuine(self) -> bool:
        """Ground truth: the sample should be accepted."""
        return self.same_id and self.expression_ok

    @property
    def cell(self) -> str:
        return f"id_{str(self.same_id).lower()}/ex_{str(self.expression_ok).lower()}"


@dataclass
class AuthProtocol:
    """Samples built by :func:`make_auth_protocol` and how they were built."""

    samples: list[AuthSample]
    notes: list[str] = field(default_factory=list)
    subjects: int = 0
    subjects_without_own_probes: tuple[str, ...] = ()

    def cell_counts(self) -> dict[str, int]:
        return {c: sum(1 for s in self.samples if s.cell == c) for c in CELLS}


def make_auth_protocol(data_dir: str | os.PathLike, subject_regex: str, *,
                       required: Sequence[str] = REQUIRED_EXPRESSIONS, seed: int = 0) -> AuthProtocol:
    """Build the four cells of samples from ``DATA/<expression>/<subject file>`` (see the module doc).

    Raises:
        DatasetError: a required expression has no folder, or fewer than 2 subjects.
    """
    data = with_subjects(scan_class_folders(data_dir), subject_regex, required=True)
    classes = data.class_names
    req_class: dict[str, str] = {}
    for e in required:
        i = class_index(e, classes)
        if i is None:
            raise DatasetError(f"{data_dir}: no folder for the required expression {e!r} (folders: {', '.join(classes)})")
        req_class[e] = classes[i]
    neutral_i = class_index(NEUTRAL, classes)
    neutral = classes[neutral_i] if neutral_i is not None else None
    # images of each (subject, class), sorted by file name
    by: dict[tuple[str, str], list[str]] = {}
    for path, label, subject in sorted(zip(data.paths, data.labels, data.groups), key=lambda t: Path(t[0]).name):
        by.setdefault((subject, classes[label]), []).append(path)
    subjects = sorted(set(data.groups))
    if len(subjects) < 2:
        raise DatasetError(f"{data_dir}: the protocol needs at least 2 subjects; found {len(subjects)}")

    references: dict[str, tuple[str, str]] = {}                # subject -> (path, class)
    for s in subjects:
        own = [c for c in classes if (s, c) in by]
        if neutral is not None and neutral in own:
            pick = neutral
        else:
            others = [c for c in own if c not in req_class.values() and c != neutral]
            pick = min(others or own, key=lambda c: Path(by[(s, c)][0]).name)
        references[s] = (by[(s, pick)][0], pick)
    # a subject whose only class is its reference's has no probes of its own
    peak = {key: paths[-1] for key, paths in by.items()}
    probes_of = {s: {c: peak[(s, c)] for c in classes if (s, c) in peak and c != references[s][1]} for s in subjects}
    no_probe = tuple(s for s in subjects if not probes_of[s])

    rng = np.random.default_rng(seed)
    samples: list[AuthSample] = []

    def add(probe_subject: str, probe: str, probe_class: str, s: str, e: str) -> None:
        samples.append(AuthSample(probe, references[s][0], probe_subject == s, e, probe_class, probe_subject, s))

    for s in subjects:
        others = [t for t in subjects if t != s]
        for e, ce in req_class.items():
            if ce in probes_of[s]:                                                  # ID+, Ex+
                add(s, probes_of[s][ce], ce, s, e)
            wrong = [c for c in probes_of[s] if c != ce]
            if wrong:                                                               # ID+, Ex-
                c = wrong[rng.integers(len(wrong))]
                add(s, probes_of[s][c], c, s, e)
            showing = [t for t in others if (t, ce) in peak]
            if showing:                                                             # ID-, Ex+
                t = showing[rng.integers(len(showing))]
                add(t, peak[(t, ce)], ce, s, e)
            other_class = [(t, c) for t in others for c in classes if c != ce and (t, c) in peak]
            if other_class:                                                         # ID-, Ex-
                t, c = other_class[rng.integers(len(other_class))]
                add(t, peak[(t, c)], c, s, e)
    notes = [REFERENCE_RULE_NEUTRAL if neutral is not None else REFERENCE_RULE_NO_NEUTRAL]
    if no_probe:
        notes.append(f"{len(no_probe)} subject(s) have images of one class only: no ID-true samples of their own")
    return AuthProtocol(samples, notes, len(subjects), no_probe)


def write_protocol(path: str | os.PathLike, protocol: AuthProtocol, header: Sequence[str] = ()) -> None:
    """Write the samples as CSV (atomically), ``#`` comment lines first (the rules used).

    Image paths are written relative to the CSV's folder; :func:`read_protocol` resolves them.
    """
    from facelivenet.utils import atomic_write_text

    base = Path(path).resolve().parent
    buf = io.StringIO()
    for line in [*header, *protocol.notes,
                 "cells: " + ", ".join(f"{c} {n}" for c, n in protocol.cell_counts().items())]:
        buf.write(f"# {line}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in protocol.samples:
        writer.writerow([
            os.path.relpath(Path(s.probe).resolve(), base), os.path.relpath(Path(s.reference).resolve(), base),
            "true" if s.same_id else "false", s.required_expression, s.probe_expression,
            s.probe_subject, s.reference_subject, s.cell,
        ])
    atomic_write_text(path, buf.getvalue())


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def read_protocol(path: str | os.PathLike) -> list[AuthSample]:
    """Read a protocol CSV; relative image paths are taken from the CSV's folder (see :func:`parse_protocol`)."""
    from facelivenet.utils import check_input_file

    p = check_input_file(path, "protocol CSV", FileFormatError)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{p}: unreadable protocol file ({exc})") from None
    return parse_protocol(text, str(p), p.parent)


def parse_protocol(text: str, source: str = "<protocol>", base: str | os.PathLike = ".") -> list[AuthSample]:
    """Parse protocol CSV text (``#`` lines are comments); relative paths are joined to ``base``.

    Raises:
        FileFormatError: missing columns, a bad ``same_id`` value, an empty field, a
            malformed CSV line; the message names ``source`` and the line.
    """
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise FileFormatError(f"{source}: no header line (expected columns {', '.join(REQUIRED_COLUMNS)})")
    n0, head = rows[0]
    header = [h.strip() for h in _csv_fields(head, f"{source}:{n0}")]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FileFormatError(f"{source}:{n0}: missing column(s) {', '.join(missing)} in the header")
    col = {name: header.index(name) for name in header}
    base = Path(base)
    samples = []
    for n, line in rows[1:]:
        fields = _csv_fields(line, f"{source}:{n}")
        if len(fields) != len(header):
            raise FileFormatError(f"{source}:{n}: expected {len(header)} fields, got {len(fields)}")
        get = {name: fields[i].strip() for name, i in col.items()}
        for name in REQUIRED_COLUMNS:
            if not get[name]:
                raise FileFormatError(f"{source}:{n}: empty {name}")
        same = _BOOLS.get(get["same_id"].lower())
        if same is None:
            raise FileFormatError(f"{source}:{n}: same_id must be true or false, got {get['same_id']!r}")
        samples.append(AuthSample(
            str(base / get["probe"]), str(base / get["reference"]), same,
            get["required_expression"], get["probe_expression"],
            get.get("probe_subject", ""), get.get("reference_subject", ""),
        ))
    if not samples:
        raise FileFormatError(f"{source}: no samples after the header")
    return samples


def _csv_fields(line: str, where: str) -> list[str]:
    try:
        return next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise FileFormatError(f"{where}: malformed CSV line ({exc})") from None


# --- evaluation ------------------------------------------------------------------------------

def fused_score(distances: np.ndarray, probabilities: np.ndarray, verification_threshold: float,
                expression_threshold: float) -> np.ndarray:
    """(N,) ``min((t_v - d) / t_v, (p - t_e) / (1 - t_e))``: >= 0 iff d <= t_v and p >= t_e.

    Args:
        distances: (N,) squared L2 distances probe-reference.
        probabilities: (N,) probability of the required expression in the probe.
    """
    t_v, t_e = float(verification_threshold), float(expression_threshold)
    identity = (t_v - np.asarray(distances, np.float64)) / max(t_v, 1e-9)
    expression = (np.asarray(probabilities, np.float64) - t_e) / max(1.0 - t_e, 1e-9)
    return np.minimum(identity, expression)


def evaluate_auth(model: Any, samples: Sequence[AuthSample], *, verification_threshold: float | None = None,
                  expression_threshold: float | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Fused per-sample decisions of ``model`` on the protocol (see the module doc).

    Thresholds default to the model's ``verification_threshold`` and ``expression_threshold``.
    Returns the report dictionary (``acc_auth``, ``acc_verif``, ``acc_expre``, ``acc_live``,
    ``cells``, ``decisions``, ``auc``, ``eer`` ...); ``_roc`` holds the ROC for plotting.

    Raises:
        DatasetError: a required expression is not a class of the model.
    """
    t0 = time.perf_counter()
    cfg = model.config
    classes = tuple(cfg.expression_classes)
    t_v = float(cfg.verification_threshold if verification_threshold is None else verification_threshold)
    t_e = float(cfg.expression_threshold if expression_threshold is None else expression_threshold)
    required = []
    for s in samples:
        i = class_index(s.required_expression, classes)
        if i is None:
            raise DatasetError(f"required expression {s.required_expression!r} is not a class of the model "
                               f"({', '.join(classes)})")
        required.append(i)
    paths = sorted({s.probe for s in samples} | {s.reference for s in samples})
    index = {p: i for i, p in enumerate(paths)}
    out = analyze_files(model, paths, progress=progress)
    probe = np.array([index[s.probe] for s in samples])
    ref = np.array([index[s.reference] for s in samples])
    d = metrics.squared_l2_distances(out.embeddings[probe], out.embeddings[ref])
    p_req = out.expressions[probe, np.array(required)]
    same = np.array([s.same_id for s in samples])
    expr_ok = np.array([s.expression_ok for s in samples])
    genuine = same & expr_ok
    verif = d <= t_v
    live = p_req >= t_e
    accept = verif & live
    top = np.argmax(out.expressions[probe], axis=1)
    truth = np.array([-1 if (i := class_index(s.probe_expression, classes)) is None else i for s in samples])
    known = truth >= 0
    score = fused_score(d, p_req, t_v, t_e)
    cells = {}
    for c in CELLS:
        member = np.array([s.cell == c for s in samples])
        cells[c] = {"samples": int(member.sum()), "accepted": int((accept & member).sum())}
    report: dict[str, Any] = {
        "acc_auth": float(np.mean(accept == genuine)),
        "acc_verif": float(np.mean(verif == same)),
        "acc_expre": float(np.mean(top[known] == truth[known])) if known.any() else None,
        "acc_live": float(np.mean(live == expr_ok)),
        "samples": len(samples),
        "expre_samples": int(known.sum()),
        "cells": cells,
        "decisions": {
            "true_accept": int((accept & genuine).sum()), "false_accept": int((accept & ~genuine).sum()),
            "true_reject": int((~accept & ~genuine).sum()), "false_reject": int((~accept & genuine).sum()),
        },
        "verification_threshold": t_v,
        "expression_threshold": t_e,
        "fused_score": "min((t_v - d) / t_v, (p - t_e) / (1 - t_e)); accept iff >= 0",
        "auc": None, "eer": None, "eer_score": None,
        "images": len(paths),
        "model": str(model.source) if getattr(model, "source", None) else None,
    }
    if genuine.any() and not genuine.all():
        roc = metrics.roc_curve(-score, genuine)          # a distance: smaller = accept
        eer = metrics.equal_error_rate(roc)
        report.update(auc=metrics.auc(roc), eer=eer.eer, eer_score=-eer.threshold, _roc=roc)
    report["seconds"] = time.perf_counter() - t0
    return report


def format_report(d: dict[str, Any]) -> str:
    """Human summary of :func:`evaluate_auth`'s report."""
    acc_expre = "-" if d["acc_expre"] is None else f"{d['acc_expre']:.4f}"
    lines = [
        f"samples:    {d['samples']} ({d['images']} images)",
        f"Acc_auth:   {d['acc_auth']:.4f}",
        f"Acc_verif:  {d['acc_verif']:.4f} (squared L2 <= {d['verification_threshold']:.3f})",
        f"Acc_expre:  {acc_expre} (over {d['expre_samples']} samples)",
        f"Acc_live:   {d['acc_live']:.4f} (p(required) >= {d['expression_threshold']:.2f})",
        f"{'cell':<18} {'samples':>7} {'accepted':>8}",
    ]
    lines += [f"{c:<18} {v['samples']:>7} {v['accepted']:>8}" for c, v in d["cells"].items()]
    if d["auc"] is not None:
        lines.append(f"fused score: AUC {d['auc']:.4f}, EER {d['eer']:.4f} (at score {d['eer_score']:.4f})")
    return "\n".join(lines)
