"""``vedit preview`` and ``vedit playground``: see what an answer does to a photo.

Answers come from :func:`vedit.client.connect` (an export directory in-process, or a Triton
server's URL), so the page and the file show exactly what a client of that model gets. Nothing here
imports Pillow until a command runs: ``vedit -h`` stays fast and the base install never needs it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from vedit.clibase import HELP_OPTIONS
from vedit.extras import require_extras

_MODEL_HELP = "Export directory of a student (answered in-process)."
_URL_HELP = "Ask a Triton server instead: http://HOST:8000 or grpc://HOST:8001."


def check_target(model_dir: Path | None, url: str | None) -> None:
    """Exactly one of ``--model`` and ``--url``, checked before any work."""
    if (model_dir is None) == (url is None):
        raise click.UsageError("give --model EXPORT_DIR or --url URL (one of them)")


def open_client(model_dir: Path | None, url: str | None):
    """The client for ``--model`` or ``--url`` (exactly one of them)."""
    from vedit.client import connect

    check_target(model_dir, url)
    if url is not None:
        require_extras("triton")
        return connect([u.strip() for u in url.split(",")])
    return connect(model_dir)


@click.command("preview", context_settings={"help_option_names": HELP_OPTIONS})
@click.argument("intents", nargs=-1, required=True)
@click.option("--image", "images", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A photo to edit (repeat for several: one row each).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to write the result (.png, .jpg, .webp; .tif keeps 16 bits for one intent and photo).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None, help=_MODEL_HELP)
@click.option("--url", default=None, help=_URL_HELP)
@click.option("--max-side", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Longest side of the preview in pixels (0: full size).")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON lines.")
def preview(intents: tuple[str, ...], images: tuple[Path, ...], output: Path, model_dir: Path | None,
            url: str | None, max_side: int, as_json: bool) -> None:
    """Render the answers to INTENTS on the --image photos into one picture.

    One intent and one photo: the edited photo itself (its ICC profile kept). Several: a grid, a row
    per photo, the photo before and after each intent.
    """
    check_target(model_dir, url)
    require_extras("render")
    from vedit.errors import RenderError
    from vedit.render.engine import DRAWN, Renderer, undrawable_tools
    from vedit.render.photo import load_photo, save_photo
    from vedit.render.sheet import before_after, summary

    photos = [load_photo(p, max_side=max_side or None) for p in images]
    with open_client(model_dir, url) as client:
        start = time.perf_counter()
        predictions = client.predict(list(intents))
        answer_ms = (time.perf_counter() - start) * 1000
    undrawn = undrawable_tools(predictions[0].calls) if predictions else []
    if undrawn and len(undrawn) == len(predictions[0].calls):
        raise RenderError(f"the renderer draws {', '.join(DRAWN)}; none of this model's tools ({', '.join(undrawn)}) "
                          "can be drawn: use `vedit predict` for the answers")
    for p in predictions:
        click.echo(json.dumps(p.to_json(), ensure_ascii=False) if as_json else f"{p.intent}: {summary(p.calls, 200)}")
    if undrawn:
        click.echo(f"not rendered: tool {', '.join(undrawn)} (no renderer; the picture shows the other tools)", err=True)
    renderer = Renderer.default()
    if len(photos) == 1 and len(predictions) == 1:
        start = time.perf_counter()
        pixels, skipped = renderer.render(photos[0].pixels, predictions[0].calls)
        render_s = time.perf_counter() - start
        save_photo(pixels, output, icc_profile=photos[0].icc_profile, bits=photos[0].bits)
        size = photos[0].size
    else:
        sheet = before_after(photos, [(p.intent, p.calls) for p in predictions], renderer)
        render_s, skipped = sheet.seconds, sheet.skipped
        save_photo(_pixels(sheet.image), output)
        size = sheet.image.size
    for item in dict.fromkeys(i for i in skipped if not any(i.startswith(f"{t}:") for t in undrawn)):
        click.echo(f"not rendered: {item}", err=True)
    decode_s = sum(p.seconds for p in photos)
    scaled = [f"{p.name} {p.source_size[0]}x{p.source_size[1]} -> {p.size[0]}x{p.size[1]}" for p in photos
              if p.source_size != p.size]
    click.echo(f"wrote {output} ({size[0]}x{size[1]}): answers {answer_ms:.0f} ms, photos read in {decode_s:.2f} s, "
               f"rendered in {render_s:.2f} s" + (f"; previewed at a bounded size: {', '.join(scaled)}" if scaled else ""),
               err=True)


@click.command("playground", context_settings={"help_option_names": HELP_OPTIONS})
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None, help=_MODEL_HELP)
@click.option("--url", default=None, help=_URL_HELP)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the page (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; the default keeps the page on this machine.")
def playground(model_dir: Path | None, url: str | None, port: int, host: str) -> None:
    """Serve a page to try a student: type an intent, see the tool calls, the edit and the latency."""
    check_target(model_dir, url)
    require_extras("render")
    from vedit.clibase import show_progress
    from vedit.render.playground import make_server, url_of

    show_progress()
    with open_client(model_dir, url) as client:
        try:
            server = make_server(client, host, port)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); try --port 0") from None
        click.echo(f"vedit playground on {url_of(server)} (Ctrl-C stops it)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
        finally:
            server.server_close()


def _pixels(image):
    import numpy as np

    return np.asarray(image, dtype=np.float32) / 255.0


__all__ = ["check_target", "open_client", "playground", "preview"]
