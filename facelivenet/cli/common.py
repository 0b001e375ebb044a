"""Pieces every command shares: options, output, progress, errors → exit codes.

Exit codes (every command): 0 success (for a verification: accept), 1 a negative
decision (reject), 2 an error (bad input, usage) reported as one line on stderr;
with ``--json`` the error is also printed on stdout as ``{"error": {"code": ...,
"message": ...}}`` (codes: :data:`facelivenet.errors.ERROR_CODES`, ``usage`` for a
command-line mistake, ``internal`` for a bug of ours).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import warnings
from typing import Any, Callable, Iterable, TypeVar

import click

from facelivenet.backend import load_backend  # noqa: F401 (the CLI's import of Keras)
from facelivenet.errors import FaceLiveNetError, error_code

T = TypeVar("T")

EXIT_OK = 0
EXIT_REJECT = 1
EXIT_ERROR = 2
DEBUG_ENV = "FACELIVENET_DEBUG"


class CliError(click.ClickException):
    """A one-line error that exits with code 2; ``code`` is its machine-readable kind."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, code: str = "bad_input"):
        super().__init__(message)
        self.code = code

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class Command(click.Command):
    """A command that needs the network: the backend is imported (quietly) before it runs,
    unless the command has a ``--runtime`` other than ``keras`` (ONNX Runtime needs no
    Keras; ``auto`` imports it only if it falls back to Keras, through the same quiet import)."""

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.params.get("runtime", "keras") == "keras":
            load_backend()
        return super().invoke(ctx)


class FaceLiveNetGroup(click.Group):
    """Click group that turns our exceptions (and stray ones) into one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        wants_json = _wants_json(ctx)  # Click empties the arguments as it dispatches them
        warnings.showwarning = _one_line_warning
        try:
            return self._invoke(ctx)
        except click.ClickException as exc:
            if not wants_json:
                if isinstance(exc, click.UsageError):  # one line, not Click's three
                    where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
                    click.echo(f"Error: {exc.format_message()} (see '{where} --help')", err=True)
                    ctx.exit(exc.exit_code)
                raise
            code = getattr(exc, "code", None) or ("usage" if isinstance(exc, click.UsageError) else "error")
            message = exc.format_message()
            click.echo(json.dumps({"error": {"code": code, "message": message}}))
            click.echo(f"Error: {message}", err=True)
            ctx.exit(exc.exit_code)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except FaceLiveNetError as exc:
            raise CliError(str(exc), error_code(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except MemoryError:
            raise CliError("out of memory; use smaller inputs or batches", "out_of_memory") from None
        except Exception as exc:  # a bug of ours: one line, the traceback on demand
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            raise CliError(
                f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                f"(set {DEBUG_ENV}=1 for the traceback)", "internal",
            ) from None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (Keras, NumPy) as one line on stderr, not the file, line and source."""
    text = str(message).strip().splitlines()
    click.echo(f"warning: {text[0] if text else category.__name__}", err=True)


def _wants_json(ctx: click.Context) -> bool:
    """Whether the subcommand's arguments ask for ``--json`` (read before they are parsed)."""
    args = list(getattr(ctx, "_protected_args", None) or []) + list(ctx.args or [])
    return "--json" in args[: args.index("--")] if "--" in args else "--json" in args


class InputFile(click.ParamType):
    """A file the command reads: checked (exists, readable, not empty, not a directory)
    when the command line is parsed, so a typo fails in milliseconds, before TensorFlow
    is imported, with the library's one-line message (``kind``: "image", "video", "model")."""

    name = "file"

    def __init__(self, kind: str):
        self.kind = kind

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from facelivenet.errors import GalleryError, ImageReadError, InputError, VideoReadError
        from facelivenet.paths import resolve_model_path
        from facelivenet.utils import check_input_file

        if value is None:
            return value
        try:
            if self.kind == "model":
                resolve_model_path(value)
            else:
                error = {"image": ImageReadError, "video": VideoReadError, "gallery": GalleryError}.get(
                    self.kind, InputError)
                check_input_file(value, self.kind, error)
        except FaceLiveNetError as exc:
            raise CliError(str(exc), error_code(exc)) from None
        return value


def model_option(func: Callable) -> Callable:
    """``--model PATH``: a model file; the bundled default when omitted."""
    return click.option(
        "--model", "model_path", type=InputFile("model"), default=None,
        help="Model file (.keras). Default: the bundled models/facelivenet-default.keras "
        "(or $FACELIVENET_MODEL).",
    )(func)


def runtime_option(func: Callable) -> Callable:
    """``--runtime [auto|keras|onnx]``: where inference runs (facelivenet.runtime)."""
    from facelivenet.runtime.inference import DEFAULT_RUNTIME, RUNTIMES

    return click.option(
        "--runtime", type=click.Choice(RUNTIMES), default=DEFAULT_RUNTIME, show_default=True,
        help="Inference runtime: onnx (ONNX Runtime, no TensorFlow: the default model's ONNX files "
        "ship with the package, another model's are exported once into the user cache), keras "
        "(TensorFlow), or auto: onnx, else keras with a warning when a model's ONNX files cannot "
        "be built (no export extra).",
    )(func)


class _PrecisionOption(click.Option):
    """``--precision``, checked against ``--runtime`` as soon as the command line is parsed
    (before the command imports TensorFlow): int8 with the Keras runtime is a usage error."""

    def handle_parse_result(self, ctx: click.Context, opts: Any, args: list) -> Any:
        value, args = super().handle_parse_result(ctx, opts, args)
        runtime = opts.get("runtime")
        if runtime is None:  # not on the command line: the --runtime option's default
            runtime = next((p.get_default(ctx) for p in ctx.command.params if p.name == "runtime"), None)
        from facelivenet.runtime.quantize import DEFAULT_PRECISION

        if value != DEFAULT_PRECISION and runtime == "keras":
            raise click.UsageError(f"--precision {value} runs on ONNX Runtime; use --runtime onnx or "
                                   "--precision fp32", ctx)
        return value, args


def precision_option(func: Callable) -> Callable:
    """``--precision [fp32|int8]``: the network's precision on ONNX Runtime (facelivenet.runtime.quantize).

    int8 with ``--runtime keras`` is a usage error (exit 2, one line) at parse time:
    there is no int8 Keras network, and running float instead would be a lie.
    """
    from facelivenet.runtime.quantize import DEFAULT_PRECISION, PRECISIONS

    return click.option(
        "--precision", cls=_PrecisionOption, type=click.Choice(PRECISIONS), default=DEFAULT_PRECISION,
        show_default=True,
        help="Network precision on ONNX Runtime: fp32, or int8 (quantised once from the float ONNX "
        "file and cached; the detector stays float). int8 needs --runtime onnx.",
    )(func)


#: The steps a random challenge is drawn from by default (the library's ≥ 6-bit default).
DEFAULT_STEPS_TEXT = "happy,surprise,turn_left,turn_right,chin_up"


def challenge_draw_options(func: Callable) -> Callable:
    """``--expressions E,...`` and ``--length N``: what a random challenge is drawn from
    (``challenge``, ``realtime``, ``serve``); read them with :func:`challenge_draw`."""
    func = click.option(
        "--length", type=click.IntRange(1, 8), default=None,
        help="Number of steps to show, in order, after Neutral; no step twice in a row. Default 3 "
             "(1 when --expressions names a single step): 80 possible challenges by default, 6.3 bits.")(func)
    return click.option(
        "--expressions", default=DEFAULT_STEPS_TEXT, show_default=True,
        help="Comma-separated steps to draw from: expressions of the model and the head moves "
             "turn_left, turn_right, chin_up (measured from the face's landmarks).")(func)


def challenge_draw(expressions: str, length: int | None) -> tuple[tuple[str, ...], int]:
    """The checked step names of ``--expressions`` and the challenge length (``--length``,
    else 3 for several names and 1 for one)."""
    from facelivenet.auth.challenge import DEFAULT_CHALLENGE_LENGTH, parse_expression_list

    choices = parse_expression_list(expressions)
    if length is None:
        length = DEFAULT_CHALLENGE_LENGTH if len(choices) > 1 else 1
    return choices, length


def json_option(func: Callable) -> Callable:
    """``--json``: print the result as JSON on stdout instead of the human summary."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."
    )(func)


def quiet_option(func: Callable) -> Callable:
    """``--quiet``: no progress bars or logs on stderr."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars on stderr.")(func)


def quiet_accepted(func: Callable) -> Callable:
    """``--quiet`` on a command that shows no progress: accepted, so that every command
    takes the same ``-q`` (scripts pass it everywhere)."""
    return click.option("--quiet", "-q", is_flag=True, expose_value=False,
                        help="Accepted for a uniform command line: this command shows no progress.")(func)


def emit(result: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON (stdout) or as the human summary ``human(result)``."""
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=False, default=_json_default))
    else:
        click.echo(human(result))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class _NoBar:
    """Stands in for a click progress bar when none is shown."""

    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def progress_bar(length: int, *, label: str, quiet: bool = False):
    """A progress bar on stderr of ``length`` steps, advanced with ``.update(n)``.

    Nothing is shown when ``quiet`` or when there is nothing to count.
    """
    if quiet or not length:
        yield _NoBar()
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True, show_eta=True) as bar:
        yield bar


def progress(items: Iterable[T], *, label: str, length: int | None = None, quiet: bool = False) -> Iterable[T]:
    """Iterate ``items`` with a progress bar on stderr (none when ``quiet``)."""
    if quiet:
        yield from items
        return
    with click.progressbar(
        items, length=length, label=label, file=sys.stderr, show_pos=True, show_eta=True
    ) as bar:
        yield from bar



class ProgressBarReporter:
    """A training reporter (:class:`facelivenet.train.progress.Reporter`) drawing Click progress
    bars on stderr, one per epoch, with the latest loss and metrics; nothing when quiet."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._bar = None

    def epoch_start(self, label: str, length: int, start: int) -> None:
        if self.quiet:
            return
        self._bar = click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True, show_eta=True,
                                      item_show_func=lambda s: s)
        self._bar.__enter__()
        if start:
            self._bar.update(start)

    def step(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(1, current_item=text)

    def epoch_end(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def message(self, text: str) -> None:
        if not self.quiet:
            click.echo(text, err=True)
