"""The click group class every vedit command group uses: every failure becomes one line.

vedit's own errors say what to do; anything else (onnxruntime, the OS, a bug) is reported as one
``error:`` line naming the exception, with ``VEDIT_DEBUG=1`` to see the traceback. ``-h`` works
everywhere, including when a group runs as its own program (``vedit-export -h``).
"""

from __future__ import annotations

import os

import click

from vedit.errors import VeditError

HELP_OPTIONS = ["-h", "--help"]


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
