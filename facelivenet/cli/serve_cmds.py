"""``facelivenet serve``: the HTTP backend of the offline mode and its browser page."""

from __future__ import annotations

import click

from facelivenet.cli.common import (
    CliError, Command, InputFile, challenge_draw, challenge_draw_options, emit, json_option, model_option,
    precision_option, quiet_option, runtime_option,
)


@click.command("serve", cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only; put a TLS proxy in front for others).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--gallery", "gallery_path", type=click.Path(dir_okay=False),
              help="Enrolment gallery the challenges are for (created by POST /v1/enroll if missing).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; each loads the model once and analyses one request at a time.")
@click.option("--api-key-file", type=InputFile("key"),
              help="Key file (hex, mode 0600, as `facelivenet challenge` keeps its key) of the admin endpoints "
                   "(enrol, gallery); send it as X-API-Key. Without it they are off.")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Private folder of the challenge store, attempt counts and audit images "
                   "(default: the config directory's serve/).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow this origin by CORS (repeatable; default: CORS off).")
@challenge_draw_options
@click.option("--attempt-limit", type=click.IntRange(1), default=5, show_default=True,
              help="Failed attempts in 10 min that lock an identity (and a client) for 15 min.")
@model_option
@runtime_option
@precision_option
@json_option
@quiet_option
def serve(host, port, gallery_path, workers, api_key_file, state_dir, cors_origins, expressions, length, attempt_limit,
          model_path, runtime, precision, as_json, quiet):
    """Serve the offline mode over HTTP: the page at /, the API under /v1, its OpenAPI page at /docs.

    A client asks POST /v1/challenges for a challenge bound to an enrolled identity,
    films the answer and uploads it to POST /v1/challenges/{id}/video: the answer is
    the decision document of verify-video --json. 5 failed attempts in 10 min lock the
    identity (and the client) for 15 min. --json prints where it listens as JSON on
    stdout before serving; stop it with Ctrl-C.
    """
    import os
    from pathlib import Path

    try:
        import uvicorn
    except ImportError:
        raise CliError("serving needs FastAPI and uvicorn: pip install 'facelivenet[serve]'") from None
    from facelivenet.auth.limits import LimitPolicy
    from facelivenet.auth.configdir import config_dir
    from facelivenet.auth.tokens import load_key
    from facelivenet.serve.settings import ServeSettings

    choices, length = challenge_draw(expressions, length)
    settings = ServeSettings(
        state_dir=Path(state_dir) if state_dir else config_dir() / "serve",
        model=model_path, gallery=Path(gallery_path) if gallery_path else None,
        api_key=load_key(api_key_file, create=False) if api_key_file else None,
        cors_origins=tuple(cors_origins), limits=LimitPolicy(max_failures=attempt_limit),
        challenge_choices=choices, challenge_length=length, runtime=runtime,
        precision=precision,
    )
    # The workers are separate processes: they rebuild the settings from the environment.
    os.environ[_SETTINGS_ENV] = _encode(settings, api_key_file)
    url = f"http://{host}:{port}/"
    started = {"url": url, "docs": url + "docs", "workers": workers, "state_dir": str(settings.state_dir),
               "gallery": None if settings.gallery is None else str(settings.gallery),
               "admin_endpoints": settings.api_key is not None}
    if as_json or not quiet:
        emit(started, as_json, lambda d: f"facelivenet serve: {d['url']} (API docs at {d['docs']}), "
                                         f"{d['workers']} worker(s)")
    uvicorn.run("facelivenet.cli.serve_cmds:worker_app", factory=True, host=host, port=port, workers=workers,
                log_level="error" if quiet else "warning")


_SETTINGS_ENV = "FACELIVENET_SERVE_SETTINGS"


def _encode(settings, api_key_file: str | None) -> str:
    """The settings for the workers; the key travels as its file's path (each worker reads and checks it)."""
    import json
    from pathlib import Path

    return json.dumps({"state_dir": str(settings.state_dir),
                       "model": None if settings.model is None else str(settings.model),
                       "gallery": None if settings.gallery is None else str(settings.gallery),
                       "api_key_file": None if api_key_file is None else str(Path(api_key_file).resolve()),
                       "cors_origins": list(settings.cors_origins), "max_failures": settings.limits.max_failures,
                       "challenge_choices": list(settings.challenge_choices),
                       "challenge_length": settings.challenge_length, "runtime": settings.runtime,
                       "precision": settings.precision})


def worker_app():
    """The app of one uvicorn worker (its factory), from the settings ``serve`` left in the environment,
    with the model loaded (the worker answers /healthz once it can analyse)."""
    import json
    import os
    from pathlib import Path

    from facelivenet.auth.limits import LimitPolicy
    from facelivenet.auth.tokens import load_key
    from facelivenet.serve import create_app
    from facelivenet.serve.settings import ServeSettings

    d = json.loads(os.environ[_SETTINGS_ENV])
    app = create_app(ServeSettings(
        state_dir=Path(d["state_dir"]), model=d["model"], gallery=None if d["gallery"] is None else Path(d["gallery"]),
        api_key=None if d["api_key_file"] is None else load_key(d["api_key_file"], create=False),
        cors_origins=tuple(d["cors_origins"]), limits=LimitPolicy(max_failures=d["max_failures"]),
        challenge_choices=tuple(d["challenge_choices"]), challenge_length=d["challenge_length"],
        runtime=d.get("runtime"), precision=d.get("precision"),
    ))
    app.state.service.auth  # the model and detector load now, once per worker, not on a user's request
    return app
