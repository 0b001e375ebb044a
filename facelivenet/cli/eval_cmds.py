"""Evaluation commands: ``evaluate-verification``, ``evaluate-expression``,
``make-auth-protocol``, ``evaluate-auth``.

Each maps its options onto one function of :mod:`facelivenet.eval` and prints the
report (``--json``: the report as JSON on stdout). Plots are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import click

from facelivenet.cli.common import CliError, Command, emit, json_option, model_option, progress, quiet_option

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


def _png(path: str | None) -> None:
    if path and Path(path).suffix.lower() != ".png":
        raise CliError(f"{path}: plots are written as .png files")


def _chunks(label: str, quiet: bool):
    return lambda items, n: progress(items, label=label, length=n, quiet=quiet or n < 2)


@click.command("evaluate-verification", cls=Command)
@click.option("--pairs", "pairs_path", required=True, type=_FILE, help="LFW-style pairs file (pairs.txt).")
@click.option("--images", "images_dir", required=True, type=_DIR, help="Image folder: NAME/NAME_NNNN.jpg.")
@model_option
@click.option("--aligned/--detect", "aligned", default=True, show_default=True,
              help="--aligned: the images are face crops, used whole. --detect: find, pick (largest, "
                   "most central) and align the face first, as the model's alignment says (raw photos, "
                   "LFW deep-funneled); an image without a face gets a centre crop and is counted.")
@click.option("--flip", is_flag=True, help="Add the mirrored face's embedding to each face's (then renormalise).")
@click.option("--skip-missing", is_flag=True,
              help="Leave out pairs whose images are missing (listed in the report) instead of stopping.")
@click.option("--folds", type=click.IntRange(2), default=None, help="Folds of the protocol. Default: the file's (10).")
@click.option("--far", "far_target", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True,
              help="False accept rate of the reported VAL.")
@click.option("--roc", "roc_path", type=_FILE, default=None, help="Write the ROC curve to this .png.")
@json_option
@quiet_option
def evaluate_verification_cmd(pairs_path, images_dir, model_path, aligned, flip, skip_missing, folds, far_target,
                              roc_path, as_json, quiet):
    """The LFW protocol: K-fold accuracy, VAL@FAR, AUC, EER and the best threshold.

    Every distinct image is embedded once. Accuracy is the mean ± std over the folds
    of the held-out accuracy at the threshold best on the other folds; VAL@FAR uses
    the threshold interpolated for the target FAR on the other folds. Distances are
    squared L2 between unit embeddings. Images named in PAIRS that are missing stop
    the run (exit 2, listed) unless --skip-missing.
    """
    from facelivenet.api import load_model
    from facelivenet.data.pairs import read_pairs
    from facelivenet.eval.plots import plot_roc
    from facelivenet.eval.verification import evaluate_verification, format_report

    _png(roc_path)
    pairs = read_pairs(pairs_path)
    model = load_model(model_path)
    report = evaluate_verification(
        model, pairs, images_dir, detect=not aligned, flip=flip, skip_missing=skip_missing, n_folds=folds,
        far_target=far_target, progress=_chunks("embedding", quiet),
    )
    d = report.to_dict()
    if roc_path:
        plot_roc(roc_path, report.roc.fpr, report.roc.tpr, auc=report.auc, eer=report.eer.eer,
                 title=f"Verification ROC: {Path(pairs_path).name}, {d['pairs']} pairs")
        d["roc"] = roc_path
    emit(d, as_json, format_report)
