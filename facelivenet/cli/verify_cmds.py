"""``facelivenet verify-video``: the offline challenge-response authentication of a clip."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import numpy as np

from facelivenet.cli.common import (
    EXIT_OK, EXIT_REJECT, CliError, InputFile, Command, challenge_draw, challenge_draw_options, emit, json_option,
    model_option, precision_option, progress_bar, quiet_option, runtime_option,
)


def detect_size_option(func):
    """``--detect-size N``: longest side of the frame the detector sees (0 = full size)."""
    from facelivenet.config import DETECT_MAX_SIDE

    return click.option(
        "--detect-size", type=click.IntRange(0), default=DETECT_MAX_SIDE, show_default=True,
        help="Detect faces on the frame downscaled to this longest side (faster; boxes are mapped "
             "back and faces cut from the full frame). 0 = full resolution, for small faces.",
    )(func)


def threshold_options(func):
    """``--threshold D`` and ``--expression-threshold P``: the decision thresholds (default: the model's)."""
    func = click.option("--expression-threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
                        help="Probability at which a frame shows Neutral or an expression "
                             "(default: the model's expression_threshold, and its neutral_threshold for Neutral).")(func)
    func = click.option("--threshold", type=click.FloatRange(0, 4), default=None,
                        help="Identity threshold: squared L2 distance between unit embeddings at or below "
                             "which the face is the reference's person (default: the model's, see `info`).")(func)
    return func


def challenge_settings(model, *, time_limit=None, threshold=None, expression_threshold=None):
    """The engine's settings for ``model`` with the command-line overrides."""
    from facelivenet.auth.challenge import ChallengeSettings

    overrides = {}
    if time_limit:
        overrides["time_limit"] = time_limit
    if threshold is not None:
        overrides["identity_threshold"] = threshold
    if expression_threshold is not None:
        overrides["expression_threshold"] = overrides["neutral_threshold"] = expression_threshold
    return ChallengeSettings.for_model(model.config, **overrides)


def reference_options(func):
    """``--gallery F --identity NAME`` or ``--ref IMAGE``: whom the face must match."""
    func = click.option("--ref", "ref_image", type=InputFile("image"),
                        help="A reference photo of the person (one face) instead of a gallery.")(func)
    func = click.option("--identity", help="Enrolled identity the face must match (with --gallery).")(func)
    func = click.option("--gallery", "gallery_path", type=InputFile("gallery"),
                        help="Enrolment gallery (see `facelivenet enroll`).")(func)
    return func


def load_reference(model, gallery_path, identity, ref_image, detector=None) -> tuple[np.ndarray, dict]:
    """(K, D) reference embeddings and how they were obtained (for the report); ``detector``
    finds the face of ``ref_image`` (default: the Keras MTCNN)."""
    from facelivenet.auth.gallery import DetectorCropper, embed_faces, open_gallery

    if ref_image and (gallery_path or identity):
        raise CliError("give either --ref IMAGE or --gallery FILE --identity NAME, not both")
    if ref_image:
        emb = embed_faces(model, [ref_image], cropper=DetectorCropper.for_model(model.config, detector))
        return emb, {"ref": ref_image}
    if not (gallery_path and identity):
        raise CliError("say whom to verify: --gallery FILE --identity NAME, or --ref IMAGE")
    gallery = open_gallery(gallery_path, model)
    return gallery.embeddings(identity), {"identity": identity, "gallery": gallery_path}


@click.command("verify-video", cls=Command)
@click.argument("clip", type=InputFile("video"))
@model_option
@reference_options
@click.option("--token", help="Signed single-use challenge token (from `facelivenet challenge`).")
@click.option("--challenge", "challenge_spec",
              help="Explicit challenge instead of a token, e.g. happy or happy,surprise (one-off checks).")
@click.option("--expressions", default=None,
              help="Draw a random challenge (with `secrets`) from these expressions instead, e.g. happy,surprise.")
@click.option("--length", type=click.IntRange(1, 8), default=None,
              help="With --expressions: number of expressions of the random challenge (default 1).")
@click.option("--key-file", type=click.Path(dir_okay=False), help="Token signing key (default: the config directory's).")
@click.option("--previous-key-file", type=click.Path(dir_okay=False),
              help="The signing key before a rotation: tokens it signed still verify until they expire.")
@click.option("--nonce-db", type=click.Path(dir_okay=False),
              help="Another SQLite database of used tokens, checked as well as the one beside the key file "
                   "(which always records the token).")
@click.option("--attempts-db", type=click.Path(dir_okay=False),
              help="Count failed attempts of --identity in this SQLite database: 5 failures in 10 min lock it "
                   "for 15 min (reason locked_out), as `facelivenet serve` does.")
@click.option("--stride", type=click.IntRange(1), default=1, show_default=True, help="Analyse every N-th frame.")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), default=None,
              help="Seconds of clip within which the challenge must be answered (default 15).")
@click.option("--annotate", type=click.Path(dir_okay=False), help="Write the clip with boxes, bars and state to this .mp4.")
@click.option("--timeline", type=click.Path(dir_okay=False), help="Write the expression/identity timeline to this .png.")
@click.option("--trace", "with_trace", is_flag=True, help="Include the per-frame trace in the JSON report.")
@click.option("--audit", "audit_dir", type=click.Path(file_okay=False),
              help="Write audit images here: the reference face and the best frame of each completed step "
                   "(Neutral, each expression) with its box and numbers; listed in the report.")
@threshold_options
@detect_size_option
@runtime_option
@precision_option
@click.option("--track", "track_every", type=click.IntRange(0), default=0, show_default=True,
              help="Run the full face detector every N frames and follow the face in between with its last "
                   "two stages (faster); a second face is seen at the next full detection. 0: every frame.")
@json_option
@quiet_option
def verify_video(clip, model_path, gallery_path, identity, ref_image, token, challenge_spec, expressions, length,
                 key_file, previous_key_file, nonce_db, attempts_db,
                 stride, time_limit, annotate, timeline, with_trace, audit_dir, threshold, expression_threshold,
                 detect_size, runtime, precision, track_every, as_json, quiet):
    """Authenticate CLIP: the enrolled person goes from Neutral to the challenged expression(s).

    The identity must match the reference on the very frames that show Neutral and
    each requested expression (or head move), with one face in view throughout. A
    --token bound to an identity (`challenge --identity`) is refused for another
    identity, enrolment or model (token_identity_mismatch, token_gallery_mismatch,
    token_model_mismatch); one signed by an unknown key is token_unknown_key. The decision
    carries a score in [0, 1] (>= 0.5 exactly on an accept) and the per-test margins.
    The clip's frame times are checked first: a declared rate outside 10-60 fps or
    timestamps that disagree with the frame count reject as clip_timing, a clip that
    stops decoding mid-stream as clip_corrupt; clips over 120 s are refused.
    Exit code 0 = accept, 1 = reject (the reasons are listed), 2 = error.
    """
    from facelivenet.auth.decision import format_decision
    from facelivenet.auth.nonces import key_nonce_stores
    from facelivenet.auth.offline import Authentication, prepare_offline_challenge
    from facelivenet.auth.tokens import load_key
    from facelivenet.facade import FaceAuth
    from facelivenet.video import VideoSource

    for out, ext in ((annotate, ".mp4"), (timeline, ".png")):
        if out and Path(out).suffix.lower() != ext:
            raise CliError(f"{out}: must be a {ext} file")
    from facelivenet.utils import check_output_path

    # Every output is checked before the model loads, the token is looked at or a frame analysed.
    for out, what in ((annotate, "annotated clip"), (timeline, "timeline")):
        if out:
            check_output_path(out, (clip, ref_image, gallery_path), what)
    if audit_dir:
        from facelivenet.auth.audit import prepare_audit_dir

        prepare_audit_dir(audit_dir)
    if length is not None and expressions is None:
        raise CliError("--length is for a random challenge drawn from --expressions")
    if sum(x is not None for x in (token, challenge_spec, expressions)) != 1:
        raise CliError("give the challenge: --token T (from `facelivenet challenge`), --challenge happy[,surprise] "
                       "or --expressions happy,surprise [--length N] for a random one")
    if expressions is not None:
        from facelivenet.auth.challenge import issue_challenge, parse_expression_list

        challenge_spec = ",".join(issue_challenge(parse_expression_list(expressions), length or 1).expressions)
        if not quiet:
            click.echo(f"challenge: neutral, then {challenge_spec.replace(',', ', then ')}", err=True)
    if (previous_key_file or nonce_db) and not token:
        raise CliError("--previous-key-file and --nonce-db go with --token")
    nonces = None
    if token:
        from facelivenet.auth.nonces import nonce_db_for_key

        # A store the analysis could not record the token in is found now, not after it:
        # the one beside the key (which always records the token) and --nonce-db.
        for db in (nonce_db_for_key(key_file), *((nonce_db,) if nonce_db else ())):
            db = check_output_path(db, (clip, ref_image, gallery_path), "nonce store")
            if db.exists() and not os.access(db, os.R_OK | os.W_OK):
                raise CliError(f"{db}: the nonce store is not writable; the token could not be recorded as used")
        nonces = key_nonce_stores(key_file, nonce_db)
    key = load_key(key_file, create=False) if token else None
    previous = (load_key(previous_key_file, create=False),) if previous_key_file else ()
    # The token is checked before the model loads (seconds of TensorFlow) and before the
    # reference and the clip are read; its challenge only needs the time limit. Its
    # binding (identity, enrolment, model) is checked once they are known.
    from facelivenet.auth.challenge import ChallengeSettings

    precheck = prepare_offline_challenge(token=token, expressions=challenge_spec,
                                         settings=ChallengeSettings(**({"time_limit": time_limit} if time_limit else {})),
                                         key=key, nonces=nonces, check_binding=False, previous_keys=previous)
    if precheck.rejection is not None:
        rejected = Authentication(precheck.rejected_decision(), None, precheck.claims)
        emit(rejected.report(clip=clip), as_json, lambda d: format_decision(rejected.decision))
        sys.exit(EXIT_REJECT)
    auth = FaceAuth(model_path, runtime=runtime, precision=precision)
    model = auth.model
    settings = challenge_settings(model, time_limit=time_limit, threshold=threshold,
                                  expression_threshold=expression_threshold)

    reference, ref_info = load_reference(model, gallery_path, identity, ref_image, auth.path.detector)
    total = VideoSource(clip).info.frame_count  # validates the clip before the long run
    with progress_bar((total + stride - 1) // stride, label="analysing frames", quiet=quiet) as bar:
        outcome = auth.authenticate(clip, reference, token=token, challenge=challenge_spec, key=key, nonces=nonces,
                                    identity=identity if gallery_path else None, previous_keys=previous,
                                    settings=settings, stride=stride, on_frames=bar.update,
                                    detect_max_side=detect_size or None, track_every=track_every or None,
                                    limits=_attempt_limiter(attempts_db, identity))
    decision, result = outcome.decision, outcome.clip
    if result is None:  # the token was refused meanwhile (e.g. it expired during the reference)
        report = outcome.report(reference=ref_info, clip=clip, stride=stride, include_trace=with_trace)
        emit(report, as_json, lambda d: format_decision(decision))
        sys.exit(EXIT_REJECT)
    # The decision is made (and the token spent): an output that fails, or a SIGTERM /
    # Ctrl-C while writing, is reported with the decision, never instead of it.
    failed: dict[str, str] = {}
    stop: list[BaseException] = []

    def attempt(name, write):
        """(written, what ``write`` returned)."""
        if stop:
            failed[name] = "interrupted"
            return False, None
        try:
            return True, write()
        except (KeyboardInterrupt, SystemExit) as exc:
            stop.append(exc)
            failed[name] = "interrupted"
        except Exception as exc:
            failed[name] = _one_line(exc)
        return False, None

    audit = None
    if audit_dir:
        def audit_images():
            from facelivenet.auth.audit import write_audit

            ref = None
            if ref_image:
                from facelivenet.images import read_image

                ref = (read_image(ref_image), auth.embed(ref_image).face.box)
            return write_audit(audit_dir, decision, clip, stride=stride, reference=ref)

        audit = attempt("audit", audit_images)[1]
    report = outcome.report(reference=ref_info, clip=clip, stride=stride, include_trace=with_trace, audit=audit)
    outputs = {}
    if timeline and attempt("timeline", lambda: write_timeline(timeline, result, decision, settings))[0]:
        outputs["timeline"] = {"path": str(timeline)}
    if annotate:
        written, codec = attempt("annotated",
                                 lambda: write_annotated(annotate, clip, result, decision, settings, stride))
        if written:
            outputs["annotated"] = {"path": str(annotate), "codec": codec}
            if codec != "h264":
                click.echo(f"note: {annotate} is MPEG-4 Part 2 (mp4v), which browsers do not play: "
                           "pip install imageio-ffmpeg for H.264", err=True)
    if failed:
        outputs["errors"] = failed
        for name, message in failed.items():
            click.echo(f"Error: the {name} output was not written ({message}); the decision stands", err=True)
    if outputs:
        report["outputs"] = outputs
    emit(report, as_json, lambda d: format_decision(decision) + (
        f"\n  analysed {result.frames_analyzed} frames at {result.processing_fps:.1f} frames/s"))
    if stop:
        exc = stop[0]
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else exc.code)
    sys.exit(EXIT_OK if decision.accepted else EXIT_REJECT)


def _one_line(exc: BaseException) -> str:
    """An exception as one line (ours already are; others get their type)."""
    from facelivenet.errors import FaceLiveNetError

    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, FaceLiveNetError) and first else f"{type(exc).__name__}: {first}"


def _attempt_limiter(attempts_db, identity):
    """``--attempts-db``: the limiter counting the attempts of ``--identity`` (None without both)."""
    from facelivenet.auth.limits import AttemptLimiter

    return AttemptLimiter(attempts_db) if attempts_db and identity else None


def analyze_clip(clip, analyzer, reference, challenge, settings, *, stride=1, quiet=False):
    """The clip's analysis for an explicit ``challenge`` (the demo), with a progress bar
    on stderr (none when ``quiet``): :func:`facelivenet.auth.offline.authenticate_clip`."""
    from facelivenet.auth.offline import authenticate_clip
    from facelivenet.video import VideoSource

    total = VideoSource(clip).info.frame_count  # validates the clip before the long run
    with progress_bar((total + stride - 1) // stride, label="analysing frames", quiet=quiet) as bar:
        return authenticate_clip(clip, analyzer, reference, settings=settings, challenge=challenge.expressions,
                                 stride=stride, on_frames=bar.update).clip


def _tracked_series(result, decision):
    """Per analysed frame: (expression probs of the tracked face or NaN, distance or None)."""
    classes = result.analyses[0].classes if result.analyses else ()
    by_index = {t.index: t for t in decision.trace}
    probs = np.full((len(result.indices), len(classes)), np.nan, np.float32)
    dists = []
    for k, idx in enumerate(result.indices):
        t = by_index.get(idx)
        if t is not None and t.expressions:
            probs[k] = [t.expressions.get(c, np.nan) for c in classes]
        dists.append(None if t is None or t.identity_distance is None or not np.isfinite(t.identity_distance)
                     else float(t.identity_distance))
    return classes, probs, dists


def write_timeline(path, result, decision, settings):
    """The expression/identity timeline of a :class:`~facelivenet.auth.verify.ClipVerification` to a PNG."""
    from facelivenet.auth.render import plot_timeline

    classes, probs, dists = _tracked_series(result, decision)
    times = [i / result.info.fps for i in result.indices]
    phases = [(p.name, p.start, p.end) for p in decision.phases]
    plot_timeline(path, times, probs, classes, dists, settings.identity_threshold, phases,
                  highlight=("neutral", *decision.challenge.expressions),
                  title=f"{decision.decision.upper()}: {decision.challenge.prompt()}",
                  expression_threshold=settings.expression_threshold, deadline=decision.challenge.deadline,
                  reasons=[r.message for r in decision.reasons])


def write_annotated(path, clip, result, decision, settings, stride) -> str:
    """``clip`` with boxes, bars, engine state, the countdown and the verdict to an .mp4
    (frames as analysed; H.264 when the encoder is installed). Returns the codec used."""
    from facelivenet.auth.render import draw_overlay
    from facelivenet.video import VideoSource, VideoWriter

    by_index = {t.index: t for t in decision.trace}
    analyses = dict(zip(result.indices, result.analyses))
    last_analyzed = result.indices[-1] if result.indices else -1
    src = VideoSource(clip, stride=stride)
    verdict = (decision.decision.upper(), decision.accepted)
    # The verdict from the deciding frame on; decided at the end of the input: the last second.
    banner_from = (decision.decided_frame if decision.decided_frame is not None
                   else max(0, (src.info.frame_count or last_analyzed + 1) - int(round(src.info.fps))))
    challenge = decision.challenge
    with VideoWriter(path, src.info.fps / stride, (src.info.width, src.info.height), codec="auto") as writer:
        for frame in src:
            fa = analyses.get(frame.index)
            t = by_index.get(frame.index)
            faces = fa.faces if fa else ()
            dists = [None] * len(faces)
            if t is not None and faces and t.identity_distance is not None and np.isfinite(t.identity_distance):
                dists[0] = float(t.identity_distance)
            left = max(0.0, challenge.deadline - frame.timestamp) if challenge else 0.0
            status = f"t={frame.timestamp:5.2f}s  {left:4.1f}s left  state={t.state if t else '-'}"
            if t and t.awaiting:
                status += f"  awaiting={t.awaiting}"
            if frame.index > last_analyzed:
                status = f"t={frame.timestamp:5.2f}s  analysis stopped at the decision (frame {last_analyzed})"
            decided = frame.index >= banner_from
            writer.write(draw_overlay(frame.image, faces, fa.classes if fa else (), dists,
                                      settings.identity_threshold, status=status,
                                      prompt=challenge.prompt() if challenge else "",
                                      banner=verdict if decided else None))
        return writer.codec


@click.command("realtime", cls=Command)
@click.option("--source", default="0", show_default=True,
              help="Camera index, video file or stream URL.")
@model_option
@reference_options
@challenge_draw_options
@click.option("--challenge", "challenge_spec", default=None,
              help="A fixed challenge instead of a random one, e.g. happy or happy,surprise.")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), default=None,
              help="Seconds to answer the challenge (default 15).")
@click.option("--device", type=click.Choice(["CPU", "GPU"], case_sensitive=False), default="CPU", show_default=True,
              help="GPU needs a GPU the backend sees (else an error); CPU hides GPUs.")
@click.option("--headless", is_flag=True,
              help="No window: print one JSON line per state change on stdout (servers, tests); the last "
                   "line is the decision, in verify-video's contract.")
@click.option("--audit", "audit_dir", type=click.Path(file_okay=False),
              help="Write audit images here (the reference face, the best frame of each completed step).")
@threshold_options
@detect_size_option
@runtime_option
@precision_option
@json_option
@quiet_option
def realtime(source, model_path, gallery_path, identity, ref_image, expressions, length, challenge_spec, time_limit,
             device, headless, audit_dir, threshold, expression_threshold, detect_size, runtime, precision, as_json,
             quiet):
    """Live authentication: issue a random challenge and watch the camera until it is answered.

    The window shows the prompt and a countdown, the face box (green when the
    identity matches), expression bars and finally ACCEPT or REJECT; press q to quit.
    With --json the decision (verify-video's contract) is printed on stdout at the end;
    with --headless every event is a JSON line anyway, the last one the decision.
    Exit code 0 = accept, 1 = reject, 2 = error.
    """
    import json

    from facelivenet.auth.offline import parse_challenge_sequence
    from facelivenet.auth.analyzer import FrameAnalyzer
    from facelivenet.auth.realtime import Window, display_available, run_live
    from facelivenet.devices import select_device
    from facelivenet.video import VideoSource

    from facelivenet.runtime import inference_backend

    if runtime == "onnx" and device.upper() != "CPU":
        raise CliError("--runtime onnx runs on the CPU; use --device CPU or --runtime keras")
    if runtime == "auto" and device.upper() != "CPU":  # a GPU is asked for: only Keras uses one
        from facelivenet.backend import load_backend

        runtime = "keras"
        load_backend()
    # ONNX Runtime runs on the CPU; only the Keras runtime needs the backend told (a TensorFlow import).
    where = select_device(device) if runtime == "keras" else "CPU, ONNX Runtime"
    choices, length = challenge_draw(expressions, length)
    sequence = parse_challenge_sequence(challenge_spec) if challenge_spec else None
    backend = inference_backend(runtime, model_path, precision=precision)
    if backend.runtime != runtime and backend.runtime == "keras":  # auto fell back to Keras (CPU)
        where = select_device(device)
    runtime = backend.runtime
    model = backend.model
    settings = challenge_settings(model, time_limit=time_limit, threshold=threshold,
                                  expression_threshold=expression_threshold)
    reference, ref_info = load_reference(model, gallery_path, identity, ref_image, backend.detector)
    analyzer = FrameAnalyzer(model, backend.detector, detect_max_side=detect_size or None)
    ref_picture = None
    if audit_dir and ref_image:
        from facelivenet.facade import FaceAuth
        from facelivenet.images import read_image

        ref_picture = (read_image(ref_image), FaceAuth(model, detector=backend.detector, runtime=runtime,
                                                        precision=precision)
                       .embed(ref_image).face.box)
    src = VideoSource(source)
    window = None
    if not headless:
        if not display_available():  # OpenCV's Qt would abort the process, not raise
            raise CliError("cannot open a window: no display (DISPLAY is not set); use --headless")
        try:
            window = Window(threshold=settings.identity_threshold)
        except Exception as exc:  # OpenCV without GUI support, or no display
            raise CliError(f"cannot open a window ({str(exc).splitlines()[0][:120]}); use --headless") from None

    final = {}

    def on_event(event):
        if event["event"] == "decision":
            final.update(event)
        if headless:
            click.echo(json.dumps(event, default=str))
        elif event["event"] == "challenge" and not quiet:
            click.echo(f"challenge: {event['prompt']} (device {where})", err=True)

    with src:
        decision = run_live(src, analyzer, reference, settings, choices=choices, length=length, sequence=sequence,
                            on_event=on_event, window=window, reference_info=ref_info, source_name=str(source),
                            fps=src.info.fps or None, audit_dir=audit_dir, reference_image=ref_picture)
    if not headless:
        from facelivenet.auth.decision import format_decision

        report = {k: v for k, v in final.items() if k not in ("event", "t")}
        emit(report, as_json, lambda _: format_decision(decision))
    sys.exit(EXIT_OK if decision.accepted else EXIT_REJECT)
