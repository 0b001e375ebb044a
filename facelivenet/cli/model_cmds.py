"""Model commands: ``info``, ``analyze``, ``compare``, ``identify``, ``create-model``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from facelivenet.cli.common import (
    quiet_accepted,
    EXIT_OK, EXIT_REJECT, CliError, InputFile, Command, emit, json_option, model_option, progress, quiet_option,
    precision_option, runtime_option,
)
from facelivenet.config import FER2013_CLASSES, PRESETS, STANDARDIZATIONS, ALIGNMENTS


@click.command("info", cls=Command)
@click.argument("model_arg", metavar="[MODEL]", required=False, type=InputFile("model"))
@model_option
@json_option
@quiet_accepted
def info(model_arg, model_path, as_json):
    """Describe a model: architecture, parameters, classes, preprocessing, threshold.

    MODEL (or --model) defaults to the bundled model.
    """
    from facelivenet.api import load_model

    if model_arg and model_path and model_arg != model_path:
        raise CliError("give the model either as MODEL or as --model, not both")
    model = load_model(model_arg or model_path)
    emit(model.summary_dict(), as_json, _info_text)


def _info_text(d: dict) -> str:
    c, p = d["config"], d["parameters"]
    return "\n".join([
        f"model:          {d['source']}",
        f"architecture:   Inception-ResNet-v1 two-branch, preset {c['preset']} "
        f"(N35/N17/N8 = {'/'.join(map(str, c['depths']))}, width {c['width']:g})",
        f"parameters:     {p['total']:,} total, {p['trainable']:,} trainable, "
        f"{p['stem_and_branch1']:,} in stem + branch 1",
        f"input:          {c['image_size']}x{c['image_size']} RGB, standardisation {c['standardization']}, "
        f"alignment {c['alignment']} (margin {c['margin']})",
        f"embedding:      {c['embedding_size']}-d, L2-normalised",
        f"expressions:    {', '.join(c['expression_classes'])}",
        f"thresholds:     verification squared L2 <= {c['verification_threshold']}, "
        f"expression p >= {c['expression_threshold']}, Neutral p >= "
        f"{c['expression_threshold'] if c.get('neutral_threshold') is None else c['neutral_threshold']} "
        f"(most probable)",
    ])


@click.command("analyze", cls=Command)
@click.argument("images", nargs=-1, required=True, type=InputFile("image"))
@model_option
@json_option
@quiet_option
@click.option("--cropped", is_flag=True,
              help="The images already are face crops (one face each, resized to the model's input); "
                   "default: detect every face of each image.")
@click.option("--embeddings", "embeddings_out", type=click.Path(dir_okay=False),
              help="Also save the (N, D) embeddings of all faces, in output order, to this .npy file.")
@runtime_option
@precision_option
def analyze(images, model_path, as_json, quiet, cropped, embeddings_out, runtime, precision):
    """Faces, expressions and embeddings of IMAGES: one result per face.

    Each image is searched for faces (our MTCNN, score >= 0.9), every face is cut in the
    model's geometry and analysed. With --cropped each image is taken as one face crop.
    An image without a face is an error (exit 2).
    """
    from facelivenet.facade import FaceAuth

    if embeddings_out and not embeddings_out.endswith(".npy"):
        raise CliError(f"{embeddings_out}: --embeddings must name a .npy file")
    auth = FaceAuth(model_path, runtime=runtime, precision=precision)
    rows, embs = [], []
    for path in progress(images, label="analysing", quiet=quiet or len(images) < 20):
        faces = auth.analyze_crops([path]) if cropped else auth.analyze(path)
        if not faces:
            raise CliError(f"{path}: no face found (use --cropped for face crops)")
        for k, f in enumerate(faces):
            row = {"image": path, "face": k, **(f.to_dict() if not cropped else {}),
                   "expression": f.expression,
                   "probabilities": {c: round(float(p), 6) for c, p in f.expressions.items()},
                   "embedding_norm": round(float(np.linalg.norm(f.embedding)), 6)}
            row.pop("expressions", None)
            rows.append(row)
            embs.append(f.embedding)
    if embeddings_out:
        from facelivenet.utils import atomic_save_npy

        atomic_save_npy(Path(embeddings_out), np.stack(embs).astype(np.float32))
    emit({"model": str(auth.model.source), "faces": rows}, as_json, _analyze_text)


def _analyze_text(d: dict) -> str:
    lines = []
    for r in d["faces"]:
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        tops = ", ".join(f"{k} {v:.2f}" for k, v in top)
        where = f" face {r['face'] + 1} at {[round(v) for v in r['box']]}" if "box" in r else ""
        lines.append(f"{r['image']}{where}: {r['expression']} ({tops}); embedding norm {r['embedding_norm']:.3f}")
    return "\n".join(lines)


@click.command("compare", cls=Command)
@click.argument("image_a", type=InputFile("image"))
@click.argument("image_b", type=InputFile("image"))
@model_option
@click.option("--threshold", type=click.FloatRange(0, 4), default=None,
              help="Squared-L2 threshold (default: the model's calibrated one).")
@runtime_option
@precision_option
@json_option
@quiet_accepted
def compare(image_a, image_b, model_path, threshold, runtime, precision, as_json):
    """Are the faces of two photos the same person? Exit 0 = same, 1 = not, 2 = error.

    Each photo must show exactly one face.
    """
    from facelivenet.facade import FaceAuth

    result = FaceAuth(model_path, runtime=runtime, precision=precision).verify(image_a, image_b, threshold=threshold)
    d = {"image_a": image_a, "image_b": image_b, **result.to_dict()}
    emit(d, as_json, lambda d: f"{'same person' if d['same'] else 'different people'}: squared L2 distance "
                               f"{d['distance']:.4f} {'<=' if d['same'] else '>'} threshold {d['threshold']:.4f}")
    sys.exit(EXIT_OK if result.same else EXIT_REJECT)


@click.command("identify", cls=Command)
@click.argument("image", type=InputFile("image"))
@click.option("--gallery", "gallery_path", required=True, type=InputFile("gallery"),
              help="Enrolment gallery (facelivenet enroll).")
@model_option
@click.option("--threshold", type=click.FloatRange(0, 4), default=None,
              help="Squared-L2 threshold (default: the model's calibrated one).")
@click.option("--top", type=click.IntRange(1), default=5, show_default=True, help="Candidates listed.")
@runtime_option
@precision_option
@json_option
@quiet_accepted
def identify(image, gallery_path, model_path, threshold, top, runtime, precision, as_json):
    """Who is the one face of IMAGE among the gallery's identities? Exit 0 = found, 1 = nobody.

    The nearest identity wins if its distance is within the threshold.
    """
    from facelivenet.facade import FaceAuth

    result = FaceAuth(model_path, runtime=runtime, precision=precision).identify(image, gallery_path, threshold=threshold, top=top)
    d = {"image": image, "gallery": gallery_path, **result.to_dict()}

    def text(d):
        head = (f"{d['name']} (squared L2 {d['distance']:.4f} <= {d['threshold']:.4f})" if d["matched"]
                else f"no enrolled identity within {d['threshold']:.4f}")
        return head + "\n" + "\n".join(f"  {c['name']}: {c['distance']:.4f}" for c in d["candidates"])

    emit(d, as_json, text)
    sys.exit(EXIT_OK if result.matched else EXIT_REJECT)


@click.command("create-model", cls=Command)
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="simple", show_default=True,
              help="Block depths N35/N17/N8: full = 5/10/5, simple = 1/1/1.")
@click.option("--width", type=click.FloatRange(0, 4, min_open=True), default=1.0, show_default=True,
              help="Filter-count multiplier (0.28 with simple ~ the ICPR paper's 1.3M parameters).")
@click.option("--embedding-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--image-size", type=click.IntRange(75), default=160, show_default=True)
@click.option("--classes", default=",".join(FER2013_CLASSES), show_default=True,
              help="Comma-separated expression class names, in logit order (default: the shipped model's, "
                   "FER2013's label order).")
@click.option("--standardization", type=click.Choice(STANDARDIZATIONS), default="fixed", show_default=True)
@click.option("--alignment", type=click.Choice(ALIGNMENTS), default="crop", show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for the weight initialisation.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@json_option
@quiet_accepted
def create_model(out, preset, width, embedding_size, image_size, classes, standardization, alignment,
                 dropout, seed, force, as_json):
    """Write a freshly initialised (untrained) model to OUT (.keras).

    A starting point for training or a small model for tests; it recognises nothing
    until trained.
    """
    from facelivenet.api import new_model
    from facelivenet.config import NetworkConfig

    out_path = Path(out)
    if out_path.suffix != ".keras":
        raise CliError(f"{out}: the model file name must end in .keras")
    if out_path.exists() and not force:
        raise CliError(f"{out}: already exists (use --force to overwrite)")
    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    cfg = NetworkConfig.from_preset(
        preset, width=width, embedding_size=embedding_size, image_size=image_size, expression_classes=names,
        standardization=standardization, alignment=alignment, dropout=dropout,
    )
    model = new_model(cfg, seed=seed)
    model.save(out_path)
    model.source = out_path
    emit(model.summary_dict(), as_json, lambda d: f"wrote {out_path}\n" + _info_text(d))
