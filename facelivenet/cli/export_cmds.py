"""``facelivenet export``: SavedModel, TFLite (float, int8) and ONNX, with a parity check."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from facelivenet.cli.common import CliError, Command, emit, json_option, model_option, quiet_option
from facelivenet.paths import parity_faces_dir

#: Real face crops (public-domain astronaut portrait) used when --faces is not given.
DEFAULT_PARITY_FACES = parity_faces_dir()


@click.command("export", cls=Command)
@model_option
@click.option("--format", "fmt", required=True,
              type=click.Choice(["savedmodel", "tflite", "tflite-int8", "onnx"]),
              help="savedmodel (directory), tflite (float32), tflite-int8 (needs --calibration), onnx.")
@click.option("--out", required=True, type=click.Path(), help="Output file (directory for savedmodel).")
@click.option("--calibration", type=click.Path(file_okay=False),
              help="Directory of real face crops for int8 calibration (tflite-int8).")
@click.option("--faces", type=click.Path(file_okay=False),
              help="Directory of real face crops for the parity check. Default: data/parity-faces.")
@click.option("--max-faces", type=click.IntRange(1), default=200, show_default=True,
              help="At most this many crops are read for calibration and for parity.")
@click.option("--detector", is_flag=True,
              help="Export the face detector's three stages (MTCNN P-Net, R-Net, O-Net) into the "
                   "directory OUT instead of the network.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@json_option
@quiet_option
def export_cmd(model_path, fmt, out, calibration, faces, max_faces, detector, force, as_json, quiet):
    """Export the network (embedding + expression probabilities) for phones and serving.

    The exported model takes a uint8 RGB batch named `image` (N x S x S x 3, S the
    model's input size) and returns `embedding` and `expression_probs`. After writing,
    the export and our model run on the same real face crops: the largest embedding
    difference, the cosine similarity and the expression-argmax agreement are printed,
    and the export is refused (deleted, exit 2) below the bounds: cosine >= 0.9999 and
    100% agreement for float formats, cosine >= 0.98 and 90% agreement for int8.

    With --detector, OUT is a directory that receives pnet/rnet/onet in the format,
    each taking uint8 RGB input `image` (P-Net any size, R-Net 24x24, O-Net 48x48)
    and checked the same way (float: every output within 1e-4; int8: 90% of clear
    face/non-face decisions agree).
    """
    from facelivenet.api import load_model
    from facelivenet.export import (
        artefact_size,
        check_parity,
        export,
        load_face_dir,
        load_runner,
    )

    out_path = Path(out)
    if out_path.exists() and not force:
        raise CliError(f"{out_path}: already exists (use --force to overwrite)")
    if fmt == "tflite-int8" and not calibration:
        raise CliError("tflite-int8 needs --calibration DIR with real face crops")
    if fmt != "tflite-int8" and calibration:
        raise CliError("--calibration is only used by --format tflite-int8")
    if detector:
        _export_detector(fmt, out_path, calibration, faces, max_faces, as_json, quiet)
        return
    model = load_model(model_path)
    size = model.image_size
    calib = load_face_dir(calibration, size, max_faces) if calibration else None
    parity_faces = load_face_dir(faces or DEFAULT_PARITY_FACES, size, max_faces)

    _say(quiet, f"exporting {model.source} as {fmt} ...")
    export(model.network, fmt, out_path, calibration=calib)
    _say(quiet, f"checking parity on {len(parity_faces)} face crops ...")
    model.analyze(parity_faces[:1])  # compile our forward once
    parity = check_parity(fmt, lambda x: _analyze_pair(model, x), load_runner(fmt, out_path), parity_faces)
    report = {
        "model": str(model.source),
        "format": fmt,
        "out": str(out_path),
        "bytes": artefact_size(out_path),
        "parity": parity.to_dict(),
    }
    if not parity.ok:
        if out_path.is_dir():
            shutil.rmtree(out_path)
        else:
            out_path.unlink(missing_ok=True)
        failed = []
        if parity.min_cosine < parity.bound_cosine:
            failed.append(f"min cosine {parity.min_cosine:.5f} < {parity.bound_cosine}")
        if parity.argmax_agreement < parity.bound_agreement:
            failed.append(f"expression argmax agreement {parity.argmax_agreement:.1%} < {parity.bound_agreement:.0%}")
        raise CliError(f"export refused, parity below bounds ({'; '.join(failed)}); {out_path} removed")
    emit(report, as_json, _text)


def _export_detector(fmt, out_path, calibration, faces, max_faces, as_json, quiet=False):
    from facelivenet.export import artefact_size, export_detector, load_face_dir

    size = 160  # P-Net runs on crops of any size; R/O-Net inputs are resized from these
    crops = load_face_dir(calibration or faces or DEFAULT_PARITY_FACES, size, max_faces)
    _say(quiet, f"exporting the detector's stages as {fmt} to {out_path}/ ...")
    results = export_detector(fmt, out_path, faces=crops, calibrate=fmt == "tflite-int8")
    report = {
        "format": fmt,
        "out": str(out_path),
        "stages": {
            stage: {"path": str(path), "bytes": artefact_size(path), "parity": parity.to_dict()}
            for stage, (path, parity) in results.items()
        },
    }
    bad = [stage for stage, (_, parity) in results.items() if not parity.ok]
    if bad:
        shutil.rmtree(out_path, ignore_errors=True)
        raise CliError(f"export refused, parity below bounds for {', '.join(bad)}; {out_path} removed")
    emit(report, as_json, _detector_text)


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        click.echo(message, err=True)


def _detector_text(r: dict) -> str:
    lines = [f"wrote the detector's stages to {r['out']} ({r['format']})"]
    for stage, d in r["stages"].items():
        p = d["parity"]
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in p["max_abs_diff"].items())
        lines.append(f"  {stage}: {d['bytes'] / 1e6:.2f} MB; max |Δ| {diffs}; "
                     f"decisions agree {p['decision_agreement']:.1%} on {p['inputs']} inputs")
    return "\n".join(lines)


def _analyze_pair(model, faces):
    res = model.analyze(faces)
    return res.embeddings, res.expressions


def _text(r: dict) -> str:
    p = r["parity"]
    return (
        f"wrote {r['out']} ({r['format']}, {r['bytes'] / 1e6:.1f} MB)\n"
        f"parity on {p['faces']} faces: max |Δembedding| {p['max_abs_embedding_diff']:.2e}, "
        f"cosine min {p['min_cosine']:.6f} mean {p['mean_cosine']:.6f}, "
        f"expression argmax agreement {p['argmax_agreement']:.1%} (bounds: cosine >= {p['bound_cosine']}, "
        f"agreement >= {p['bound_agreement']:.0%})"
    )
