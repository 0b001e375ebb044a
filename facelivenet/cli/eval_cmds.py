"""Evaluation commands: ``evaluate-verification``, ``evaluate-expression``,
``make-auth-protocol``, ``evaluate-auth``.

Each maps its options onto one function of :mod:`facelivenet.eval` and prints the
report (``--json``: the report as JSON on stdout). Plots are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import click

from facelivenet.cli.common import (
    quiet_accepted,
    CliError, Command, emit, json_option, model_option, progress, progress_bar, quiet_option,
)

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


def _png(path: str | None) -> None:
    if path and Path(path).suffix.lower() != ".png":
        raise CliError(f"{path}: plots are written as .png files")


def _roc_png(d: dict, path: str, roc, title: str) -> None:
    """Draw ``roc`` (with ``d``'s AUC, EER and the model's operating point) to ``path``
    and name the file in ``d``."""
    from facelivenet.eval.plots import plot_roc

    own = d.get("model_threshold")
    point = (own["far"], own["tar"], own["threshold"]) if own and own.get("far") is not None else None
    plot_roc(path, roc.fpr, roc.tpr, auc=d["auc"], eer=d["eer"], title=title, operating_point=point)
    d["roc"] = path


def _chunks(label: str, quiet: bool):
    return lambda items, n: progress(items, label=label, length=n, quiet=quiet or n < 2)


@click.command("evaluate-verification", cls=Command)
@click.option("--pairs", "pairs_path", required=True, type=_FILE, help="LFW-style pairs file (pairs.txt).")
@click.option("--images", "images_dir", required=True, type=_DIR, help="Image folder: NAME/NAME_NNNN.jpg.")
@model_option
@click.option("--detect/--aligned", "detect", default=True, show_default=True,
              help="--detect (default): find, pick (largest, most central) and align the face first, as "
                   "the model's alignment says (raw photos, LFW deep-funneled); an image without a face "
                   "gets a centre crop and is counted. --aligned: the images are face crops, used whole.")
@click.option("--max-pairs", type=click.IntRange(2), default=None,
              help="Evaluate at most this many pairs, spread evenly over the file (a quick check).")
@click.option("--flip", is_flag=True, help="Add the mirrored face's embedding to each face's (then renormalise).")
@click.option("--skip-missing", is_flag=True,
              help="Leave out pairs whose images are missing (listed in the report) instead of stopping.")
@click.option("--folds", type=click.IntRange(2), default=None, help="Folds of the protocol. Default: the file's (10).")
@click.option("--far", "far_target", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True,
              help="False accept rate of the reported VAL.")
@click.option("--roc", "roc_path", type=_FILE, default=None, help="Write the ROC curve to this .png.")
@json_option
@quiet_option
def evaluate_verification_cmd(pairs_path, images_dir, model_path, detect, max_pairs, flip, skip_missing, folds,
                              far_target, roc_path, as_json, quiet):
    """The LFW protocol: K-fold accuracy, VAL@FAR, AUC, EER and the best threshold.

    Every distinct image is embedded once. Accuracy is the mean ± std over the folds
    of the held-out accuracy at the threshold best on the other folds; VAL@FAR uses
    the threshold interpolated for the target FAR on the other folds (a warning when
    the target is below 1 / the different pairs); the model's own threshold is
    reported too (accuracy, TAR, FAR), and marked on the ROC. Distances are
    squared L2 between unit embeddings. Images named in PAIRS that are missing stop
    the run (exit 2, listed) unless --skip-missing.
    """
    from facelivenet.api import load_model
    from facelivenet.data.pairs import read_pairs
    from facelivenet.eval.verification import evaluate_verification, format_report

    _png(roc_path)
    pairs = read_pairs(pairs_path)
    model = load_model(model_path)
    report = evaluate_verification(
        model, pairs, images_dir, detect=detect, flip=flip, skip_missing=skip_missing, n_folds=folds,
        far_target=far_target, max_pairs=max_pairs, progress=_chunks("embedding", quiet),
    )
    d = report.to_dict()
    if not d["far_measurable"]:
        click.echo(f"warning: VAL @ FAR {far_target:g} cannot be measured on {d['pairs'] - d['same_pairs']} "
                   "different pairs (fewer than 1 / FAR)", err=True)
    if roc_path:
        _roc_png(d, roc_path, report.roc, f"Verification ROC: {Path(pairs_path).name}, {d['pairs']} pairs")
    emit(d, as_json, format_report)


@click.command("evaluate-expression", cls=Command)
@click.option("--data", "data_dir", required=True, type=_DIR,
              help="One folder per expression of face crops (e.g. ckplus48, fer2013/validation).")
@model_option
@click.option("--skip-unknown", is_flag=True,
              help="Leave out folders that match no class of the model (e.g. contempt for a FER2013 model).")
@click.option("--classes", "only_classes", default=None,
              help="Evaluate the sub-problem of these classes, e.g. neutral,happy,surprise: other "
                   "folders are left out and the prediction is the most probable of these.")
@click.option("--confusion", "confusion_path", type=_FILE, default=None,
              help="Write the normalised confusion matrix to this .png.")
@click.option("--cv", "cv_folds", type=click.IntRange(2), default=None,
              help="Subject-independent K-fold cross-validation: train stage 2 on K-1 folds of subjects "
                   "(from --model as the stage-1 model, or --from-scratch), test on the held-out fold.")
@click.option("--subject-regex", default=None,
              help="With --cv: the subject in file names (its 'subject' group or first group). "
                   "Default: CK+ names S010_004_00000017.png.")
@click.option("--from-scratch", is_flag=True, help="With --cv: train a fresh network per fold (no stage-1 model).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="With --cv: epochs per fold.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="With --cv.")
@click.option("--steps-per-epoch", type=click.IntRange(1), default=None, help="With --cv: cap on steps per epoch.")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, min_open=True), default=0.01, show_default=True,
              help="With --cv.")
@click.option("--optimizer", default="momentum", show_default=True, help="With --cv (see train-expression).")
@click.option("--preset", default="simple", show_default=True, help="With --cv --from-scratch.")
@click.option("--image-size", type=click.IntRange(75), default=160, show_default=True, help="With --cv --from-scratch.")
@click.option("--embedding-size", type=click.IntRange(1), default=128, show_default=True,
              help="With --cv --from-scratch.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --cv: folds and training.")
@click.option("--work-dir", type=_DIR, default=None,
              help="With --cv: keep the fold models and logs here (default: a temporary folder, removed).")
@json_option
@quiet_option
def evaluate_expression_cmd(data_dir, model_path, skip_unknown, only_classes, confusion_path, cv_folds, subject_regex,
                            from_scratch, epochs, batch_size, steps_per_epoch, learning_rate, optimizer,
                            preset, image_size, embedding_size, seed, work_dir, as_json, quiet):
    """Expression accuracy, per-class precision/recall and confusion matrix on DATA.

    Folder names are matched to the model's classes case-insensitively and across
    synonyms (anger = angry, sadness = sad, happiness = happy). With --cv K the
    papers' protocol runs instead: no subject in both the training and the test
    side of a fold; reports the mean ± std of the fold accuracies.
    """
    from facelivenet.eval.expression import cross_validate_expression, evaluate_expression, format_report
    from facelivenet.eval.plots import plot_confusion
    from facelivenet.eval.metrics import normalize_rows

    _png(confusion_path)
    if cv_folds is None:
        if subject_regex or from_scratch or work_dir:
            raise CliError("--subject-regex, --from-scratch and --work-dir go with --cv K")
        from facelivenet.api import load_model

        only = [c.strip() for c in only_classes.split(",") if c.strip()] if only_classes else None
        report = evaluate_expression(load_model(model_path), data_dir, skip_unknown=skip_unknown, only=only,
                                     progress=_chunks("predicting", quiet))
        title = f"Expressions: {Path(data_dir).name} ({report.accuracy:.3f})"
    else:
        from facelivenet.data.datasets import CKPLUS_SUBJECT_REGEX

        if only_classes:
            raise CliError("--classes does not apply to --cv (the trained classes are DATA's folders)")
        if skip_unknown:
            raise CliError("--skip-unknown does not apply to --cv (the trained classes are DATA's folders)")
        train_options = dict(
            model=model_path, from_scratch=from_scratch, epochs=epochs, batch_size=batch_size,
            steps_per_epoch=steps_per_epoch, learning_rate=learning_rate, optimizer=optimizer,
            preset=preset, image_size=image_size, embedding_size=embedding_size, quiet=quiet,
        )

        def on_fold(r):
            if not quiet:
                click.echo(f"fold {r.fold + 1}/{cv_folds}: {r.test_subjects} subjects, {r.test_images} images, "
                           f"accuracy {r.accuracy:.4f}", err=True)

        report = cross_validate_expression(
            data_dir, k=cv_folds, subject_regex=subject_regex or CKPLUS_SUBJECT_REGEX,
            train_options=train_options, work_dir=work_dir, seed=seed, on_fold=on_fold,
        )
        title = f"Expressions: {Path(data_dir).name}, {cv_folds}-fold CV ({report.to_dict()['accuracy']:.3f})"
    d = report.to_dict()
    if confusion_path:
        plot_confusion(confusion_path, normalize_rows(report.confusion), report.classes, title=title)
        d["confusion_png"] = confusion_path
    emit(d, as_json, format_report)


@click.command("make-auth-protocol")
@click.option("--data", "data_dir", required=True, type=_DIR,
              help="Expression folders with the subject in each file name (CK+: ckplus48).")
@click.option("--subject-regex", default=None,
              help="The subject in file names (its 'subject' group or first group). Default: CK+ names.")
@click.option("--out", "out_path", required=True, type=_FILE, help="Protocol CSV to write.")
@click.option("--required", default="happy,surprise", show_default=True,
              help="Comma-separated required expressions (the papers': happy, surprise).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the choice of impostors and wrong expressions.")
@json_option
@quiet_accepted
def make_auth_protocol_cmd(data_dir, subject_regex, out_path, required, seed, as_json):
    """Build the holistic authentication protocol's samples (the four cells of Table VI).

    Each row: probe, reference, same_id, required_expression, probe_expression (+
    subjects and cell). Reference = the subject's neutral image; without a neutral
    folder (ckplus48) the subject's first image from a class that is not a required
    expression (probes never come from the reference's folder, so never from its CK+
    sequence). The rule used is written as a '#' comment at the top of the CSV.
    """
    from facelivenet.data.datasets import CKPLUS_SUBJECT_REGEX
    from facelivenet.eval.holistic import make_auth_protocol, write_protocol

    if Path(out_path).suffix.lower() != ".csv":
        raise CliError(f"{out_path}: the protocol is written as a .csv file")
    names = tuple(e.strip() for e in required.split(",") if e.strip())
    if not names:
        raise CliError("--required names no expression")
    regex = subject_regex or CKPLUS_SUBJECT_REGEX
    protocol = make_auth_protocol(data_dir, regex, required=names, seed=seed)
    header = [f"facelivenet auth protocol: data {Path(data_dir).resolve()}, subject regex {regex}, "
              f"required {','.join(names)}, seed {seed}"]
    write_protocol(out_path, protocol, header)
    d = {"protocol": out_path, "samples": len(protocol.samples), "cells": protocol.cell_counts(),
         "subjects": protocol.subjects, "subjects_without_own_probes": list(protocol.subjects_without_own_probes),
         "notes": protocol.notes}
    emit(d, as_json, lambda d: "\n".join(
        [f"{d['protocol']}: {d['samples']} samples from {d['subjects']} subjects"]
        + [f"  {c}: {n}" for c, n in d["cells"].items()] + [f"  note: {n}" for n in d["notes"]]))


@click.command("evaluate-auth", cls=Command)
@click.option("--protocol", "protocol_path", required=True, type=_FILE, help="Protocol CSV (make-auth-protocol).")
@model_option
@click.option("--threshold", "verification_threshold", type=click.FloatRange(0, 4), default=None,
              help="Verification threshold (squared L2). Default: the model's.")
@click.option("--expression-threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Probability at which an expression counts as shown. Default: the model's.")
@click.option("--roc", "roc_path", type=_FILE, default=None, help="Write the fused score's ROC to this .png.")
@json_option
@quiet_option
def evaluate_auth_cmd(protocol_path, model_path, verification_threshold, expression_threshold, roc_path,
                      as_json, quiet):
    """Per-sample fused decisions on a protocol: Acc_auth, Acc_verif, Acc_expre, Acc_live.

    A sample is accepted iff the probe matches the reference AND shows the required
    expression; it should be iff same_id AND the probe's expression is the required
    one. Also: the 2x2 cells (samples, accepted) and ROC/EER over the fused score
    min((t_v - d)/t_v, (p - t_e)/(1 - t_e)), which is >= 0 exactly when accepted.
    Images are face crops, used whole.
    """
    from facelivenet.api import load_model
    from facelivenet.eval.holistic import evaluate_auth, format_report, read_protocol

    _png(roc_path)
    samples = read_protocol(protocol_path)
    model = load_model(model_path)
    d = evaluate_auth(model, samples, verification_threshold=verification_threshold,
                      expression_threshold=expression_threshold, progress=_chunks("analysing", quiet))
    roc = d.pop("_roc", None)
    if roc_path:
        if roc is None:
            raise CliError("the protocol has only genuine or only impostor samples: no ROC to draw")
        _roc_png(d, roc_path, roc, f"Authentication ROC (fused score): {Path(protocol_path).name}")
    emit(d, as_json, format_report)


@click.command("plot-embeddings", cls=Command)
@click.option("--data", "data_dir", required=True, type=_DIR,
              help="One folder per identity (att_faces), or with --subject-regex any folders (ckplus48).")
@click.option("--out", "out_path", required=True, type=_FILE, help="The t-SNE plot (.png).")
@model_option
@click.option("--subject-regex", default=None,
              help="Identity = the subject in each file name (e.g. '^(S\\d+)_' for CK+) instead of the folder.")
@click.option("--max-images", type=click.IntRange(4), default=2000, show_default=True,
              help="Seeded sample of at most this many images (t-SNE is quadratic).")
@click.option("--perplexity", type=click.FloatRange(1), default=30.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@quiet_option
def plot_embeddings_cmd(data_dir, out_path, model_path, subject_regex, max_images, perplexity, seed, as_json, quiet):
    """t-SNE map of the embeddings of DATA's face crops, coloured by identity.

    Also reports the leave-one-out nearest-neighbour identity accuracy in the
    embedding space.
    """
    from facelivenet.api import load_model
    from facelivenet.eval.embeddings import plot_embeddings

    _png(out_path)
    d = plot_embeddings(load_model(model_path), data_dir, out_path, subject_regex=subject_regex,
                        max_images=max_images, perplexity=perplexity, seed=seed,
                        progress=_chunks("embedding", quiet))
    nn = d["nearest_neighbour_accuracy"]
    emit(d, as_json, lambda d: f"{d['out']}: {d['images']} images, {d['identities']} identities; "
                               f"nearest-neighbour identity accuracy {'-' if nn is None else f'{nn:.4f}'}")


@click.command("calibrate", cls=Command)
@click.option("--data", "data_dir", required=True, type=_DIR,
              help="Aligned face crops, one sub-folder per identity (validation identities).")
@click.option("--out", "out_path", required=True, type=_FILE, help="Calibrated model file (.keras).")
@model_option
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Use only the identities train-verification held out with this --val-fraction "
                   "and --seed (0: every identity of DATA).")
@click.option("--seed", type=int, default=0, show_default=True, help="Split and pair-sampling seed.")
@click.option("--far", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Pick the threshold for this false-accept rate instead of the best accuracy.")
@click.option("--margin", type=click.IntRange(0), default=None,
              help="Also record the crop margin (pixels of the model's input) that DATA was aligned with.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@json_option
@quiet_option
def calibrate_cmd(data_dir, out_path, model_path, val_fraction, seed, far, margin, force, as_json, quiet):
    """Choose the verification threshold on validation identities and write it into a model copy.

    Embeds DATA's faces, samples balanced same/different pairs of its identities and
    picks the squared-L2 threshold of best accuracy (or the one for --far). The threshold
    is then what every accept/reject uses. Calibrate on validation identities, never on a
    benchmark's test pairs (LFW).
    """
    from facelivenet.api import load_model
    from facelivenet.eval.calibrate import calibrate_verification, calibration_images

    out = _calibrated_out(out_path, force)
    model = load_model(model_path)
    paths, groups, _ = calibration_images(data_dir, val_fraction=val_fraction, seed=seed)
    with progress_bar(len(paths), label="embedding", quiet=quiet) as bar:
        result = calibrate_verification(model, paths, groups, seed=seed, far=far, on_progress=bar.update,
                                        source=data_dir)
    changes = {"verification_threshold": round(result.threshold, 4)}
    if margin is not None:
        changes["margin"] = margin
    _write_calibrated(model, changes, out)
    d = {"model": str(model.source), "out": str(out), "data": data_dir, **result.to_dict(),
         "recorded": changes}
    emit(d, as_json, _calibrate_text)


def _calibrated_out(out_path: str, force: bool) -> Path:
    out = Path(out_path)
    if out.suffix != ".keras":
        raise CliError(f"{out_path}: the model file name must end in .keras")
    if out.exists() and not force:
        raise CliError(f"{out_path}: already exists (use --force to overwrite)")
    return out


def _write_calibrated(model, changes: dict, out: Path) -> None:
    """A copy of ``model``'s network with ``changes`` to its config, saved to ``out``."""
    from facelivenet.models.io import save_network
    from facelivenet.train.stages import with_config

    save_network(with_config(model.network, **changes), out)


@click.command("calibrate-neutral", cls=Command)
@click.option("--data", "data_dirs", required=True, multiple=True, type=_DIR,
              help="Held-out face crops in the model's geometry, one sub-folder per expression "
                   "(e.g. manifest-faces --by expression --split val). Repeatable.")
@click.option("--out", "out_path", required=True, type=_FILE, help="Calibrated model file (.keras).")
@model_option
@click.option("--recall", type=click.FloatRange(0, 1, min_open=True), default=0.8, show_default=True,
              help="Neutral recall to reach on DATA's neutral faces.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@json_option
@quiet_option
def calibrate_neutral_cmd(data_dirs, out_path, model_path, recall, force, as_json, quiet):
    """Choose the Neutral threshold on held-out faces and write it into a model copy.

    A challenge starts from Neutral: a frame shows it when Neutral is the most probable
    class and p(neutral) reaches the model's neutral_threshold. This picks the largest
    threshold at which --recall of DATA's neutral faces show Neutral, and reports the
    share of the other faces that would too. Calibrate on held-out faces (FER+
    validation, held-out performers), never on the clips you test with.
    """
    from facelivenet.api import load_model
    from facelivenet.data.datasets import scan_class_folders
    from facelivenet.eval.calibrate import calibrate_neutral

    out = _calibrated_out(out_path, force)
    model = load_model(model_path)
    paths, labels = [], []
    for d in data_dirs:
        data = scan_class_folders(d)
        paths += list(data.paths)
        labels += [data.class_names[i] for i in data.labels]
    result = calibrate_neutral(model, paths, labels, recall=recall, progress=_chunks("predicting", quiet),
                               source=", ".join(data_dirs))
    changes = {"neutral_threshold": result.threshold}
    _write_calibrated(model, changes, out)
    d = {"model": str(model.source), "out": str(out), "data": list(data_dirs), **result.to_dict(),
         "recorded": changes}
    emit(d, as_json, _calibrate_neutral_text)


def _calibrate_neutral_text(d: dict) -> str:
    lines = [
        f"calibrated on {d['neutral_faces']} neutral and {d['other_faces']} other faces",
        f"threshold:  Neutral most probable and p(neutral) >= {d['threshold']:.4f}",
        f"Neutral recall {d['recall']:.4f} (asked {d['recall_target']:g}), other faces shown as Neutral "
        f"{d['false_neutral']:.4f}; at the expression threshold: {d['recall_at_expression_threshold']:.4f}, "
        f"{d['false_neutral_at_expression_threshold']:.4f}",
        f"wrote {d['out']} (neutral_threshold = {d['recorded']['neutral_threshold']})",
    ]
    if not d["reached"]:
        lines.insert(2, "warning: Neutral is the most probable class of too few neutral faces to reach "
                        "the recall asked; the threshold admits all of them")
    return "\n".join(lines)


def _calibrate_text(d: dict) -> str:
    return "\n".join([
        f"calibrated on {d['identities']} identities, {d['images']} images, {d['pairs']} pairs ({d['rule']})",
        f"threshold:      squared L2 <= {d['threshold']:.4f}",
        f"on these pairs: accuracy {d['accuracy']:.4f}, VAL {d['val']:.4f} at FAR {d['far']:.4f}; "
        f"10-fold accuracy {d['kfold_accuracy']:.4f}",
        f"wrote {d['out']} ({', '.join(f'{k} = {v}' for k, v in d['recorded'].items())})",
    ])
