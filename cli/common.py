"""Shared CLI plumbing: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import codecs
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from facedeg.errors import FacedegError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_USER_ERROR = 2


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    """Print ``error: message`` on stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(*extra: type[BaseException]) -> Callable[[F], F]:
    """Decorator: map FacedegError (and ``extra`` types) to a one-line error, no traceback."""
    kinds = (FacedegError, *extra)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except kinds as e:
                fail(str(e))
            except KeyboardInterrupt:
                fail("interrupted", 130)
        return inner  # type: ignore[return-value]
    return wrap


def output_path(path: Path, suffixes: tuple[str, ...] | None = (".png", ".jpg", ".jpeg", ".webp")) -> Path:
    """Check an output path (its extension, unless ``suffixes`` is None) and create its parent folder."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        fail(f"{path}: output must end with one of {', '.join(suffixes)}")
    if path.is_dir():
        fail(f"{path}: is a directory, expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        fail(f"{path}: cannot create its folder (a parent path is a file)")
    except OSError as e:
        fail(f"{path}: cannot create its folder ({e.strerror or e})")
    return path


def write_output(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(path)``; an OSError becomes a one-line error naming the file."""
    try:
        write(path)
    except OSError as e:
        fail(f"{path}: cannot write ({e.strerror or e})")


def run_app(app: typer.Typer, prog_name: str) -> None:
    """Console-script entry point: bad arguments give one line on stderr and exit code 2."""
    printable_names()
    try:
        code = app(prog_name=prog_name, args=sys.argv[1:], standalone_mode=False)
    except click_exc.UsageError as e:
        if e.format_message():  # empty for a bare command group, whose help was just printed
            where = f"{e.ctx.command_path} --help" if e.ctx else f"{prog_name} --help"
            typer.echo(f"error: {e.format_message()} (see {where})", err=True)
        code = EXIT_USER_ERROR
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        code = 130
    except click_exc.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        code = e.exit_code
    sys.exit(code if isinstance(code, int) else 0)


def _name_bytes(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a file name's non-UTF-8 byte (a surrogate escape) as ``\\xNN``."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    bad = err.object[err.start:err.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
                   for c in bad), err.end


codecs.register_error("facedeg.names", _name_bytes)


def printable_names() -> None:
    """File names that are not UTF-8 reach messages as surrogate escapes; where the terminal's encoding
    would refuse them (errors="strict"), print their odd bytes as ``\\xNN`` instead of dying mid-message."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="facedeg.names")


def make_app(name: str, help: str) -> typer.Typer:
    """A top-level Typer app with the project's settings: help on no arguments and on -h, no shell
    completion options, no rich tracebacks (user errors are one line; see `user_errors`)."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})
