"""Parity in what users see: CIEDE2000 between the original's and the export's edits, rendered.

Token agreement says how often an export's answer differs; it does not say whether anyone could
see the difference (contrast 31 instead of 30 is invisible, the wrong preset is not). For each test
intent, both answers are drawn (:mod:`vedit.render`) on the sample photos and compared pixel by
pixel with CIEDE2000 (scikit-image's ``deltaE_ciede2000`` on ``rgb2lab``). A pair is one (intent,
photo); its figure is the mean over its pixels. The report gives the mean, 95th percentile and
maximum over all pairs, and the worst pair side by side. Identical answers draw identical pixels,
so they count as 0 without being drawn (the renderer is deterministic).

The quantized variants' gate requires the p95 below :data:`JND` (2.3, the usual just-noticeable
difference of CIEDE2000): 95% of edited photos look the same as the original's edit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vedit.registry import Registry, ToolCall

#: CIEDE2000 just-noticeable difference: the quantized variants' p95 must stay below it.
JND = 2.3
#: Longest side of the photos the answers are drawn on (the figure is a mean over pixels; small is enough).
PARITY_SIDE = 192

Calls = Mapping[str, Mapping[str, ToolCall | None]]  # intent -> tool -> call (None: invalid text)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between two sRGB-encoded images in [0, 1]."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    return deltaE_ciede2000(rgb2lab(np.clip(a, 0, 1)), rgb2lab(np.clip(b, 0, 1)))


@dataclass
class WorstPair:
    intent: str
    photo: str
    delta_e: float
    before: np.ndarray = field(repr=False)
    reference: np.ndarray = field(repr=False)
    candidate: np.ndarray = field(repr=False)
    reference_calls: dict[str, ToolCall] = field(repr=False)
    candidate_calls: dict[str, ToolCall] = field(repr=False)


@dataclass
class VisualParity:
    """CIEDE2000 over (intent, photo) pairs: each pair's mean over pixels."""

    per_pair: list[float]
    photos: list[str]
    drawn: int  # pairs whose answers differed, so both were rendered
    worst: WorstPair | None = None
    not_drawn: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_pair)) if self.per_pair else 0.0

    @property
    def p95(self) -> float:
        return float(np.percentile(self.per_pair, 95)) if self.per_pair else 0.0

    @property
    def max(self) -> float:
        return float(np.max(self.per_pair)) if self.per_pair else 0.0

    def line(self) -> str:
        worst = f"; worst: {self.worst.intent!r} on {self.worst.photo}" if self.worst and self.worst.delta_e > 0 else ""
        return (f"CIEDE2000 original vs candidate, rendered on {', '.join(self.photos)}: mean {self.mean:.2f}, "
                f"p95 {self.p95:.2f}, max {self.max:.2f} over {len(self.per_pair)} pairs "
                f"({self.drawn} drawn, the rest identical answers){worst}"
                + (f"; not drawn: {', '.join(self.not_drawn)}" if self.not_drawn else ""))

    def to_json(self) -> dict:
        out = {"mean": self.mean, "p95": self.p95, "max": self.max, "pairs": len(self.per_pair), "drawn": self.drawn,
               "photos": self.photos, "jnd": JND, "not_drawn": self.not_drawn}
        if self.worst is not None:
            out["worst"] = {"intent": self.worst.intent, "photo": self.worst.photo, "delta_e": self.worst.delta_e,
                            "reference": {k: c.as_value() for k, c in self.worst.reference_calls.items()},
                            "candidate": {k: c.as_value() for k, c in self.worst.candidate_calls.items()}}
        return out

    def save_worst(self, path: str | Path) -> Path | None:
        """The worst pair side by side (photo, original's edit, candidate's edit) as a PNG."""
        if self.worst is None:
            return None
        from vedit.render.photo import save_photo
        from vedit.render.sheet import compose, summary

        w = self.worst
        image = compose([[w.before, w.reference, w.candidate]],
                        [f"before: {w.intent}", "PyTorch original", f"export (CIEDE2000 {w.delta_e:.2f})"],
                        ["", summary(w.reference_calls), summary(w.candidate_calls)], [w.photo],
                        cell_height=w.before.shape[0])  # drawn size: no upscaling
        return save_photo(np.asarray(image, dtype=np.float32) / 255.0, path)


def _complete(registry: Registry, calls: Mapping[str, ToolCall | None]) -> dict[str, ToolCall]:
    """Invalid outputs (None) draw as the unused call: the edit the user would get is no edit."""
    return {t.name: calls.get(t.name) or ToolCall.unused(t) for t in registry.tools}


def _key(calls: Mapping[str, ToolCall]) -> tuple[str, ...]:
    return tuple(f"{n}={c.dumps()}" for n, c in sorted(calls.items()))


def compare_renders(registry: Registry, reference: Calls, candidate: Calls, photos: Sequence | None = None,
                    ) -> VisualParity:
    """Draw both sides' answers for each intent on ``photos`` (default: the sample photos) and compare."""
    from vedit.render.engine import Renderer
    from vedit.render.samples import sample_photos

    photos = list(photos) if photos is not None else sample_photos(max_side=PARITY_SIDE)
    renderer = Renderer(registry)
    per_pair: list[float] = []
    drawn = 0
    worst: WorstPair | None = None
    not_drawn: list[str] = []
    for intent, ref_raw in reference.items():
        ref = _complete(registry, ref_raw)
        cand = _complete(registry, candidate.get(intent, {}))
        if _key(ref) == _key(cand):
            per_pair += [0.0] * len(photos)
            continue
        for photo in photos:
            a, missed_a = renderer.render(photo.pixels, ref)
            b, missed_b = renderer.render(photo.pixels, cand)
            not_drawn += [m for m in missed_a + missed_b if m not in not_drawn]
            d = float(delta_e(a, b).mean())
            per_pair.append(d)
            drawn += 1
            if worst is None or d > worst.delta_e:
                worst = WorstPair(intent, photo.name, d, photo.pixels, a, b, ref, cand)
    return VisualParity(per_pair, [p.name for p in photos], drawn, worst, not_drawn)


__all__ = ["JND", "PARITY_SIDE", "VisualParity", "WorstPair", "compare_renders", "delta_e"]
