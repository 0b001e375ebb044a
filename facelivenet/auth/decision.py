"""Turning a :class:`~facelivenet.auth.challenge.Decision` into reports: one JSON contract.

:func:`decision_report` builds the one decision document that ``verify-video --json``,
``realtime --headless`` (its ``decision`` event), ``demo --json`` and the facade
(:meth:`~facelivenet.auth.offline.Authentication.report`) give, with the same keys
everywhere and floats rounded to :data:`FLOAT_DIGITS` places; its JSON Schema is
``facelivenet/schemas/decision.schema.json`` (:data:`SCHEMA_VERSION`).
:func:`format_decision` is the human summary.

The **score** (:func:`decision_scores`) is a number in [0, 1] that is at least 0.5
exactly when the decision is an accept:

- ``identity`` = 1 - d / (2 t), clipped to [0, 1], where d is the largest identity
  distance over the frames that counted (the median over all frames with a face when
  none counted) and t the identity threshold: 0.5 on the threshold, 1 at distance 0;
- ``liveness`` = 0.5 + 0.5 * m when every step was completed, m being the smallest
  margin over the steps of (the lowest probability of the step's expression on its
  counted frames - the threshold) / (1 - the threshold); 0.5 * (steps done + the
  awaited step's share of its minimum frames) / steps when the answer stopped short;
  0 when a rule rejected it (two faces, a wrong expression, a changed identity, a face
  jump, a refused token, a cancelled session);
- ``score`` = min(identity, liveness).

``margins`` gives the raw per-test margins (threshold - distance for identity,
probability - threshold per expression step; positive passes).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Mapping

from facelivenet.auth.challenge import NEUTRAL, Decision, ReasonCode

#: Version of the decision JSON contract (``schema_version`` in every report).
SCHEMA_VERSION = "1.0"
#: Decimal places of every float in a report.
FLOAT_DIGITS = 4
#: The JSON Schema of the decision and error documents (package data).
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "decision.schema.json"


def load_schema() -> dict[str, Any]:
    """The decision contract's JSON Schema (validate with e.g. ``jsonschema``)."""
    import json

    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))

#: Reasons that reject on a rule, whatever the progress of the answer (liveness score 0).
RULE_REASONS = frozenset({
    ReasonCode.MULTIPLE_FACES, ReasonCode.WRONG_EXPRESSION, ReasonCode.IDENTITY_CHANGED, ReasonCode.FACE_JUMP,
    ReasonCode.CANCELLED, ReasonCode.TOKEN_EXPIRED, ReasonCode.TOKEN_TAMPERED, ReasonCode.TOKEN_REUSED,
    ReasonCode.TOKEN_NOT_YET_VALID, ReasonCode.TOKEN_MALFORMED,
})


def rounded(value: Any, digits: int = FLOAT_DIGITS) -> Any:
    """``value`` with every float (in dicts, lists, tuples) rounded; NaN and inf become None."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar
        return rounded(value.item(), digits)
    return value


def _step_thresholds(decision: Decision) -> dict[str, float]:
    s = decision.settings
    out = {NEUTRAL: s.neutral_threshold}
    for name in (decision.challenge.expressions if decision.challenge else ()):
        out[name] = s.expression_threshold
    return out


def phase_frames(decision: Decision, phase: Any) -> list[Any]:
    """The trace entries that counted for ``phase`` (a :class:`PhaseRecord`), with expressions."""
    return [t for t in decision.trace
            if t.counted_for == phase.name and phase.first_frame <= t.index <= phase.last_frame and t.expressions]


def identity_score(distance: float | None, threshold: float) -> float | None:
    """1 - d / (2 t) clipped to [0, 1]: 0.5 on the threshold, 1 at distance 0 (None without a face)."""
    if distance is None:
        return None
    if threshold <= 0:
        return 1.0 if distance == 0 else 0.0
    return min(1.0, max(0.0, 1.0 - distance / (2.0 * threshold)))


def expression_margins(decision: Decision) -> dict[str, float]:
    """Per completed step: lowest probability of its expression on its counted frames minus
    its threshold (the step name → margin; a step asked twice keeps its lowest)."""
    thresholds = _step_thresholds(decision)
    out: dict[str, float] = {}
    for p in decision.phases:
        if not p.complete:
            continue
        probs = [t.expressions.get(p.name, 0.0) for t in phase_frames(decision, p)]
        if probs:
            m = min(probs) - thresholds.get(p.name, decision.settings.expression_threshold)
            out[p.name] = min(m, out.get(p.name, m))
    return out


def _identity_distance(decision: Decision) -> float | None:
    counted = [t.identity_distance for t in decision.trace
               if t.counted_for is not None and t.identity_distance is not None]
    if counted:
        return max(counted)
    seen = [t.identity_distance for t in decision.trace
            if t.faces and t.identity_distance is not None and t.state != "waiting"]
    return statistics.median(seen) if seen else None


def decision_scores(decision: Decision) -> dict[str, Any]:
    """``score``, ``scores`` (identity, liveness) and ``margins`` of a decision (see the module)."""
    thr = decision.settings.identity_threshold
    distance = _identity_distance(decision)
    identity = identity_score(distance, thr)
    margins_expr = expression_margins(decision)
    steps = 1 + (len(decision.challenge.expressions) if decision.challenge else 0)
    if set(decision.codes) & RULE_REASONS:
        liveness = 0.0
    elif decision.accepted:
        thresholds = _step_thresholds(decision)
        shares = [margins_expr[n] / max(1e-6, 1.0 - thresholds[n]) for n in margins_expr]
        liveness = 0.5 + 0.5 * min(1.0, max(0.0, min(shares))) if shares else 0.5
    else:
        s = decision.settings
        done = sum(1 for p in decision.phases if p.complete)
        partial = [p for p in decision.phases if not p.complete]
        share = 0.0
        if partial:
            needed = s.neutral_min_frames if partial[-1].name == NEUTRAL else s.expression_min_frames
            share = min(partial[-1].frames / needed, 0.99)
        liveness = min(0.5 * (done + share) / steps, 0.4999)
    if decision.accepted:
        score = min(liveness, 1.0 if identity is None else identity)
    else:
        score = min(liveness, 0.4999, 1.0 if identity is None else identity)
    return {
        "score": score,
        "scores": {"identity": identity, "liveness": liveness},
        "margins": {
            "identity": None if distance is None else thr - distance,
            "expressions": margins_expr,
        },
    }


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "mean": sum(values) / len(values)}


def identity_section(decision: Decision, reference: Any = None) -> dict[str, Any]:
    """Identity distances: per phase (counted frames), over counted frames, over all faces."""
    threshold = decision.settings.identity_threshold
    counted = [t.identity_distance for t in decision.trace
               if t.counted_for is not None and t.identity_distance is not None]
    seen = [t.identity_distance for t in decision.trace
            if t.faces and t.identity_distance is not None and t.state != "waiting"]
    with_face = [t for t in decision.trace if t.faces and t.state != "waiting"]
    return {
        "reference": reference,
        "threshold": threshold,
        "metric": "squared L2 between unit embeddings (match when <= threshold)",
        "phases": [
            {"name": p.name, "max": p.max_distance, "mean": p.mean_distance, "complete": p.complete}
            for p in decision.phases
        ],
        "counted_frames": _summary(counted),
        "all_frames": _summary(seen),
        "frames_with_face": len(with_face),
        "matched_frames": sum(1 for t in with_face if t.identity_match),
    }


def liveness_section(decision: Decision) -> dict[str, Any]:
    """Required steps, the phases seen with frame ranges, and how far the answer got."""
    required = [NEUTRAL, *(decision.challenge.expressions if decision.challenge else ())]
    done = sum(1 for p in decision.phases if p.complete)
    return {
        "required": required,
        "completed_steps": done,
        "phases": [p.to_dict() for p in decision.phases],
        "settings": decision.settings.to_dict(),
    }


def decision_report(decision: Decision, *, frames_analyzed: int | None = None, fps: float | None = None,
                    reference: Any = None, token: Mapping[str, Any] | None = None, clip: str | None = None,
                    processing: Mapping[str, Any] | None = None, audit: Any = None,
                    outputs: Mapping[str, Any] | None = None,
                    include_trace: bool = False, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of one verification (the decision contract, :data:`SCHEMA_VERSION`).

    Args:
        decision: the engine's decision (or :meth:`Decision.rejected` for a token
            rejected before any frame was read).
        frames_analyzed: frames that went through the analyser (default: the trace length).
        fps: the analysed stream's frame rate (frames per second of source time).
        reference: what identity was checked against, e.g. ``{"identity": "alice",
            "gallery": "g.json"}`` or ``{"ref": "me.jpg"}``.
        token: the token's claims (``TokenClaims.to_dict()``) in the offline mode.
        clip: the clip or source the frames came from.
        processing: timings (``frames_per_second``, ``detect_seconds``, ...).
        audit: the audit images written, if any.
        outputs: other files written (``annotated``: path and codec, ``timeline``).
        include_trace: add the per-frame ``trace``.
        extra: more keys to add; they cannot replace the keys above.
    """
    challenge = decision.challenge.to_dict() if decision.challenge else None
    if challenge is not None:
        challenge["prompt"] = decision.challenge.prompt()
        if token is not None:
            challenge["token"] = dict(token)
    s = decision.settings
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "decision": decision.decision,
        **decision_scores(decision),
        "thresholds": {"identity": s.identity_threshold, "expression": s.expression_threshold,
                       "neutral": s.neutral_threshold},
        "reasons": [r.to_dict() for r in decision.reasons],
        "challenge": challenge,
        "identity": identity_section(decision, reference),
        "liveness": liveness_section(decision),
        "frames_analyzed": len(decision.trace) if frames_analyzed is None else int(frames_analyzed),
        "fps": None if fps is None else float(fps),
        "decided_at": decision.decided_at,
        "decided_frame": decision.decided_frame,
        "clip": None if clip is None else str(clip),
        "processing": None if processing is None else dict(processing),
        "audit": audit,
    }
    if outputs:
        report["outputs"] = dict(outputs)
    for key, value in (extra or {}).items():
        if key in report:
            raise ValueError(f"extra report key {key!r} would replace a standard key")
        report[key] = value
    if include_trace:
        report["trace"] = [t.to_dict() for t in decision.trace]
    return rounded(report)


def format_decision(decision: Decision) -> str:
    """A few lines for people: verdict and reasons, challenge, phases, identity."""
    lines = [f"{decision.decision.upper()}: " + "; ".join(r.message for r in decision.reasons)]
    sc = decision_scores(decision)
    parts = [f"{k} {v:.2f}" for k, v in sc["scores"].items() if v is not None]
    lines.append(f"  score: {sc['score']:.2f} ({', '.join(parts)}; accept at >= 0.5)")
    c = decision.challenge
    if c is not None:
        lines.append(f"  challenge: {c.prompt()} within {c.time_limit:.1f} s")
    if decision.phases:
        parts = []
        for p in decision.phases:
            span = f"frames {p.first_frame}-{p.last_frame} ({p.start:.2f}-{p.end:.2f} s)"
            parts.append(f"{p.name} {span}" + ("" if p.complete else " incomplete"))
        lines.append("  phases: " + ", ".join(parts))
    else:
        lines.append("  phases: none")
    ident = identity_section(decision)
    counted = ident["counted_frames"]
    if counted:
        lines.append(f"  identity: distance {counted['min']:.3f}-{counted['max']:.3f} on counted frames "
                     f"(match <= {ident['threshold']})")
    elif ident["all_frames"]:
        lines.append(f"  identity: {ident['matched_frames']}/{ident['frames_with_face']} frames matched "
                     f"(median distance {ident['all_frames']['median']:.3f}, match <= {ident['threshold']})")
    return "\n".join(lines)
