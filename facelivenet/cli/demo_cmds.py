"""``facelivenet demo``: the main job on real, redistributable face media, or live on a camera.

The photo-attack demo uses scikit-image's public-domain astronaut portrait (see
:mod:`facelivenet.auth.demo`); everything else is the machinery of ``verify-video``
(enrolment from a photo, the offline engine, the timeline and annotated clip) and of
``realtime`` (the live loop), imported from :mod:`facelivenet.cli.verify_cmds`.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from facelivenet.cli.common import (
    EXIT_OK, EXIT_REJECT, CliError, InputFile, Command, emit, json_option, model_option, quiet_option,
)
from facelivenet.cli.verify_cmds import (
    analyze_clip, challenge_settings, detect_size_option, load_reference, threshold_options, write_annotated,
    write_timeline,
)

#: Where the photo-attack demo writes, relative to the current directory.
DEFAULT_OUT = "facelivenet-demo"
REFERENCE_PNG = "reference.png"
ATTACK_MP4 = "photo-attack.mp4"
ANNOTATED_MP4 = "annotated.mp4"
TIMELINE_PNG = "timeline.png"
#: The photo attack's length and frame rate.
ATTACK_SECONDS = 4.0
ATTACK_FPS = 25.0
#: Live sources (cameras, streams): how long to look for the face to enrol.
ENROLL_SECONDS = 10.0


@click.command("demo", cls=Command)
@click.option("--out", "out_dir", type=click.Path(), default=None, metavar="DIR",
              help=f"Folder the photo-attack demo writes {REFERENCE_PNG}, {ATTACK_MP4}, {ANNOTATED_MP4} and "
                   f"{TIMELINE_PNG} to (created; files in it are replaced). Default: ./{DEFAULT_OUT}/")
@click.option("--source", metavar="SRC", help="Run the live challenge for you instead: camera index (0), video file or URL.")
@click.option("--ref", "ref_image", type=InputFile("image"), metavar="IMAGE",
              help="With --source: a reference photo of the person (one face). Default: enrol from the "
                   "source's first frame that shows exactly one face.")
@click.option("--challenge", "challenge_spec", metavar="EXPR[,EXPR]",
              help="A fixed challenge, e.g. happy or happy,surprise (default: one expression drawn at random "
                   "from --expressions).")
@click.option("--expressions", default="happy,surprise", show_default=True, metavar="EXPR,EXPR",
              help="Expressions the random challenge is drawn from.")
@model_option
@click.option("--headless", is_flag=True,
              help="With --source: no window, progress on stderr (the default when there is no display).")
@threshold_options
@detect_size_option
@json_option
@quiet_option
def demo(out_dir, source, ref_image, challenge_spec, expressions, model_path, headless, threshold,
         expression_threshold, detect_size, as_json, quiet):
    """See facelivenet catch a photo attack, on a real face (or try the live challenge).

    Without --source: enrols the person on scikit-image's public-domain astronaut
    portrait (skimage.data.astronaut()) from the photo, films that photo the way a
    fraudster would hold it up to a camera (moved, zoomed and tilted slightly for 4 s),
    issues a random expression challenge and runs the challenge-response on the clip.
    The face is the enrolled one, but a photo cannot go from Neutral to the expression:
    the expected outcome is REJECT, with its reasons. The photo, the attack clip, the
    annotated clip and the expression/identity timeline are written to --out,
    by default the folder facelivenet-demo in the current directory.

    With --source 0 (a camera), a video file or a URL: the live challenge for you, in a
    window (or headless, printing progress on stderr). The reference is --ref, or
    else the first frame of the source showing exactly one face; the challenge is then
    judged on the frames after it. That is a demo convenience, not an enrolment
    procedure (enrol from a trusted photo: --ref, or `facelivenet enroll`).

    Exit code 0 = accept, 1 = reject (the expected outcome of the photo attack),
    2 = error.
    """
    thresholds = {"threshold": threshold, "expression_threshold": expression_threshold}
    if source is None:
        for given, name in ((ref_image, "--ref"), (headless, "--headless")):
            if given:
                raise CliError(f"{name} is for the live demo (--source); the photo-attack demo enrols the "
                               "astronaut photo and opens no window")
        _photo_attack_demo(Path(out_dir or DEFAULT_OUT), challenge_spec, expressions, model_path, detect_size,
                           as_json, quiet, thresholds)
    else:
        if out_dir is not None:
            raise CliError("--out is for the photo-attack demo; the live demo (--source) writes no files")
        _live_demo(source, ref_image, challenge_spec, expressions, model_path, headless, detect_size, as_json,
                   quiet, thresholds)


def _challenge_choice(challenge_spec: str | None, expressions: str) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(the expressions to draw from, the fixed sequence or None), both validated."""
    from facelivenet.auth.challenge import parse_expression_list
    from facelivenet.auth.offline import parse_challenge_sequence

    choices = parse_expression_list(expressions)
    return choices, (parse_challenge_sequence(challenge_spec) if challenge_spec else None)


def _load(model_path, choices, sequence, thresholds):
    """The model and its engine settings; the challenge's expressions checked against its classes."""
    from facelivenet.api import load_model
    from facelivenet.auth.challenge import Challenge, check_expression_classes

    model = load_model(model_path)
    settings = challenge_settings(model, **thresholds)
    for wanted in ([sequence] if sequence else [(c,) for c in choices]):
        check_expression_classes(Challenge.for_clip(wanted, settings.time_limit), model.expression_classes)
    return model, settings


def identity_summary(decision) -> dict[str, Any]:
    """Median identity distance of the tracked face over every frame that had one, vs the threshold."""
    threshold = float(decision.settings.identity_threshold)
    d = [t.identity_distance for t in decision.trace
         if t.identity_distance is not None and math.isfinite(t.identity_distance)]
    median = float(statistics.median(d)) if d else None
    return {"median_distance": median, "threshold": threshold, "frames": len(d),
            "matches": median is not None and median <= threshold}


def _identity_line(summary: dict[str, Any], whom: str) -> str:
    if summary["median_distance"] is None:
        return f"identity: no face was compared with {whom}"
    verdict = "matches" if summary["matches"] else "does not match"
    sign = "<=" if summary["matches"] else ">"
    return (f"identity: {verdict} {whom} (median distance {summary['median_distance']:.3f} {sign} "
            f"{summary['threshold']:.3f} over {summary['frames']} frames)")


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: exists and is not a folder (--out names the folder the demo writes to)")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from facelivenet.utils import atomic_path

    try:
        with atomic_path(path) as tmp:
            Image.fromarray(rgb).save(tmp, format="PNG")
    except OSError as exc:
        raise CliError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _photo_attack_demo(out: Path, challenge_spec, expressions, model_path, detect_size, as_json, quiet, thresholds):
    from facelivenet.auth.analyzer import FrameAnalyzer
    from facelivenet.auth.challenge import Challenge, issue_challenge
    from facelivenet.auth.decision import decision_report, format_decision
    from facelivenet.auth.demo import astronaut_photo, write_photo_attack

    def say(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    _prepare_out_dir(out)
    choices, sequence = _challenge_choice(challenge_spec, expressions)
    model, settings = _load(model_path, choices, sequence, thresholds)
    if sequence is None:  # drawn with `secrets`, like a live challenge
        sequence = issue_challenge(choices, settings=settings).expressions
    challenge = Challenge.for_clip(sequence, settings.time_limit)
    photo = astronaut_photo()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    files = {key: out / name for key, name in (("reference", REFERENCE_PNG), ("photo_attack", ATTACK_MP4),
                                               ("annotated", ANNOTATED_MP4), ("timeline", TIMELINE_PNG))}
    say(f"demo: writing to {out}/")
    say(f"  {REFERENCE_PNG}: the enrolled person's photo (scikit-image's public-domain astronaut portrait)")
    _write_png(files["reference"], photo)
    frames = write_photo_attack(files["photo_attack"], photo, ATTACK_SECONDS, ATTACK_FPS)
    say(f"  {ATTACK_MP4}: that photo held up to a camera and moved slightly "
        f"({frames} frames, {ATTACK_SECONDS:g} s at {ATTACK_FPS:g} frames/s)")
    say("enrolling the person from the photo")
    reference, ref_info = load_reference(model, None, None, str(files["reference"]))
    say(f"challenge: {challenge.prompt()} within {challenge.time_limit:.0f} s; running it on the photo attack")
    analyzer = FrameAnalyzer(model, detect_max_side=detect_size or None)
    result = analyze_clip(files["photo_attack"], analyzer, reference, challenge, settings, quiet=quiet)
    decision = result.decision
    write_timeline(files["timeline"], result, decision, settings)
    write_annotated(files["annotated"], files["photo_attack"], result, decision, settings, 1)
    say(f"  {ANNOTATED_MP4}, {TIMELINE_PNG}: the clip as analysed, and the expression/identity timeline")
    identity = identity_summary(decision)
    report = decision_report(
        decision, frames_analyzed=result.frames_analyzed, fps=result.info.fps, reference=ref_info,
        clip=str(files["photo_attack"]),
        extra={"demo": {"mode": "photo-attack", "out": str(out),
                        "files": {k: str(v) for k, v in files.items()},
                        "photo": "skimage.data.astronaut() (public domain)", "identity": identity}},
    )
    emit(report, as_json, lambda _: "\n".join([
        format_decision(decision),
        _identity_line(identity, "the enrolled photo"),
        f"files in {out}/: " + ", ".join(p.name for p in files.values()),
    ]))
    sys.exit(EXIT_OK if decision.accepted else EXIT_REJECT)


def _enroll_from_source(frames, analyzer, info) -> tuple[np.ndarray, dict[str, Any]]:
    """The embedding of the first frame showing exactly one face (consumed from ``frames``)."""
    for frame in frames:
        if info.live and frame.timestamp > ENROLL_SECONDS:
            break
        faces = analyzer.analyze(frame.image).faces
        if len(faces) == 1:
            click.echo(f"enrolled the person from frame {frame.index} (t={frame.timestamp:.2f} s) of "
                       f"{info.source}, the first showing exactly one face; the challenge is judged on the "
                       "frames after it (a demo convenience, not an enrolment procedure: use --ref PHOTO)",
                       err=True)
            return (np.asarray(faces[0].embedding, np.float32)[None, :],
                    {"source": info.source, "frame": frame.index, "t": round(frame.timestamp, 3)})
    within = f" in its first {ENROLL_SECONDS:g} s" if info.live else ""
    raise CliError(f"{info.source}: no frame{within} shows exactly one face to enrol (give a photo with --ref)")


def _live_demo(source, ref_image, challenge_spec, expressions, model_path, headless, detect_size, as_json,
               quiet, thresholds):
    from facelivenet.auth.analyzer import FrameAnalyzer
    from facelivenet.auth.decision import decision_report, format_decision
    from facelivenet.auth.realtime import Window, display_available, run_live
    from facelivenet.video import VideoSource

    choices, sequence = _challenge_choice(challenge_spec, expressions)
    model, settings = _load(model_path, choices, sequence, thresholds)
    if ref_image:
        reference, ref_info = load_reference(model, None, None, ref_image)
    analyzer = FrameAnalyzer(model, detect_max_side=detect_size or None)
    src = VideoSource(source)
    with src:
        frames = iter(src)
        if not ref_image:
            if src.info.live:
                click.echo(f"enrolling: look at {src.info.source}", err=True)
            reference, ref_info = _enroll_from_source(frames, analyzer, src.info)
        window = None
        if not headless:
            if not display_available():
                click.echo("no display: running headless", err=True)
            else:
                try:
                    window = Window(threshold=settings.identity_threshold)
                except Exception as exc:  # OpenCV without GUI support
                    click.echo(f"cannot open a window ({str(exc).splitlines()[0][:120]}): running headless",
                               err=True)

        def on_event(event):
            if event["event"] == "challenge":
                click.echo(f"challenge: {event['prompt']} within {settings.time_limit:.0f} s", err=True)
            elif event["event"] == "state" and window is None and not quiet:
                what = f"awaiting {event['awaiting']}" if event["awaiting"] else event["state"]
                faces = f"{event['faces']} face" + ("" if event["faces"] == 1 else "s")
                click.echo(f"  t={event['t']:.2f} s: {what} ({faces} in view)", err=True)

        decision = run_live(frames, analyzer, reference, settings, choices=choices, sequence=sequence,
                            on_event=on_event, window=window)
    identity = identity_summary(decision)
    whom = "the enrolled photo" if ref_image else f"the face enrolled from frame {ref_info['frame']}"
    report = decision_report(
        decision, frames_analyzed=len(decision.trace), fps=None if src.info.live else src.info.fps,
        reference=ref_info, clip=src.info.source,
        extra={"demo": {"mode": "live", "source": src.info.source,
                        "enrollment": "reference photo" if ref_image else "first frame with one face",
                        "identity": identity}},
    )
    emit(report, as_json, lambda _: format_decision(decision) + "\n" + _identity_line(identity, whom))
    sys.exit(EXIT_OK if decision.accepted else EXIT_REJECT)
