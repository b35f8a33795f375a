"""The export's drafts table: what the student answers on calibration intents, counted per grammar state.

``Predictor.load(..., draft=True)`` verifies drafts of what a row will write next (see
:class:`vedit.decoding.loop.Drafter`); the drafter guesses, at each state of a tool's automaton, the
choice the model made most often there. Learnt only from the answers a predictor gives, it starts
empty and the first requests of a served model pay full price. So the exporter answers a set of
calibration intents with the finished export and writes the counts to ``drafts.json`` (JSON, keyed
by tool, state and choice, with the compiled grammar's hash: a grammar recompiled in place later
leaves it unused). Drafts never change an answer, only the decoder calls it takes.

The calibration intents are looks of the kind the paper's users type, kept apart from
:data:`vedit.intents.SAMPLE_INTENTS` (what the profile and the main job show) so that figures on
those are not measured on answers the table was built from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from vedit.atomicio import atomic_open, sha256_file
from vedit.decoding.grammar import GRAMMAR_DIR, GRAMMAR_FILE
from vedit.decoding.predictor import DRAFTS_FILE

CALIBRATION_INTENTS = (
    "warm sunset", "moody forest", "bright summer beach", "vintage film", "faded matte look", "high contrast noir",
    "pastel spring", "cinematic teal", "foggy morning", "autumn leaves", "neon city lights", "soft portrait",
    "desert heat", "winter snow", "retro 70s", "clean product shot",
)


def write_drafts(export_dir: Path, intents: Sequence[str] = CALIBRATION_INTENTS) -> dict:
    """Answer ``intents`` with the export (fp32 or not, as it is) and write its ``drafts.json``;
    return what the manifest records of it."""
    from vedit.decoding import Predictor

    export_dir = Path(export_dir)
    pred = Predictor.load(export_dir, draft=True)
    pred.predict(list(intents))
    tools = pred.drafter.to_json()
    data = {"format": 1, "grammar_sha256": sha256_file(export_dir / GRAMMAR_DIR / GRAMMAR_FILE),
            "intents": list(intents), "tools": tools}
    with atomic_open(export_dir / DRAFTS_FILE) as f:
        json.dump(data, f, ensure_ascii=False)
    return {"file": DRAFTS_FILE, "intents": len(intents), "states": sum(len(s) for s in tools.values()),
            "acceptance_while_calibrating": pred.drafter.accepted / max(1, pred.drafter.proposed)}


__all__ = ["CALIBRATION_INTENTS", "write_drafts"]
