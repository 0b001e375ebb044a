"""Model commands: ``info``, ``analyze``, ``create-model``."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from facelivenet.cli.common import CliError, Command, emit, json_option, model_option, progress, quiet_option
from facelivenet.config import FER2013_CLASSES, PRESETS, STANDARDIZATIONS, ALIGNMENTS


@click.command("info", cls=Command)
@click.argument("model_arg", metavar="[MODEL]", required=False, type=click.Path(dir_okay=False))
@model_option
@json_option
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
        f"expression p >= {c['expression_threshold']}",
    ])


@click.command("analyze", cls=Command)
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_option
@json_option
@quiet_option
@click.option("--embeddings", "embeddings_out", type=click.Path(dir_okay=False),
              help="Also save the (N, D) embeddings to this .npy file.")
def analyze(images, model_path, as_json, quiet, embeddings_out):
    """Expression probabilities and embedding of already-cropped face images.

    Each IMAGE is one face crop (any size, grey, RGB or RGBA); it is resized to the
    model's input. For whole photos, detect and align the faces first.
    """
    from facelivenet.api import load_model
    from facelivenet.images import read_image

    if embeddings_out and not embeddings_out.endswith(".npy"):
        raise CliError(f"{embeddings_out}: --embeddings must name a .npy file")
    model = load_model(model_path)
    faces = [read_image(p) for p in progress(images, label="reading", quiet=quiet or len(images) < 20)]
    result = model.analyze(faces)
    rows = []
    for i, path in enumerate(images):
        probs = {c: round(float(p), 6) for c, p in zip(result.expression_classes, result.expressions[i])}
        rows.append({
            "image": path,
            "expression": result.top_expressions()[i],
            "probabilities": probs,
            "embedding_norm": round(float(np.linalg.norm(result.embeddings[i])), 6),
        })
    if embeddings_out:
        from facelivenet.utils import atomic_save_npy

        atomic_save_npy(Path(embeddings_out), result.embeddings)
    emit({"model": str(model.source), "faces": rows}, as_json, _analyze_text)


def _analyze_text(d: dict) -> str:
    lines = []
    for r in d["faces"]:
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        tops = ", ".join(f"{k} {v:.2f}" for k, v in top)
        lines.append(f"{r['image']}: {r['expression']} ({tops}); embedding norm {r['embedding_norm']:.3f}")
    return "\n".join(lines)


@click.command("create-model", cls=Command)
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="simple", show_default=True,
              help="Block depths N35/N17/N8: full = 5/10/5, simple = 1/1/1.")
@click.option("--width", type=click.FloatRange(0, 4, min_open=True), default=1.0, show_default=True,
              help="Filter-count multiplier (0.28 with simple ~ the ICPR paper's 1.3M parameters).")
@click.option("--embedding-size", type=click.IntRange(1), default=512, show_default=True)
@click.option("--image-size", type=click.IntRange(75), default=160, show_default=True)
@click.option("--classes", default=",".join(FER2013_CLASSES), show_default=True,
              help="Comma-separated expression class names, in logit order.")
@click.option("--standardization", type=click.Choice(STANDARDIZATIONS), default="fixed", show_default=True)
@click.option("--alignment", type=click.Choice(ALIGNMENTS), default="crop", show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for the weight initialisation.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@json_option
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
