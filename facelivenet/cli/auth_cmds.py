"""Authentication commands: ``challenge``, ``enroll``, ``gallery list|remove|upgrade``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import click

from facelivenet.cli.common import (
    quiet_accepted, CliError, InputFile, Command, challenge_draw, challenge_draw_options, emit, json_option,
    model_option, precision_option, quiet_option, runtime_option,
)


def _utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("challenge")
@challenge_draw_options
@click.option("--ttl", type=click.IntRange(1, 7 * 86400), default=180, show_default=True,
              help="Seconds the token stays valid (keep it short: see README, challenge tokens).")
@click.option("--identity", help="Bind the token to this enrolled identity of --gallery (and to the model): "
                                 "verify-video refuses it for anyone else, another enrolment or another model.")
@click.option("--gallery", "gallery_path", type=click.Path(dir_okay=False),
              help="The gallery --identity is enrolled in.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Signing key file (created with mode 0600 when missing). "
                   "Default: challenge.key in the user's facelivenet config directory.")
@model_option
@json_option
@quiet_option
def challenge(expressions, length, ttl, identity, gallery_path, key_file, model_path, as_json, quiet):
    """Issue a signed single-use challenge token for the offline (uploaded clip) mode.

    Prints the token on stdout (with --json: the token, what it asks for, the key id,
    what it is bound to, and the challenge's entropy in bits: log2 of the number of
    challenges the options can draw). The clip answering it must show Neutral, then
    the steps in order; the token is accepted once, before it expires. Expressions
    must be classes of the model that will verify the clip (--model, default the
    bundled one). With --identity NAME --gallery FILE the token is bound to NAME's
    enrolled template and the model; without, it is bound to no one (for --ref).
    """
    from facelivenet.auth.challenge import (
        challenge_count, challenge_entropy, is_move,
    )
    from facelivenet.auth.tokens import TokenBinding, issue_token, load_key
    from facelivenet.paths import model_expression_classes

    choices, length = challenge_draw(expressions, length)
    if bool(identity) != bool(gallery_path):
        raise CliError("--identity NAME and --gallery FILE go together (the token is bound to NAME's enrolment)")
    known = model_expression_classes(model_path)
    unknown = [c for c in choices if c not in known and not is_move(c)]
    if unknown:
        raise CliError(f"the model has no expression {', '.join(unknown)} (its classes: {', '.join(known)}; "
                       "head moves: turn_left, turn_right, chin_up)")
    binding = None
    if identity:
        from facelivenet.api import load_model
        from facelivenet.auth.gallery import open_gallery
        from facelivenet.backend import load_backend

        if not Path(gallery_path).is_file():  # before seconds of TensorFlow
            raise CliError(f"{gallery_path}: no such gallery file", "bad_gallery")
        load_backend()  # the model is read for its fingerprint: Keras, without TensorFlow's start-up log
        gallery = open_gallery(gallery_path, load_model(model_path))  # refuses a gallery of another model
        binding = TokenBinding.for_reference(gallery.fingerprint, identity, gallery.embeddings(identity))
    key = load_key(key_file)
    token, claims = issue_token(key, choices, length, ttl, binding=binding)
    result = {"token": token, **claims.to_dict(),
              "entropy_bits": round(challenge_entropy(choices, length), 3),
              "possible_challenges": challenge_count(choices, length)}
    if as_json:
        emit(result, True, str)
    else:
        click.echo(token)
        if not quiet:
            bound = f" for {identity}" if identity else ""
            click.echo(
                f"challenge{bound}: neutral, then {', then '.join(claims.expressions)}; "
                f"valid until {_utc(claims.expiry)} (once); {result['entropy_bits']:.1f} bits", err=True,
            )


@click.command("enroll", cls=Command)
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=InputFile("image"))
@click.option("--gallery", "gallery_path", required=True, type=click.Path(dir_okay=False),
              help="Gallery file (encrypted and authenticated; created when missing).")
@model_option
@click.option("--replace", is_flag=True, help="Replace NAME's embeddings instead of adding to them.")
@click.option("--cropped", is_flag=True,
              help="The images are already face crops: use them whole instead of detecting the face.")
@click.option("--force", is_flag=True,
              help="Enrol even if the faces do not match each other (or NAME's enrolled faces).")
@runtime_option
@precision_option
@json_option
@quiet_accepted
def enroll(name, images, gallery_path, model_path, replace, cropped, force, runtime, precision, as_json):
    """Enrol NAME from photos into a gallery (embeddings only, never the images).

    Each IMAGE must show exactly one face: it is detected and aligned as the model
    expects (with --cropped, each image is taken as a face crop). Faces of one NAME
    that do not match each other are refused (exit 2, with the distances) unless
    --force. NAME is stored in Unicode NFKC form; a NAME that looks like an enrolled
    one (case, look-alike Cyrillic or Greek letters) is refused. The gallery
    remembers the model's fingerprint and is refused by any other model.

    The gallery is encrypted and authenticated (AES-256-GCM) with gallery.key in the
    facelivenet config folder (created on first use; keep it, or the gallery cannot
    be read). Concurrent enrolments into one gallery are serialised by a lock file
    beside it (GALLERY.lock); a symlinked gallery is updated at its target.
    """
    from facelivenet.auth.gallery import DetectorCropper, whole_image
    from facelivenet.auth.gallery import enroll as enroll_images
    from facelivenet.runtime import inference_backend

    backend = inference_backend(runtime, model_path, precision=precision)
    model = backend.model
    cropper = whole_image if cropped else DetectorCropper.for_model(model.config, backend.detector)
    result = enroll_images(gallery_path, name, images, model, cropper=cropper, replace=replace, force=force)
    emit(result.to_dict(), as_json, lambda d: (
        f"enrolled {d['name']}: {d['added']} face(s) added, {d['total']} in total; "
        f"{d['identities']} identit{'y' if d['identities'] == 1 else 'ies'} in {d['gallery']}"
    ))


@click.group("gallery")
def gallery():
    """Inspect or edit an enrolment gallery: list, remove, upgrade.

    Galleries are encrypted and authenticated with gallery.key in the facelivenet
    config folder; an edited, truncated or spliced gallery is refused (exit 2).
    """


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
    """Remove identity NAME from the gallery (under the gallery's lock)."""
    from facelivenet.auth.gallery import remove_identity

    removed, left = remove_identity(gallery_path, name)
    emit({"gallery": gallery_path, "removed": removed.name, "embeddings": int(removed.embeddings.shape[0]),
          "identities": left}, as_json,
         lambda d: f"removed {d['removed']} ({d['embeddings']} face(s)); {d['identities']} left in {d['gallery']}")


@gallery.command("upgrade")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@quiet_accepted
def gallery_upgrade(file, as_json):
    """Protect a plain gallery FILE of an older facelivenet, in place.

    The embeddings and names are sealed (AES-256-GCM) with gallery.key in the
    facelivenet config folder (created when missing); names are NFKC-normalised.
    The plain file is trusted as it is: upgrade only galleries you trust. A gallery
    already protected is checked and left as it is.
    """
    from facelivenet.auth.gallery import upgrade_gallery

    result = upgrade_gallery(file)
    emit(result.to_dict(), as_json, lambda d: (
        f"{'protected' if d['upgraded'] else 'already protected'}: {d['gallery']} "
        f"({d['identities']} identit{'y' if d['identities'] == 1 else 'ies'})"
    ))
