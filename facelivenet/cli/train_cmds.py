"""Training commands: ``train-verification``, ``train-expression``, ``train-multitask``.

Each command maps its options onto a frozen config (:mod:`facelivenet.train.options`)
and calls one function of :mod:`facelivenet.train.run`.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from facelivenet.cli.common import Command, ProgressBarReporter, emit, json_option, quiet_option
from facelivenet.config import PRESETS, STANDARDIZATIONS
from facelivenet.data.datasets import CKPLUS_SUBJECT_REGEX
from facelivenet.train.options import OPTIMIZERS, PRECISIONS, STRATEGIES, VERIFICATION_LOSSES

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


def _apply(options: list[Callable]) -> Callable:
    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


_common = _apply([
    click.option("--data", required=True, type=_DIR, help="Dataset folder: one sub-folder per class."),
    click.option("--out", required=True, type=_FILE, help="Final model file (.keras)."),
    click.option("--work-dir", type=_DIR, default=None,
                 help="Checkpoints, CSV/TensorBoard logs and best.keras. Default: OUT without .keras + '.train'."),
    click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                 help="Global batch (split across replicas)."),
    click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
                 help="Cap on steps per epoch. Default: one pass over the data."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="momentum", show_default=True,
                 help="SGD with Nesterov momentum 0.9 (what trained the shipped model; Adam at 1e-3 did "
                      "not move its identity loss, models/README.md), or another optimiser."),
    click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.01,
                 show_default=True, help="Learning rate when no --lr-schedule is given."),
    click.option("--lr-schedule", type=_FILE, default=None,
                 help="File of 'epoch: lr' lines (see data/lr_schedule_*.txt); a negative lr stops training."),
    click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
                 help="Share of identities/subjects held out for validation (never split by image)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--random-crop/--no-random-crop", default=True, show_default=True,
                 help="Resize to 182/160 of the input size and crop at random."),
    click.option("--flip/--no-flip", default=True, show_default=True, help="Random horizontal flip."),
    click.option("--resume", is_flag=True, help="Continue from the checkpoint in the work folder."),
    click.option("--strategy", type=click.Choice(STRATEGIES), default="default", show_default=True,
                 help="tf.distribute: one device, mirrored (local devices), multiworker (TF_CONFIG)."),
    click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                 help="bf16: mixed bfloat16 (CPUs with AMX, TPUs, recent GPUs); fp16: mixed float16 with loss scaling (GPUs)."),
    click.option("--bn-batches", type=click.IntRange(min=0), default=20, show_default=True,
                 help="Batches used after each epoch to re-estimate batch-norm inference statistics "
                      "(0: keep the 0.995 moving averages, which lag in short runs)."),
    quiet_option,
    json_option,
])

_architecture = _apply([
    click.option("--preset", type=click.Choice(sorted(PRESETS)), default="simple", show_default=True,
                 help="Depth preset of a fresh network (simple 1/1/1, full 5/10/5)."),
    click.option("--width", type=click.FloatRange(0, 4, min_open=True), default=1.0, show_default=True,
                 help="Filter-count multiplier of a fresh network (0.28 with simple ~ the paper's 1.3M "
                      "parameters)."),
    click.option("--embedding-size", type=click.IntRange(min=1), default=128, show_default=True),
    click.option("--image-size", type=click.IntRange(min=75), default=160, show_default=True),
    click.option("--weight-decay", type=click.FloatRange(min=0), default=5e-5, show_default=True,
                 help="L2 factor on every kernel; added to the loss."),
    click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True),
    click.option("--standardization", type=click.Choice(STANDARDIZATIONS), default="fixed", show_default=True),
])

_verification_loss = _apply([
    click.option("--loss", "loss_kind", type=click.Choice(VERIFICATION_LOSSES), default="triplet-icpr",
                 show_default=True,
                 help="Term added to the identity softmax: class-wise triplet (ICPR eq. 3-5 or "
                      "FaceLiveNet+ eq. 3-4), plain center loss, or none; or a margin head in place "
                      "of the softmax: arcface (additive angular) or cosface (large-margin cosine)."),
    click.option("--alpha", type=click.FloatRange(min=0), default=1e-4, show_default=True,
                 help="Weight of the triplet/center term."),
    click.option("--beta", type=float, default=10.0, show_default=True, help="ICPR margin."),
    click.option("--theta", type=float, default=0.5, show_default=True, help="ICPR weight of D_psi."),
    click.option("--triplet-margin", "margin", type=float, default=1.0, show_default=True,
                 help="FaceLiveNet+ triplet margin beta0 (a loss margin; --margin of align and calibrate is "
                      "the crop's margin in pixels)."),
    click.option("--center-rate", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
                 help="gamma of the center update c <- c - gamma * mean(c - x) (ICPR eq. 6-7)."),
    click.option("--head-scale", "head_scale", type=click.FloatRange(min=0, min_open=True), default=30.0,
                 show_default=True, help="s of the arcface/cosface head (logits s * cos)."),
    click.option("--angular-margin", type=click.FloatRange(0, 1.5, max_open=True), default=None,
                 help="m of the arcface/cosface head. Default: 0.5 (arcface), 0.35 (cosface)."),
])

_subject = click.option(
    "--subject-regex", default=CKPLUS_SUBJECT_REGEX, show_default=True,
    help="Subject in file names (its 'subject' group or first group), used to split by subject.",
)


def _common_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("data", "out", "work_dir", "epochs", "batch_size", "steps_per_epoch", "optimizer",
            "learning_rate", "lr_schedule", "val_fraction", "seed", "random_crop", "flip", "resume",
            "strategy", "precision", "bn_batches", "quiet")
    return {k: kw.pop(k) for k in keys}


def _architecture_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("preset", "width", "embedding_size", "image_size", "weight_decay", "dropout", "standardization")
    return {k: kw.pop(k) for k in keys}


def _loss_config(kw: dict[str, Any]):
    from facelivenet.train.options import VerificationLossConfig

    return VerificationLossConfig(
        kind=kw.pop("loss_kind"), alpha=kw.pop("alpha"), beta=kw.pop("beta"), theta=kw.pop("theta"),
        margin=kw.pop("margin"), center_rate=kw.pop("center_rate"), scale=kw.pop("head_scale"),
        angular_margin=kw.pop("angular_margin"),
    )


def _report(result) -> dict[str, Any]:
    return {
        "model": str(result.model),
        "best_model": str(result.best_model) if result.best_model else None,
        "metric": result.metric,
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "steps": result.global_step,
        "work_dir": str(result.work_dir),
        "epochs": result.epochs,
    }


def _report_text(d: dict[str, Any]) -> str:
    lines = [f"model:      {d['model']}", f"steps:      {d['steps']}", f"logs:       {d['work_dir']}"]
    if d["best_model"]:
        lines.append(f"best model: {d['best_model']} ({d['metric']} {d['best_metric']:.4f} at epoch {d['best_epoch'] + 1})")
    if d["epochs"]:
        last = d["epochs"][-1]
        lines.append("last epoch: " + ", ".join(
            f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float) and k not in ("seconds",)
        ))
    return "\n".join(lines)


@click.command("train-verification", cls=Command)
@_common
@_architecture
@_verification_loss
@click.option("--model", "model", type=_FILE, default=None,
              help="Start from this model (its architecture) instead of a fresh network.")
@click.option("--min-images", "min_images_per_class", type=click.IntRange(min=1), default=2, show_default=True,
              help="Skip identities with fewer images.")
@click.option("--val-pairs", type=_FILE, default=None, help="LFW-style pairs file evaluated each epoch.")
@click.option("--val-images", type=_DIR, default=None, help="Image folder of --val-pairs (NAME/NAME_0001.jpg).")
def train_verification_cmd(as_json, **kw):
    """Stage 1: train the stem and branch 1 for face verification.

    Loss: softmax over the identities (DATA's folders) + alpha x class-wise triplet
    loss on the bottleneck features (or center loss), + L2 weight decay. Identities are
    split into training and validation; validation reports the 10-fold pair accuracy on
    the held-out identities (and the LFW accuracy with --val-pairs), which picks
    best.keras. The identity-logits head is used only for training.
    """
    from facelivenet.train.options import VerificationConfig
    from facelivenet.train.run import train_verification

    common = _common_kwargs(kw)
    cfg = VerificationConfig(**common, **_architecture_kwargs(kw), loss=_loss_config(kw), **kw)
    emit(_report(train_verification(cfg, reporter=ProgressBarReporter(cfg.quiet))), as_json, _report_text)


@click.command("train-expression", cls=Command)
@_common
@_architecture
@click.option("--model", type=_FILE, default=None, help="The stage-1 model (stem + branch 1 trained).")
@click.option("--from-scratch", is_flag=True, help="No stage-1 model: train a fresh network end to end.")
@click.option("--train-all", is_flag=True,
              help="With --model: fine-tune the stem and branch 1 too (the embedding changes: recalibrate).")
@click.option("--keep-branch2", is_flag=True,
              help="With --model: keep its branch 2 (already trained for expressions) instead of copying branch 1.")
@click.option("--center-loss-factor", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of a center loss on branch 2's 128-d features (the reference demo used 0.1).")
@click.option("--center-loss-alfa", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="The reference code's center rate: centers move (1 - alfa) of the way to their batch mean.")
@_subject
@click.option("--val-data", type=_DIR, default=None,
              help="Separate validation folder with the same class folders (instead of a subject split).")
def train_expression_cmd(as_json, **kw):
    """Stage 2: train branch 2 for facial expressions.

    With --model, the stem and branch 1 are frozen (unless --train-all) and branch 2
    starts as a copy of branch 1 (same shapes from Mixed_7a on; --keep-branch2 keeps the
    model's own); the loss is softmax cross-entropy over
    DATA's expression folders (+ the optional center loss, + weight decay). The final
    model's expression classes are DATA's folder names. Images are split by the subject
    in their file names (CK+ style); without subjects every image counts as its own.
    """
    from facelivenet.train.options import ExpressionConfig
    from facelivenet.train.run import train_expression

    cfg = ExpressionConfig(**_common_kwargs(kw), **_architecture_kwargs(kw), **kw)
    emit(_report(train_expression(cfg, reporter=ProgressBarReporter(cfg.quiet))), as_json, _report_text)


@click.command("train-multitask", cls=Command)
@_common
@_verification_loss
@click.option("--model", required=True, type=_FILE, help="The stage-1 model to start from.")
@click.option("--weight-lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Learning rate (plain SGD) of the dynamic-weight unit.")
@click.option("--keep-branch2", is_flag=True,
              help="Keep MODEL's branch 2 (e.g. from train-expression) instead of copying branch 1 into it.")
@_subject
def train_multitask_cmd(as_json, **kw):
    """FaceLiveNet+: joint verification + expression training with dynamic task weights.

    DATA has expression folders and the subject (identity) in each file name (CK+).
    The network minimises L3 = (1 + w1) L1 + w2 L2 (+ weight decay), L1 = identity
    softmax + alpha x class-wise triplet loss, L2 = expression softmax, with (w1, w2) =
    the batch mean of the dynamic-weight unit's softmax, held constant in L3.

    Rule for the unit (the original DMTL code's): only the unit's dense layer is
    trained, by plain SGD at --weight-lr, on its own objective
    w1 / (L1 + 0.01) + w2 / (L2 + 0.01) with L1, L2 held constant: weight moves toward
    the task whose loss is larger. w1, w2, L1, L2 are logged every step (steps.csv,
    TensorBoard) and plotted in WORK/task_weights.png.
    """
    from facelivenet.train.options import MultitaskConfig
    from facelivenet.train.run import train_multitask

    common = _common_kwargs(kw)
    cfg = MultitaskConfig(**common, loss=_loss_config(kw), **kw)
    emit(_report(train_multitask(cfg, reporter=ProgressBarReporter(cfg.quiet))), as_json, _report_text)
