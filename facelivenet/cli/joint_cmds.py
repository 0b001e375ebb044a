"""Joint training commands: ``prepare-joint``, ``teacher-cache``, ``train-joint``.

``prepare-joint`` labels and landmarks every face of the given sources into one
manifest; ``teacher-cache`` computes the identity teacher's embedding of each (the
``[teacher]`` extra); ``train-joint`` trains the whole network on mixed batches with
masked losses and distillation (:func:`facelivenet.train.run.train_joint`).
"""

from __future__ import annotations

import click

from facelivenet.cli.common import (
    Command, ProgressBarReporter, emit, json_option, model_option, progress, quiet_option,
)
from facelivenet.cli.train_cmds import (
    _DIR, _FILE, _architecture, _architecture_kwargs, _common, _common_kwargs, _report, _report_text,
)
from facelivenet.data.joint import SOURCE_KINDS


def _progress(quiet: bool):
    return lambda items, n, label: progress(items, label=label, length=n, quiet=quiet)


@click.command("prepare-joint", cls=Command)
@click.argument("out_dir", type=_DIR)
@click.option("--source", "sources", multiple=True, required=True, metavar="KIND=PATH",
              help=f"A data source; KIND is one of {', '.join(SOURCE_KINDS)} (layouts in data/README.md). Repeatable.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of identities held out (by a hash of the identity, the same in every folder).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--landmarks-cache", type=_FILE, default=None,
              help="Landmark cache to reuse and extend. Default: OUT_DIR/landmarks.jsonl.")
@quiet_option
@json_option
def prepare_joint(out_dir, sources, val_fraction, seed, landmarks_cache, quiet, as_json):
    """Label and landmark every face of the sources into OUT_DIR/manifest.jsonl.

    One geometry for every source: MTCNN's five landmarks, later mapped onto the
    model's template. Tight crops (FER2013, CK+, CelebA aligned) are detected on a
    padded, upscaled copy; where no face is found they take their source's mean
    landmarks (the share is in OUT_DIR/summary.json). Resumable.
    """
    from facelivenet.data.joint import Source, build_manifest

    parsed = [Source.parse(s) for s in sources]
    summary = build_manifest(parsed, out_dir, val_fraction=val_fraction, seed=seed,
                             landmarks_cache=landmarks_cache, progress=_progress(quiet))
    result = {"manifest": f"{out_dir}/manifest.jsonl", "by_source": summary.to_dict()}
    emit(result, as_json, lambda r: "\n".join(
        [f"manifest: {r['manifest']}"] + [
            f"{s}: {c['images']} images, {c['detected']} detected, {c['fallback']} fell back "
            f"({100 * c['fallback_share']:.1f}%), {c['dropped']} dropped" for s, c in r["by_source"].items()]))


@click.command("teacher-cache", cls=Command)
@click.argument("manifest_dir", type=_DIR)
@click.argument("cache_dir", type=_DIR)
@click.option("--split", type=click.Choice(["train", "val", "all"]), default="train", show_default=True,
              help="Which records of the manifest to embed.")
@click.option("--source", "only_sources", multiple=True, type=click.Choice(SOURCE_KINDS),
              help="Only records of these source kinds (repeatable). Default: all.")
@click.option("--shard", default="0/1", show_default=True, metavar="I/N",
              help="Embed the I-th of N shares (run N processes side by side).")
@quiet_option
@json_option
def teacher_cache(manifest_dir, cache_dir, split, only_sources, shard, quiet, as_json):
    """Compute the identity teacher's embedding of every manifest face into CACHE_DIR.

    The teacher is dlib's ResNet face descriptor (pip install '.[teacher]'), fed the
    same five landmarks as the student. Resumable; the cache is keyed by file and
    landmarks. Training-only: no trained model needs it.
    """
    from pathlib import Path

    from facelivenet.data.joint import read_manifest
    from facelivenet.errors import InputError
    from facelivenet.train.teacher import cache_teacher, load_teacher_cache

    try:
        i, n = (int(v) for v in shard.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise InputError(f"--shard must be I/N with 0 <= I < N. Received: {shard!r}") from None
    records = read_manifest(Path(manifest_dir) / "manifest.jsonl")
    records = [r for r in records if (split == "all" or r.split == split)
               and (not only_sources or r.source in only_sources)]
    cache_teacher(records, cache_dir, shard=(i, n), progress=_progress(quiet))
    keys, _ = load_teacher_cache(cache_dir, allow_empty=True)
    emit({"cache": cache_dir, "embeddings": len(keys), "records": len(records)}, as_json,
         lambda r: f"{r['cache']}: {r['embeddings']} teacher embeddings ({r['records']} records asked for)")


def _parse_repeats(ctx, param, values) -> tuple[tuple[str, int], ...]:
    from facelivenet.data.joint import SOURCE_KINDS

    out = {}
    for text in values:
        kind, _, n = text.partition("=")
        if kind not in SOURCE_KINDS or not n.isdigit() or int(n) < 1:
            raise click.BadParameter(f"{text!r}: expected KIND=N with KIND one of {', '.join(SOURCE_KINDS)} "
                                     "and N an integer >= 1")
        out[kind] = int(n)
    return tuple(out.items())


@click.command("train-joint", cls=Command)
@_common
@_architecture
@click.option("--model", type=_FILE, default=None, help="Start from this model's weights (e.g. the shipped default).")
@click.option("--teacher-cache", "teacher_cache", type=_DIR, default=None,
              help="Teacher embeddings (facelivenet teacher-cache); without it, no distillation.")
@click.option("--loss", "loss_kind", type=click.Choice(["none", "arcface", "cosface"]), default="cosface",
              show_default=True, help="Identity head: softmax (none) or a margin head.")
@click.option("--head-scale", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option("--angular-margin", type=click.FloatRange(0, 1.5, max_open=True), default=None,
              help="Default: 0.5 (arcface), 0.35 (cosface).")
@click.option("--weight-identity", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--weight-distill", type=click.FloatRange(min=0), default=10.0, show_default=True)
@click.option("--weight-expression", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--weight-smiling", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--gray-share", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Share of colour training faces turned grey.")
@click.option("--source-repeat", "source_repeats", multiple=True, callback=_parse_repeats, metavar="KIND=N",
              help="Each training face of this source kind enters every epoch N times, each with its own "
                   "jitter (weighs a small source up, e.g. taiwanese=4). Repeatable.")
@click.option("--min-images", "min_images_per_identity", type=click.IntRange(min=1), default=2, show_default=True,
              help="Identities with fewer training images get no identity label.")
def train_joint_cmd(as_json, **kw):
    """Joint training: identity, distillation and expressions on mixed batches.

    DATA is a folder made by prepare-joint. Each batch mixes the sources; every loss
    is averaged over the samples that carry its label: the identity head on labelled
    identities, 1 - cos(embedding, teacher) on every face with a teacher embedding,
    cross-entropy against the FER+ vote distribution / one-hot labels on expression
    faces, and binary cross-entropy of p(happy) against CelebA's Smiling. Faces are
    warped by their landmarks onto the template (the model records the similarity
    geometry), jittered, flipped and, for a share of colour faces, turned grey.
    """
    from facelivenet.train.options import JointConfig, VerificationLossConfig
    from facelivenet.train.run import train_joint

    common = _common_kwargs(kw)
    loss = VerificationLossConfig(kind=kw.pop("loss_kind"), scale=kw.pop("head_scale"),
                                  angular_margin=kw.pop("angular_margin"))
    kw.pop("random_crop", None)
    cfg = JointConfig(**common, **_architecture_kwargs(kw), loss=loss, **kw)
    emit(_report(train_joint(cfg, reporter=ProgressBarReporter(cfg.quiet))), as_json, _report_text)


@click.command("manifest-faces", cls=Command)
@click.argument("manifest_dir", type=_DIR)
@click.argument("out_dir", type=_DIR)
@click.option("--by", type=click.Choice(["identity", "expression"]), required=True,
              help="Class folders by identity, or by the majority expression (FER+ majority for FER2013).")
@click.option("--split", type=click.Choice(["train", "val"]), default="val", show_default=True)
@click.option("--source", "only_sources", multiple=True, type=click.Choice(SOURCE_KINDS),
              help="Only records of these source kinds (repeatable). Default: all.")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Face side in pixels. Default: the model's input size.")
@click.option("--alignment", type=click.Choice(["similarity", "crop"]), default=None,
              help="Geometry. Default: the model's (crop resizes tight sources whole).")
@model_option
@quiet_option
@json_option
def manifest_faces(manifest_dir, out_dir, by, split, only_sources, size, alignment, model_path, quiet, as_json):
    """Write a manifest's faces as class folders, cut as the model sees them.

    For evaluate-expression and calibrate on held-out data with one geometry: e.g.
    --by expression --source fer gives FER2013 validation under its FER+ majority
    labels; --by identity gives the held-out identities to calibrate on.
    """
    from pathlib import Path

    from facelivenet.data.joint import read_manifest, write_faces

    records = [r for r in read_manifest(Path(manifest_dir) / "manifest.jsonl")
               if r.split == split and (not only_sources or r.source in only_sources)]
    if size is None or alignment is None:
        from facelivenet.api import load_model

        cfg = load_model(model_path).config
        size = size or cfg.image_size
        alignment = alignment or cfg.alignment
    counts = write_faces(records, out_dir, size=size, by=by, alignment=alignment, progress=_progress(quiet))
    emit({"out": out_dir, "faces": sum(counts.values()), "classes": counts}, as_json,
         lambda r: f"{r['out']}: {r['faces']} faces in {len(r['classes'])} folders")
