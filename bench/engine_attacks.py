"""Engine-level attack harness: real clips' tracks replayed with scripted expression labels.

Each genuine clip (d18 Surprise, d9 Happy, d12 Surprise; reference: its first frame) is
analysed once: per frame its faces' boxes and identity distances (the real detector
and network), and a label, Neutral or the clip's expression. The labels are the
model's per-frame choice between the two, smoothed (runs under 5 frames merged into
the one before), then shown to the engine with probability 0.9: the engine sees what
a perfect expression classifier would say, so each defence is tested on its own,
whatever the model's accuracy. The attacks transform these real tracks the way the
attack transforms the clip, and go through what ``verify_clip`` runs after the
network (the clip's timing checks, then the challenge engine):

- retimed: the genuine frames declared at 120 fps (the clip lasts a quarter as long);
- restamped: the genuine frames, the expression's frames stamped 0.1 s apart (30 fps declared);
- flash: a neutral frame as a still for 1 s, then a 3-frame expression flash, at 30 and 120 fps;
- reversed: the genuine frames in reverse order (a replay, re-timed from 0);
- cross-fade: a neutral still then an expression still of the same clip, 10 blended frames between;
- splice: d18's first 40 frames, then d12's frames showing surprise (distances to d18's reference);
- second face: the genuine track with a small second face every 5th frame (what the
  full-resolution check finds);
- truncated: decoding stops before the expression's first frame (declared count kept):
  a reject either way, the point is its reason (``clip_corrupt``, not a silent ``incomplete``).

Prints each case and a table of APCER per attack type and BPCER on the genuine tracks,
with the rules of this branch and (``before``) without the clip checks and with an
expression held 0 s (main's rules before issue 19, the identity rule aside).

    .venv/bin/python bench/engine_attacks.py [--model M.keras]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from facelivenet.api import load_model  # noqa: E402
from facelivenet.auth.analyzer import FrameAnalyzer  # noqa: E402
from facelivenet.auth.challenge import (  # noqa: E402
    Challenge, ChallengeEngine, ChallengeSettings, FaceObservation, FrameObservation,
)
from facelivenet.auth.clipcheck import ClipTiming  # noqa: E402
from facelivenet.video import VideoInfo, VideoSource  # noqa: E402

VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENUINE = (("d18", "surprise"), ("d9", "happy"), ("d12", "surprise"))


@dataclass
class Frame:
    """One analysed frame of a track: faces as (box, embedding), and the scripted label."""

    t: float
    faces: list[tuple[tuple[float, ...], np.ndarray]]
    label: str


@dataclass
class Track:
    name: str
    expression: str
    fps: float
    frames: list[Frame]
    reference: np.ndarray
    declared: int | None = None  # frame count the header declares (default: len(frames))


def analyse(analyzer: FrameAnalyzer, name: str, expression: str) -> Track:
    src = VideoSource(VIDEOS / f"{name}.mp4")
    fps = src.info.fps
    frames, probs = [], []
    images = []
    for f in src:
        images.append((f.timestamp, f.image))
    classes = list(analyzer.model.expression_classes)
    for k in range(0, len(images), 32):
        chunk = images[k:k + 32]
        for (t, _), fa in zip(chunk, analyzer.analyze_batch([im for _, im in chunk])):
            frames.append(Frame(t, [(f.box, f.embedding) for f in fa.faces], "neutral"))
            p = fa.faces[0].expressions if fa.faces else None
            probs.append(None if p is None else (p[classes.index("neutral")], p[classes.index(expression)]))
    labels = [expression if p is not None and p[1] > p[0] else "neutral" for p in probs]
    labels = _smooth(labels, 5)
    for f, label in zip(frames, labels):
        f.label = label
    first = next(f for f in frames if f.faces)
    return Track(name, expression, fps, frames, first.faces[0][1][None])


def _smooth(labels: list[str], min_run: int) -> list[str]:
    out = list(labels)
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j] == out[i]:
            j += 1
        if j - i < min_run and i > 0:
            out[i:j] = [out[i - 1]] * (j - i)
        i = j
    return out


def replay(track: Track, settings: ChallengeSettings, *, checks: bool = True) -> tuple[bool, tuple[str, ...]]:
    """What verify_clip does after the network: the clip checks, then the engine."""
    n = len(track.frames)
    info = VideoInfo(track.name, track.fps, 640, 480, track.declared or n, False, track.fps)
    timing = ClipTiming(info)
    engine = ChallengeEngine(Challenge.for_clip((track.expression,), settings.time_limit), settings)
    refused = timing.declared() if checks else None
    if refused is not None:
        engine.refuse(refused, 0.0)
        return False, engine.finish(0.0).codes
    last = 0.0
    for i, f in enumerate(track.frames):
        if checks:
            refused = timing.frame(i, f.t)
            if refused is not None:
                engine.refuse(refused, f.t, i)
                break
        faces = []
        for box, emb in f.faces:
            d = float(np.min(np.sum((track.reference - emb[None]) ** 2, axis=1)))
            probs = {c: (0.9 if c == f.label else 0.1 / 6) for c in CLASSES}
            faces.append(FaceObservation(box, d, probs))
        engine.observe(FrameObservation(f.t, faces, index=i))
        last = f.t
        if engine.decided:
            break
    if checks and not engine.decided:
        corrupt = timing.ended(len(track.frames))
        if corrupt is not None:
            engine.refuse(corrupt, last)
    d = engine.finish(last + 1 / track.fps)
    return d.accepted, d.codes


def _retimed(t: Track, fps: float, name: str) -> Track:
    frames = [Frame(i / fps, f.faces, f.label) for i, f in enumerate(t.frames)]
    return Track(name, t.expression, fps, frames, t.reference)


def attacks(tracks: dict[str, Track]) -> list[tuple[str, Track]]:
    out = []
    for t in tracks.values():
        out.append(("retimed to 120 fps", _retimed(t, 120.0, f"{t.name} at 120 fps")))
        # restamped: the expression's frames 0.1 s apart, the rest at the declared rate
        frames, now = [], 0.0
        for i, f in enumerate(t.frames):
            frames.append(Frame(now, f.faces, f.label))
            now += 0.1 if f.label == t.expression else 1 / t.fps
        out.append(("restamped (VFR lie)", Track(f"{t.name} restamped", t.expression, t.fps, frames, t.reference)))
        rev = list(reversed(t.frames))
        out.append(("reversed replay", Track(f"{t.name} reversed", t.expression, t.fps,
                                             [Frame(i / t.fps, f.faces, f.label) for i, f in enumerate(rev)],
                                             t.reference)))
        still = next(f for f in t.frames if f.faces and f.label == "neutral")
        expr = [f for f in t.frames if f.faces and f.label == t.expression]
        if expr:
            peak = expr[len(expr) // 2]
            seq = ([Frame(0, still.faces, "neutral")] * 30
                   + [Frame(0, still.faces if k < 5 else peak.faces, "neutral" if k < 5 else t.expression)
                      for k in range(10)]
                   + [Frame(0, peak.faces, t.expression)] * 30)
            out.append(("cross-fade of two stills", _retimed(
                Track(f"{t.name} cross-fade", t.expression, 30.0, seq, t.reference), 30.0, f"{t.name} cross-fade")))
        for fps in (30.0, 120.0):
            seq = ([Frame(0, still.faces, "neutral")] * int(fps) + [Frame(0, still.faces, t.expression)] * 3
                   + [Frame(0, still.faces, "neutral")] * 30)
            out.append((f"3-frame flash at {fps:g} fps", _retimed(
                Track(f"{t.name} flash", t.expression, fps, seq, t.reference), fps, f"{t.name} flash {fps:g} fps")))
        frames = []
        for i, f in enumerate(t.frames):
            faces = list(f.faces)
            if i % 5 == 0 and faces:
                x1, y1 = faces[0][0][0], faces[0][0][1]
                faces.append(((x1 - 60, y1, x1 - 40, y1 + 20), faces[0][1]))
            frames.append(Frame(f.t, faces, f.label))
        out.append(("small second face", Track(f"{t.name} + small face", t.expression, t.fps, frames, t.reference)))
        first_expr = next((i for i, f in enumerate(t.frames) if f.label == t.expression), len(t.frames))
        cut = t.frames[:first_expr]
        out.append(("stops decoding before the expression", Track(f"{t.name} truncated", t.expression, t.fps, cut, t.reference,
                                                    declared=len(t.frames))))
    d18, d12 = tracks["d18"], tracks["d12"]
    other = [Frame(0, f.faces, "surprise") for f in d12.frames if f.faces][:60]
    seq = [Frame(0, f.faces, "neutral") for f in d18.frames[:40]] + other
    out.append(("splice of two people", _retimed(Track("d18 + d12", "surprise", 30.0, seq, d18.reference),
                                                 30.0, "d18 neutral + d12 surprise")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        raise SystemExit(f"{VIDEOS}: the shared videos are needed")
    model = load_model(args.model)
    analyzer = FrameAnalyzer(model)
    now = ChallengeSettings.for_model(model.config)
    before = now.replace(expression_min_duration=0.0)
    tracks = {name: analyse(analyzer, name, expr) for name, expr in GENUINE}
    rows = []
    for t in tracks.values():
        rows.append(("genuine", t.name, replay(t, now), replay(t, before, checks=False)))
    for kind, t in attacks(tracks):
        rows.append((kind, t.name, replay(t, now), replay(t, before, checks=False)))
    for kind, name, (acc, codes), (acc0, _) in rows:
        print(f"  {kind:<26} {name:<28} {'ACCEPT' if acc else 'reject':<7} {','.join(codes):<40} "
              f"before: {'ACCEPT' if acc0 else 'reject'}")
    print("\n| case | n | accepted now | rate now | accepted before | rate before |")
    print("|---|---|---|---|---|---|")
    kinds = list(dict.fromkeys(k for k, *_ in rows))
    for kind in kinds:
        sel = [r for r in rows if r[0] == kind]
        a, a0 = sum(r[2][0] for r in sel), sum(r[3][0] for r in sel)
        if kind == "genuine":
            print(f"| genuine (BPCER: rejected) | {len(sel)} | {len(sel) - a} rejected | {(len(sel) - a) / len(sel):.2f} "
                  f"| {len(sel) - a0} rejected | {(len(sel) - a0) / len(sel):.2f} |")
        else:
            print(f"| {kind} (APCER) | {len(sel)} | {a} | {a / len(sel):.2f} | {a0} | {a0 / len(sel):.2f} |")


if __name__ == "__main__":
    main()
