"""The click group class every vedit command group uses: library errors become one line."""

from __future__ import annotations

import click

from vedit.errors import VeditError


class VeditGroup(click.Group):
    """A group whose expected failures print ``error: ...`` on one line and exit 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VeditError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                click.echo(f"error: no space left on device ({exc.filename or 'output'})", err=True)
                ctx.exit(1)
            raise
