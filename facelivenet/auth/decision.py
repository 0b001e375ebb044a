"""Turning a :class:`~facelivenet.auth.challenge.Decision` into reports.

:func:`decision_report` builds the JSON document ``verify-video --json`` prints (keys
``decision``, ``reasons``, ``challenge``, ``identity``, ``liveness``,
``frames_analysed``, ``fps``; optionally ``trace``); :func:`format_decision` the
human summary.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping

from facelivenet.auth.challenge import NEUTRAL, Decision


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
    required = [NEUTRAL, *decision.challenge.expressions]
    done = sum(1 for p in decision.phases if p.complete)
    return {
        "required": required,
        "completed_steps": done,
        "phases": [p.to_dict() for p in decision.phases],
        "settings": decision.settings.to_dict(),
    }


def decision_report(decision: Decision, *, frames_analysed: int | None = None, fps: float | None = None,
                    reference: Any = None, token: Mapping[str, Any] | None = None,
                    include_trace: bool = False, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of one verification.

    Args:
        decision: the engine's decision (or :meth:`Decision.rejected` for a token
            rejected before any frame was read).
        frames_analysed: frames that went through the analyser (default: the trace length).
        fps: the analysed stream's frame rate (frames per second of source time).
        reference: what identity was checked against, e.g. ``{"identity": "alice",
            "gallery": "g.json"}`` or ``{"ref": "me.jpg"}``.
        token: the token's claims (``TokenClaims.to_dict()``) in the offline mode.
        include_trace: add the per-frame ``trace``.
        extra: more keys to add (e.g. timings); they cannot replace the keys above.
    """
    challenge = decision.challenge.to_dict()
    challenge["prompt"] = decision.challenge.prompt()
    if token is not None:
        challenge["token"] = dict(token)
    report: dict[str, Any] = {
        "decision": decision.decision,
        "reasons": [r.to_dict() for r in decision.reasons],
        "challenge": challenge,
        "identity": identity_section(decision, reference),
        "liveness": liveness_section(decision),
        "frames_analysed": len(decision.trace) if frames_analysed is None else int(frames_analysed),
        "fps": None if fps is None else float(fps),
        "decided_at": decision.decided_at,
        "decided_frame": decision.decided_frame,
    }
    for key, value in (extra or {}).items():
        if key in report:
            raise ValueError(f"extra report key {key!r} would replace a standard key")
        report[key] = value
    if include_trace:
        report["trace"] = [t.to_dict() for t in decision.trace]
    return report


def format_decision(decision: Decision) -> str:
    """A few lines for people: verdict and reasons, challenge, phases, identity."""
    lines = [f"{decision.decision.upper()}: " + "; ".join(r.message for r in decision.reasons)]
    c = decision.challenge
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
