"""How many new tokens a generation needs: the longest canonical answer of any tool, derived from
the registry, so a new parameter or preset never truncates an answer silently. The export's greedy
check and the PyTorch original (:mod:`vedit.reference`) both size ``max_new_tokens`` with it."""

from __future__ import annotations

import random

from vedit.registry import Registry, Tool, subset


def _longest_call(tool: Tool, tokenizer) -> int:
    """Tokens in the longest canonical output of ``tool``: the longest of its sample answers (every
    bound, every choice), plus one token per character its free strings may hold."""
    texts = [subset.dump(tool.language, v) for v in subset.samples(tool.language, random.Random(0), 20)]
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return longest + subset.free_chars(tool.language)


def output_token_budget(registry: Registry, tokenizer, margin: int = 4) -> int:
    """``max_new_tokens`` that fits the longest canonical output of any tool, plus ``</s>``.

    Derived from the registry so a new parameter or preset never truncates an answer silently.
    """
    return max(_longest_call(t, tokenizer) for t in registry.tools) + 1 + margin


__all__ = ["output_token_budget"]
