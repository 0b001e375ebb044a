"""Authentication commands: ``challenge``, ``enroll``, ``gallery list|remove``."""

from __future__ import annotations

import datetime as _dt

import click

from facelivenet.cli.common import (
    quiet_accepted, CliError, InputFile, Command, emit, json_option, model_option, quiet_option, runtime_option,
)


def _utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("challenge")
@click.option("--expressions", default="happy,surprise", show_default=True,
              help="Comma-separated expressions to draw the challenge from.")
@click.option("--length", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Number of expressions the user must show, in order (after Neutral).")
@click.option("--ttl", type=click.IntRange(1, 7 * 86400), default=180, show_default=True,
              help="Seconds the token stays valid.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Signing key file (created with mode 0600 when missing). "
                   "Default: challenge.key in the user's facelivenet config directory.")
@model_option
@json_option
@quiet_option
def challenge(expressions, length, ttl, key_file, model_path, as_json, quiet):
    """Issue a signed single-use challenge token for the offline (uploaded clip) mode.

    Prints the token on stdout (with --json: the token and what it asks for). The
    clip answering it must show Neutral, then the expressions in order; the token is
    accepted once, before it expires. The expressions must be classes of the model
    that will verify the clip (--model, default the bundled one).
    """
    from facelivenet.auth.challenge import parse_expression_list
    from facelivenet.auth.tokens import issue_token, load_key
    from facelivenet.paths import model_expression_classes

    choices = parse_expression_list(expressions)
    known = model_expression_classes(model_path)
    unknown = [c for c in choices if c not in known]
    if unknown:
        raise CliError(f"the model has no expression {', '.join(unknown)} (its classes: {', '.join(known)})")
    key = load_key(key_file)
    token, claims = issue_token(key, choices, length, ttl)
    result = {"token": token, **claims.to_dict()}
    if as_json:
        emit(result, True, str)
    else:
        click.echo(token)
        if not quiet:
            click.echo(
                f"challenge: neutral, then {', then '.join(claims.expressions)}; "
                f"valid until {_utc(claims.expiry)} (once)", err=True,
            )


@click.command("enroll", cls=Command)
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=InputFile("image"))
@click.option("--gallery", "gallery_path", required=True, type=click.Path(dir_okay=False),
              help="Gallery file (JSON; created when missing).")
@model_option
@click.option("--replace", is_flag=True, help="Replace NAME's embeddings instead of adding to them.")
@click.option("--cropped", is_flag=True,
              help="The images are already face crops: use them whole instead of detecting the face.")
@click.option("--force", is_flag=True,
              help="Enrol even if the faces do not match each other (or NAME's enrolled faces).")
@runtime_option
@json_option
@quiet_accepted
def enroll(name, images, gallery_path, model_path, replace, cropped, force, runtime, as_json):
    """Enrol NAME from photos into a gallery (embeddings only, never the images).

    Each IMAGE must show exactly one face: it is detected and aligned as the model
    expects (with --cropped, each image is taken as a face crop). Faces of one NAME
    that do not match each other are refused (exit 2, with the distances) unless
    --force. The gallery
    remembers the model's fingerprint and is refused by any other model.
    """
    from facelivenet.auth.gallery import DetectorCropper, whole_image
    from facelivenet.auth.gallery import enroll as enroll_images
    from facelivenet.runtime import inference_backend

    backend = inference_backend(runtime, model_path)
    model = backend.model
    cropper = whole_image if cropped else DetectorCropper.for_model(model.config, backend.detector)
    result = enroll_images(gallery_path, name, images, model, cropper=cropper, replace=replace, force=force)
    emit(result.to_dict(), as_json, lambda d: (
        f"enrolled {d['name']}: {d['added']} face(s) added, {d['total']} in total; "
        f"{d['identities']} identit{'y' if d['identities'] == 1 else 'ies'} in {d['gallery']}"
    ))


@click.group("gallery")
def gallery():
    """Inspect or edit an enrolment gallery: list, remove."""


def _gallery_option(func):
    return click.option("--gallery", "gallery_path", required=True, type=click.Path(dir_okay=False),
                        help="Gallery file.")(func)


@gallery.command("list")
@_gallery_option
@json_option
@quiet_accepted
def gallery_list(gallery_path, as_json):
    """List the enrolled identities and the model the gallery belongs to."""
    from facelivenet.auth.gallery import Gallery

    g = Gallery.load(gallery_path)
    result = {
        "gallery": gallery_path,
        "model": {"fingerprint": g.fingerprint, "embedding_size": g.embedding_size, "source": g.model_source},
        "identities": [
            {"name": n, "embeddings": int(g.get(n).embeddings.shape[0]),
             "sources": g.get(n).sources, "enrolled": g.get(n).enrolled}
            for n in g.names()
        ],
    }
    emit(result, as_json, _gallery_text)


def _gallery_text(d: dict) -> str:
    from facelivenet.auth.gallery import short_fingerprint

    m = d["model"]
    lines = [f"{d['gallery']}: {len(d['identities'])} identities; model {short_fingerprint(m['fingerprint'])}"
             + (f" ({m['source']})" if m["source"] else "") + f", {m['embedding_size']}-d embeddings"]
    for i in d["identities"]:
        lines.append(f"  {i['name']}: {i['embeddings']} face(s), enrolled {i['enrolled']}")
    return "\n".join(lines)


@gallery.command("remove")
@click.argument("name")
@_gallery_option
@json_option
@quiet_accepted
def gallery_remove(name, gallery_path, as_json):
    """Remove identity NAME from the gallery."""
    from facelivenet.auth.gallery import Gallery

    g = Gallery.load(gallery_path)
    removed = g.remove(name)
    g.save()
    emit({"gallery": gallery_path, "removed": name, "embeddings": int(removed.embeddings.shape[0]),
          "identities": len(g)}, as_json,
         lambda d: f"removed {d['removed']} ({d['embeddings']} face(s)); {d['identities']} left in {d['gallery']}")
