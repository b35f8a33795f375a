"""Before/after grids: ``vedit preview``, the contact sheet, the parity bench's worst pair.

One layout for all: a row per photo, a column per image (``before``, then one per answer), a title
over each column and a one-line summary of the answer's calls under it, the photo's name at the
left. Cells are scaled to a common height (linear light, :func:`vedit.render.photo.bound`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vedit.registry import ToolCall
from vedit.render.engine import Renderer, drawn, shape
from vedit.render.photo import Photo, bound, to_pil

CELL_HEIGHT = 256
PAD = 6
TITLE_H = 34
LABEL_W = 90
BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)
MUTED = (90, 90, 90)


def summary(calls: Mapping[str, ToolCall], limit: int = 60) -> str:
    """The used calls in a few words: ``contrast +20, temperature +35 | vivid 70``."""
    parts = []
    for name, call in calls.items():
        if not call.used:
            continue
        value = call.as_value()
        kind = shape(call.tool) if drawn(call.tool) else None
        if kind == "preset":
            parts.append(f"{value['name']} {value.get('intensity', '')}".strip())
        elif kind == "flat":
            parts.append(", ".join(f"{k} {v:+d}" for k, v in value.items() if v))
        elif kind == "per_colour":
            parts.append(", ".join(f"{c} {k[:3]} {v:+d}" for c, d in value.items() for k, v in d.items() if v))
        else:  # any other tool: its answer as written
            parts.append(f"{name} {call.dumps()}")
    text = " | ".join(parts) or "no edit"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Sheet:
    """A composed grid and what it took: ``seconds`` renders; ``skipped``: what was not drawn."""

    image: object  # PIL.Image.Image
    seconds: float
    skipped: list[str] = field(default_factory=list)


def printable(text: str) -> str:
    """``text`` with the symbols Pillow's bundled font cannot draw (emoji) written as ``U+1F608``."""
    import unicodedata

    return "".join(f"U+{ord(ch):04X}" if ord(ch) > 0xFFFF or unicodedata.category(ch) == "So" else ch
                   for ch in text)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def compose(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], captions: Sequence[str],
            row_labels: Sequence[str], cell_height: int = CELL_HEIGHT):
    """A grid image from encoded pixel arrays (``rows[i][j]``), titles/captions per column."""
    from PIL import Image, ImageDraw

    cells = [[px if px.shape[0] == cell_height else _to_height(px, cell_height) for px in row] for row in rows]
    widths = [max(r[j].shape[1] for r in cells) for j in range(len(titles))]
    label_w = LABEL_W if any(row_labels) else 0
    W = label_w + sum(widths) + PAD * (len(widths) + 1)
    H = TITLE_H + len(cells) * (cell_height + PAD) + PAD
    sheet = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title_font, caption_font = _font(14), _font(11)
    x = label_w + PAD
    for j, w in enumerate(widths):
        draw.text((x, 3), _fit(draw, printable(titles[j]), title_font, w), fill=INK, font=title_font)
        caption = captions[j] if j < len(captions) else ""
        draw.text((x, 20), _fit(draw, caption, caption_font, w), fill=MUTED, font=caption_font)
        x += w + PAD
    y = TITLE_H
    for i, row in enumerate(cells):
        if label_w:
            draw.text((PAD, y + cell_height // 2 - 7), row_labels[i], fill=INK, font=title_font)
        x = label_w + PAD
        for j, px in enumerate(row):
            sheet.paste(to_pil(px), (x, y))
            x += widths[j] + PAD
        y += cell_height + PAD
    return sheet


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels, so a column's caption never runs into the next."""
    if not text or draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip(" ,|") + "…"


def _to_height(px: np.ndarray, height: int) -> np.ndarray:
    """Scale to ``height`` pixels high (down or up), keeping the aspect ratio, in linear light."""
    h, w = px.shape[:2]
    side = max(1, round(max(h, w) * height / h))
    if height < h:
        return bound(px, side)
    from PIL import Image

    return np.asarray(to_pil(px).resize((max(1, round(w * height / h)), height), Image.Resampling.LANCZOS),
                      dtype=np.float32) / 255.0


def before_after(photos: Sequence[Photo], answers: Sequence[tuple[str, Mapping[str, ToolCall]]],
                 renderer: Renderer | None = None, cell_height: int = CELL_HEIGHT) -> Sheet:
    """Each photo (a row) before and with each answer ``(title, calls)`` (a column)."""
    renderer = renderer or Renderer.default()
    start = time.perf_counter()
    skipped: list[str] = []
    rows = []
    for photo in photos:
        small = _to_height(photo.pixels, cell_height)  # render at the size shown: fast, same look
        row = [small]
        for _, calls in answers:
            out, missed = renderer.render(small, calls)
            skipped += [m for m in missed if m not in skipped]
            row.append(out)
        rows.append(row)
    seconds = time.perf_counter() - start
    image = compose(rows, ["before"] + [t for t, _ in answers], [""] + [summary(c) for _, c in answers],
                    [p.name for p in photos], cell_height)
    return Sheet(image, seconds, skipped)


def contact_sheet(predictions: Sequence, out: str | Path | None = None, *, photos: Sequence[Photo] | None = None,
                  cell_height: int = 200) -> Sheet:
    """The answers (``Prediction`` objects, e.g. to :data:`vedit.intents.SAMPLE_INTENTS`) on the
    scikit-image sample photos, before/after; written as a PNG to ``out`` when given."""
    from vedit.render.photo import save_photo
    from vedit.render.samples import sample_photos

    photos = list(photos) if photos is not None else sample_photos(max_side=2 * cell_height)
    sheet = before_after(photos, [(p.intent, p.calls) for p in predictions], cell_height=cell_height)
    if out is not None:
        save_photo(np.asarray(sheet.image, dtype=np.float32) / 255.0, out)
    return sheet


__all__ = ["CELL_HEIGHT", "Sheet", "before_after", "compose", "contact_sheet", "summary"]
