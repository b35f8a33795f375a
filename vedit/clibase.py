"""The click group class every vedit command group uses: every failure becomes one line.

vedit's own errors say what to do; anything else (onnxruntime, the OS, a bug) is reported as one
``error:`` line naming the exception, with ``VEDIT_DEBUG=1`` to see the traceback. ``-h`` works
everywhere, including when a group runs as its own program (``vedit-export -h``).
"""

from __future__ import annotations

import logging
import os

import click

from vedit.errors import VeditError

HELP_OPTIONS = ["-h", "--help"]


class EchoHandler(logging.Handler):
    """vedit's log records as lines on stderr through click (whatever stderr is at that moment)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # noqa: BLE001 - logging must never break the work it reports on
            self.handleError(record)


class StageFormatter(logging.Formatter):
    """``[export] message``: the stage is the subpackage that logged (``vedit.export.pipeline``)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = record.name.split(".")
        return f"[{parts[1] if len(parts) > 1 else parts[0]}] {record.getMessage()}"


def show_progress(formatter: logging.Formatter | None = None) -> None:
    """Print the library's progress (INFO on the ``vedit`` loggers) on stderr, once per process.

    The library only logs; commands that do long work call this, the main job with its own
    indented format. An application embedding vedit configures ``logging`` as it likes instead.
    The records stop at the ``vedit`` logger: a root handler that a library installed on the way
    (onnxruntime's quantizer logs through ``logging.warning``, which calls ``basicConfig``) would
    print every line twice.
    """
    logger = logging.getLogger("vedit")
    handler = next((h for h in logger.handlers if isinstance(h, EchoHandler)), None)
    if handler is None:
        handler = EchoHandler()
        logger.addHandler(handler)
    logger.propagate = False
    handler.setFormatter(formatter or StageFormatter())
    logger.setLevel(logging.INFO)


class VeditGroup(click.Group):
    """A group whose failures print ``error: ...`` on one line and exit 1."""

    def __init__(self, *args, **kwargs) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings.setdefault("help_option_names", HELP_OPTIONS)
        super().__init__(*args, context_settings=settings, **kwargs)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VeditError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors and exits: click prints and exits itself
        except Exception as exc:
            if os.environ.get("VEDIT_DEBUG"):
                raise
            click.echo(f"error: {foreign_error(exc)}", err=True)
            ctx.exit(1)


def foreign_error(exc: BaseException) -> str:
    """One line for an error vedit did not raise itself: what happened and what to do."""
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return f"no space left on device ({exc.filename or 'output'}); free some space and run again"
    if isinstance(exc, ModuleNotFoundError):
        from vedit.extras import EXTRAS

        top = (exc.name or "").split(".")[0]
        extra = next((e for e, mods in EXTRAS.items() if top in mods), None)
        how = f"pip install 'vedit[{extra}]'" if extra else f"install {top!r}"
        return f"this command needs the Python package {top!r}, which is not installed; {how}"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return (f"{type(exc).__module__.split('.')[0]} {type(exc).__name__}: {first} "
            "(not a vedit error: run again with VEDIT_DEBUG=1 for the traceback, and report it if it looks like a bug)")
