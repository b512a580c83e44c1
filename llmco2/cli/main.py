"""The ``llmco2`` command line (also ``python -m llmco2``).

Every error a user can cause ends in one line on stderr (``llmco2: error: ...``) and a non-zero
exit code (2 for bad input, 3 for a problem of the machine), never a traceback. Each command group
is a module of this package with its own Typer application; this module gathers them, and none of
them imports it. Heavy dependencies are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from llmco2 import __version__
from llmco2.cli import campaign, catalog, database, measure, predict, predictor, serve, trace
from llmco2.cli.options import invocation, stdout
from llmco2.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, Llmco2Error, MissingDependencyError

app = typer.Typer(
    name="llmco2",
    help="Energy and carbon of LLM inference requests, predicted before they run.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for group in (catalog.app, database.app, measure.app, predict.app, serve.app, trace.app,
              predictor.app):  # fmt: skip
    app.add_typer(group)
app.add_typer(database.db_app, name="db")
app.add_typer(campaign.app, name="campaign")


def _print_version(asked: bool) -> None:
    if asked:
        stdout.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the llmco2 version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Energy and carbon of LLM inference requests, predicted before they run."""


@app.command()
def version() -> None:
    """Print the llmco2 version."""
    stdout.print(__version__)


def _fail(message: str, code: int) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"llmco2: error: {first_line}", file=sys.stderr)
    return code


def _message_of(exc: BaseException) -> str:
    """An error's message; for one raised in a Ray task, the task's own error's.

    ``ray.get`` re-raises a task's error as a ``RayTaskError`` that is an instance of the error's
    class too, but whose text starts with the task's name and traceback.
    """
    cause = getattr(exc, "cause", None)
    return str(cause) if isinstance(cause, BaseException) else str(exc)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (errors become one line on stderr)."""
    args = sys.argv[1:] if argv is None else argv
    invocation[:] = args
    try:
        result = app(args=args or ["--help"], prog_name="llmco2", standalone_mode=False)
    except Llmco2Error as exc:
        return _fail(_message_of(exc), exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return _fail("aborted", 130)
    except typer.TyperException as exc:  # usage errors: unknown option, bad integer, ...
        return _fail(exc.format_message(), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except ModuleNotFoundError as exc:  # an optional dependency imported lazily
        if exc.name is None or os.environ.get("LLMCO2_DEBUG"):
            raise
        missing = MissingDependencyError.for_module(exc.name, f"`llmco2 {' '.join(args[:1])}`")
        return _fail(str(missing), missing.exit_code)
    except Exception as exc:  # a bug: one line, or the traceback with LLMCO2_DEBUG=1
        if os.environ.get("LLMCO2_DEBUG"):
            raise
        return _fail(f"internal error ({type(exc).__name__}): {exc}", EXIT_INTERNAL)
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
