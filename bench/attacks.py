"""Presentation-attack suite on real footage: APCER and BPCER (ISO/IEC 30107-3).

Builds the attacks from ../shared/data/videos and runs each through the offline
verification pipeline (detector + network + challenge engine) against the enrolled
reference, then prints per-case decisions and

    APCER = attacks accepted / attacks       (must be 0)
    BPCER = genuine clips rejected / genuine clips

Attacks: (a) a still photo of the enrolled person, and jittered copies (shifts,
scaling, brightness); (b) a genuine Surprise clip replayed for a Happy challenge;
(c) a splice: the enrolled person's Neutral frames, then another person's expression;
(d) the clip without its Neutral start; (e) two faces in view; (f) tampered, expired
and reused challenge tokens; issue 19's: (g) the genuine frames declared at 120 fps,
(h) a still with a 3-frame surprise flash (30 and 120 fps), (i) the genuine clip
reversed, (j) a cross-fade from a neutral still to a surprise still of the same clip,
(k) a second face 20 px tall at 640x480, (l) the clip corrupt mid-stream, (m) an
impostor: d12 and d9 against d12.jpg and d9.jpg, which show other people (the
LivePortrait source photos, not the men in the clips). Genuine: d18, d12 and d9, each
against its own first frame (as bench/model_card.sh's verify-video rows), answering the
expression it shows. The engine-level harness (the same attacks on real tracks with scripted
labels, independent of the model's accuracy) is ``bench/engine_attacks.py``.

    .venv/bin/python bench/attacks.py [--model M.keras] [--stride 1] [--runtime auto|keras|onnx] [--precision fp32|int8]
        [--track N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facelivenet.auth.analyzer import FrameAnalyzer  # noqa: E402
from facelivenet.auth.challenge import ChallengeSettings  # noqa: E402
from facelivenet.auth.gallery import DetectorCropper, embed_faces  # noqa: E402
from facelivenet.auth.nonces import NonceStore  # noqa: E402
from facelivenet.auth.offline import authenticate_clip  # noqa: E402
from facelivenet.auth.tokens import issue_token  # noqa: E402
from facelivenet.errors import FaceLiveNetError  # noqa: E402
from facelivenet.runtime.inference import DEFAULT_RUNTIME, RUNTIMES, inference_backend  # noqa: E402
from facelivenet.runtime.tracking import TrackingDetector  # noqa: E402
from facelivenet.runtime.quantize import PRECISIONS  # noqa: E402
from facelivenet.video import VideoWriter, read_frames  # noqa: E402

VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"


@dataclass
class Case:
    name: str
    attack: bool
    clip: Path | None
    reference: str  # which reference embedding
    challenge: tuple[str, ...]
    token_attack: str | None = None


def write(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps, (w, h)) as out:
        for f in frames:
            out.write(f)
    return path


def jitter(img: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` frames of one still with small shifts, scaling and brightness changes."""
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        s = rng.uniform(0.97, 1.03)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-2, 2), s)
        m[:, 2] += rng.uniform(-6, 6, 2)
        f = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        out.append(np.clip(f.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8))
    return out


def build_cases(tmp: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    info18, d18 = read_frames(VIDEOS / "d18.mp4")
    fps = info18.fps
    frames18 = [f.image for f in d18]
    _, d12 = read_frames(VIDEOS / "d12.mp4")
    frames12 = [cv2.resize(f.image, (480, 480)) for f in d12]
    _, d20 = read_frames(VIDEOS / "d20.mp4")
    frames20 = [f.image for f in d20]
    still = frames18[0]
    cases = [
        Case("genuine d18: surprise", False, VIDEOS / "d18.mp4", "d18", ("surprise",)),
        Case("genuine d12: surprise", False, VIDEOS / "d12.mp4", "d12", ("surprise",)),
        Case("genuine d9: happy", False, VIDEOS / "d9.mp4", "d9", ("happy",)),
        Case("(m) impostor: d12 against d12.jpg", True, VIDEOS / "d12.mp4", "d12.jpg", ("surprise",)),
        Case("(m) impostor: d9 against d9.jpg", True, VIDEOS / "d9.mp4", "d9.jpg", ("happy",)),
        Case("(a) still photo", True, write(tmp / "still.mp4", [still] * 90, fps), "d18", ("surprise",)),
        Case("(a) still photo, jittered", True, write(tmp / "jitter.mp4", jitter(still, 90, rng), fps), "d18",
             ("surprise",)),
        Case("(a) still photo, jittered (happy)", True, write(tmp / "jitter_h.mp4", jitter(still, 90, rng), fps),
             "d18", ("happy",)),
        Case("(b) surprise clip replayed for happy", True, VIDEOS / "d18.mp4", "d18", ("happy",)),
        Case("(c) splice: d18 neutral + d12 expression", True,
             write(tmp / "splice.mp4", frames18[:60] + frames12[40:], fps), "d18", ("surprise",)),
        Case("(d) no neutral start", True, write(tmp / "no_neutral.mp4", frames18[75:150], fps), "d18",
             ("surprise",)),
        Case("(e) two faces in view", True,
             write(tmp / "two.mp4", [np.concatenate([a, b], axis=1) for a, b in zip(frames18, frames20)], fps),
             "d18", ("surprise",)),
    ]
    for attack in ("tampered", "expired", "reused"):
        cases.append(Case(f"(f) {attack} token", True, VIDEOS / "d18.mp4", "d18", ("surprise",), attack))
    peak = frames18[75]  # d18's surprise
    fade = [still] * 45 + [cv2.addWeighted(still, 1 - k / 9, peak, k / 9, 0) for k in range(10)] + [peak] * 30
    small = cv2.resize(frames12[0][100:420, 100:420], (34, 34), interpolation=cv2.INTER_AREA)  # face ~20 px
    with_small = []
    for f in frames18:
        big = cv2.resize(f, (640, 480))
        big[20:54, 590:624] = small
        with_small.append(big)
    corrupt = write(tmp / "corrupt.mp4", frames18, fps)
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 3: 2 * len(data) // 3] = bytes(2 * len(data) // 3 - len(data) // 3)
    corrupt.write_bytes(bytes(data))
    cases += [
        Case("(g) genuine frames declared at 120 fps", True, write(tmp / "fast.mp4", frames18, 120.0), "d18",
             ("surprise",)),
        Case("(h) still + 3-frame surprise flash, 30 fps", True,
             write(tmp / "flash30.mp4", [still] * 45 + [peak] * 3 + [still] * 30, 30.0), "d18", ("surprise",)),
        Case("(h) still + 3-frame surprise flash, 120 fps", True,
             write(tmp / "flash120.mp4", [still] * 90 + [peak] * 3 + [still] * 30, 120.0), "d18", ("surprise",)),
        Case("(i) genuine clip reversed", True, write(tmp / "reversed.mp4", frames18[::-1], fps), "d18",
             ("surprise",)),
        Case("(j) cross-fade neutral still -> surprise still", True, write(tmp / "fade.mp4", fade, fps), "d18",
             ("surprise",)),
        Case("(k) second face 20 px at 640x480", True, write(tmp / "small.mp4", with_small, fps), "d18",
             ("surprise",)),
        Case("(l) clip corrupt mid-stream", True, corrupt, "d18", ("surprise",)),
    ]
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                    help="inference runtime (facelivenet.runtime; default: %(default)s)")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32", help="network precision (onnx only)")
    ap.add_argument("--track", type=int, default=0, help="full detection every N frames, tracking between (0: off)")
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        raise SystemExit(f"{VIDEOS}: the shared videos are needed for the attack suite")

    backend = inference_backend(args.runtime, args.model, precision=args.precision)
    model = backend.model
    detector = TrackingDetector(backend.detector, args.track) if args.track else backend.detector
    analyzer = FrameAnalyzer(model, detector)
    settings = ChallengeSettings.for_model(model.config)
    cropper = DetectorCropper.for_model(model.config, backend.detector)
    refs = {name: embed_faces(model, [read_frames(VIDEOS / f"{name}.mp4", max_frames=1)[1][0].image], cropper)
            for name in ("d18", "d12", "d9")}
    refs.update({f"{name}.jpg": embed_faces(model, [str(VIDEOS / f"{name}.jpg")], cropper) for name in ("d12", "d9")})
    key = os.urandom(32)
    print(f"model {model.source} on {backend.runtime} ({backend.precision}), tracking {args.track or 'off'}; "
          f"identity threshold {settings.identity_threshold}, "
          f"expression threshold {settings.expression_threshold}")
    with tempfile.TemporaryDirectory() as tmp:
        nonces = NonceStore(Path(tmp) / "nonces.sqlite3")
        cases = build_cases(Path(tmp))
        rows = []
        for case in cases:
            t = time.perf_counter()
            if args.track:
                detector.reset()  # a new clip: nothing to follow yet
            if case.token_attack:
                accepted, why = token_case(case, key, nonces, settings, analyzer, refs)
            else:
                try:
                    r = authenticate_clip(case.clip, analyzer, refs[case.reference], settings=settings,
                                          challenge=case.challenge, stride=args.stride)
                    accepted, why = r.decision.accepted, ", ".join(r.decision.codes)
                except FaceLiveNetError as exc:  # refused as input (an error, exit 2): not accepted
                    accepted, why = False, f"error: {exc}"
            rows.append((case, accepted))
            verdict = "ACCEPT" if accepted else "reject"
            print(f"  {'attack ' if case.attack else 'genuine'} {case.name:<42} {verdict:<7} {why} "
                  f"({time.perf_counter() - t:.1f} s)")
    by_type: dict[str, list[bool]] = {}
    for c, a in rows:
        if c.attack:
            by_type.setdefault(c.name.split(")")[0] + ")", []).append(a)
    print("\n| attack type | attacks | accepted | APCER |\n|---|---|---|---|")
    for kind, accepted in sorted(by_type.items()):
        print(f"| {kind} | {len(accepted)} | {sum(accepted)} | {sum(accepted) / len(accepted):.2f} |")
    attacks = [a for c, a in rows if c.attack]
    genuine = [a for c, a in rows if not c.attack]
    apcer = sum(attacks) / len(attacks)
    bpcer = sum(1 for a in genuine if not a) / len(genuine)
    print(f"\nAPCER {apcer:.3f} ({sum(attacks)}/{len(attacks)} attacks accepted); "
          f"BPCER {bpcer:.3f} ({sum(1 for a in genuine if not a)}/{len(genuine)} genuine clips rejected)")


def token_case(case: Case, key: bytes, nonces: NonceStore, settings, analyzer, refs) -> tuple[bool, str]:
    """A genuine clip presented with a bad token: the token decides before any frame."""
    if case.token_attack == "expired":
        token, _ = issue_token(key, case.challenge, 1, 60, clock=lambda: time.time() - 3600)
    else:
        token, _ = issue_token(key, case.challenge, 1, 60)
    if case.token_attack == "tampered":
        token = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    if case.token_attack == "reused":  # the token answered one clip already
        authenticate_clip(case.clip, analyzer, refs[case.reference], settings=settings, token=token, key=key,
                          nonces=nonces)
    r = authenticate_clip(case.clip, analyzer, refs[case.reference], settings=settings, token=token, key=key,
                          nonces=nonces)
    return r.decision.accepted, ", ".join(r.decision.codes)


if __name__ == "__main__":
    main()
