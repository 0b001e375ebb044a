"""Detection commands: ``align``."""

from __future__ import annotations

import click

from facelivenet.cli.common import Command, emit, json_option, progress, quiet_option

ALIGN_MODES = ("crop", "similarity")  # facelivenet.detect.align.ALIGN_MODES, without importing Keras


@click.command("align", cls=Command)
@click.argument("input_dir", type=click.Path(file_okay=False))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("--image-size", type=click.IntRange(8), default=160, show_default=True,
              help="Side of the aligned faces in pixels.")
@click.option("--margin", type=click.IntRange(0), default=32, show_default=True,
              help="crop mode: margin around the box, in pixels of the aligned face (both sides together).")
@click.option("--mode", type=click.Choice(ALIGN_MODES), default="crop", show_default=True,
              help="crop: box + margin (facenet); similarity: 5-point similarity transform (ArcFace template).")
@click.option("--min-face", type=click.FloatRange(12), default=20, show_default=True,
              help="Smallest face to detect, in image pixels.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Processes detecting in parallel.")
@click.option("--all-faces", is_flag=True,
              help="Write every face (NAME_0.png, NAME_1.png, ...); default: the largest, most central one.")
@click.option("--retry-failures", is_flag=True, help="Also redo images listed in failures.jsonl.")
@json_option
@quiet_option
def align(input_dir, output_dir, image_size, margin, mode, min_face, workers, all_faces, retry_failures,
          as_json, quiet):
    """Detect and align the faces of a dataset laid out one folder per class.

    Mirrors INPUT_DIR's folders under OUTPUT_DIR with one aligned PNG per image and
    writes OUTPUT_DIR/manifest.jsonl (source, output, box, score, landmarks) and
    OUTPUT_DIR/failures.jsonl (unreadable, no face). Bad files never stop the run;
    rerunning skips the images already done.
    """
    from facelivenet.detect.batch_align import AlignSettings, align_dataset

    settings = AlignSettings(image_size=image_size, margin=margin, mode=mode, min_face_size=min_face,
                             all_faces=all_faces)
    summary = align_dataset(
        input_dir, output_dir, settings, workers=workers, retry_failures=retry_failures,
        progress=lambda items, n: progress(items, label="aligning", length=n, quiet=quiet or n == 0),
    )
    emit(summary.to_dict(), as_json, lambda _: summary.line())
