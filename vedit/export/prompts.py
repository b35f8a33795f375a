"""Held-out prompts used to check a merge or an export against PyTorch.

The prompts are the registry's own student prompts (all tools) for a few intents: the demo test set's
first intents when ``data_dir()/test.jsonl`` exists (held out from training), else a fixed list.
"""

from __future__ import annotations

import json
from pathlib import Path

from vedit.registry import Registry

#: Used when no demo test set exists (e.g. in tests or for a model trained elsewhere).
FALLBACK_INTENTS = ("golden hour", "cold tone", "Morocco", "welding mask", "X ray", "😈")


def held_out_intents(n: int = 3, test_set: Path | None = None) -> list[str]:
    """The first ``n`` distinct intents of the demo test set, or of :data:`FALLBACK_INTENTS`."""
    if test_set is None:
        from vedit.paths import data_dir

        test_set = data_dir() / "test.jsonl"
    intents: list[str] = []
    if test_set.is_file():
        with open(test_set, encoding="utf-8") as f:
            for line in f:
                try:
                    intent = json.loads(line).get("intent")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(intent, str) and intent not in intents:
                    intents.append(intent)
                if len(intents) == n:
                    break
    return intents or list(FALLBACK_INTENTS[:n])


def prompt_batches(registry: Registry, family: str, intents: list[str]) -> list[list[str]]:
    """One batch per intent: the prompts of every tool, as a serving request runs them."""
    return [registry.prompts(intent, family) for intent in intents]
