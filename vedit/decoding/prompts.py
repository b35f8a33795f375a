"""Prompt ids for a request, with the documented truncation rule for long intents.

Rule: an intent is never refused. If one of its tool prompts would exceed ``max_input_tokens``,
the intent is cut to its longest start (at a token boundary) for which all of its prompts fit; the
instructions around it are kept whole. Only if the prompt template alone is longer than the limit
are the prompt ids cut at the end. An empty intent is allowed: its prompts read
``... The user request is: . ...`` and the grammar still forces a valid output. Characters that
are not Unicode scalar values (lone surrogates, which no tokenizer accepts) become U+FFFD first.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

from vedit.registry.model import Family, Registry

#: Input limit for encoder-decoders whose config names none (T5's relative positions have no hard limit).
DEFAULT_MAX_INPUT_TOKENS = 512
#: Context of decoder-only configs that name no ``max_position_embeddings``
DEFAULT_CONTEXT = 2048


def input_limit(family: Family, config: dict, longest_output: int, requested: int | None = None) -> int:
    """Most prompt tokens a request may use: the one rule for the runtime and the PyTorch reference.

    Encoder-decoders: ``requested``, else the config's ``n_positions``, else 512. Decoder-only: the
    context (``max_position_embeddings``) minus the longest output, lowered to ``requested``.
    """
    if family == "t5":
        return int(requested or config.get("n_positions") or DEFAULT_MAX_INPUT_TOKENS)
    room = int(config.get("max_position_embeddings") or DEFAULT_CONTEXT) - longest_output
    return min(int(requested or room), room)


@dataclass(frozen=True)
class RequestPrompts:
    intent: str  # the intent as given
    used_intent: str  # what went into the prompts (shorter when truncated)
    ids: list[list[int]]  # one id list per tool, registry order

    @property
    def truncated(self) -> bool:
        return len(self.used_intent) < len(self.intent)


class PromptBuilder:
    def __init__(self, registry: Registry, tokenizer: Tokenizer, family: Family, max_input_tokens: int):
        self.registry = registry
        self.tok = tokenizer
        self.family = family
        self.limit = max_input_tokens

    def _ids(self, intent: str) -> list[list[int]]:
        prompts = self.registry.prompts(intent, self.family)
        return [e.ids for e in self.tok.encode_batch(prompts, add_special_tokens=True)]

    def _fits(self, ids: list[list[int]]) -> bool:
        return max(len(i) for i in ids) <= self.limit

    def shared_prefixes(self) -> list[list[int]]:
        """Per tool, the prompt ids every request starts with (the text before the intent).

        Found by tokenizing the prompts of unlike probe intents and keeping their common start,
        less one token (the one before the intent may merge with the intent's first characters).
        A request uses a cached prefix only if its own ids really start with it.
        """
        probes = [self._ids(s) for s in ("a", "Zq 9", "😈", "{\"x\": 1}")]
        out = []
        for per_tool in zip(*probes):
            n = 0
            while all(len(ids) > n for ids in per_tool) and len({ids[n] for ids in per_tool}) == 1:
                n += 1
            out.append(list(per_tool[0][: max(0, n - 1)]))
        return out

    def build(self, intent: str) -> RequestPrompts:
        original = intent
        intent = intent.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        ids = self._ids(intent)
        if self._fits(ids):
            return RequestPrompts(original, intent, ids)
        offsets = self.tok.encode(intent, add_special_tokens=False).offsets
        ends = sorted({end for _, end in offsets if end > 0})
        lo, hi, best = 0, len(ends) - 1, ""
        while lo <= hi:  # longest prefix (by token boundary) whose prompts fit
            mid = (lo + hi) // 2
            cand = intent[: ends[mid]]
            if self._fits(self._ids(cand)):
                best, lo = cand, mid + 1
            else:
                hi = mid - 1
        ids = self._ids(best)
        if not self._fits(ids):  # the template alone is too long: keep the start of the ids
            ids = [i[: self.limit] for i in ids]
        return RequestPrompts(original, best, ids)


__all__ = ["DEFAULT_MAX_INPUT_TOKENS", "PromptBuilder", "RequestPrompts", "input_limit"]
