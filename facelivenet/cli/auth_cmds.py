"""Authentication commands: ``challenge``, ``enroll``, ``gallery list|remove``."""

from __future__ import annotations

import datetime as _dt

import click

from facelivenet.cli.common import CliError, Command, emit, json_option, model_option, quiet_option


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
@json_option
def challenge(expressions, length, ttl, key_file, as_json):
    """Issue a signed single-use challenge token for the offline (uploaded clip) mode.

    Prints the token on stdout (with --json: the token and what it asks for). The
    clip answering it must show Neutral, then the expressions in order; the token is
    accepted once, before it expires.
    """
    from facelivenet.auth.challenge import parse_expression_list
    from facelivenet.auth.tokens import issue_token, load_key

    choices = parse_expression_list(expressions)
    key = load_key(key_file)
    token, claims = issue_token(key, choices, length, ttl)
    result = {"token": token, **claims.to_dict()}
    if as_json:
        emit(result, True, str)
    else:
        click.echo(token)
        click.echo(
            f"challenge: neutral, then {', then '.join(claims.expressions)}; "
            f"valid until {_utc(claims.expiry)} (once)", err=True,
        )
