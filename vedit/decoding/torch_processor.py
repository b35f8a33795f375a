"""The same compiled grammar as a ``transformers`` logits processor, for PyTorch ``generate``.

So that PyTorch-vs-ONNX comparisons compare like with like: :func:`constrained_generate` builds
the very same prompt ids as the ONNX predictor (same truncation rule), runs greedy ``generate``
with :class:`GrammarLogitsProcessor`, and returns the raw text per tool. Without the processor,
``generate`` is the unconstrained PyTorch path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from vedit.decoding.grammar import CompiledGrammar, load_grammar
from vedit.decoding.predictor import DEFAULT_MAX_INPUT_TOKENS, read_manifest
from vedit.decoding.prompts import PromptBuilder
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import GrammarError
from vedit.registry.model import load_registry


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks every token the grammar refuses (score -inf); greedy search then never leaves it.

    ``tools[i]`` is the tool of batch row ``i``; ``offset`` is where generated tokens start in
    ``input_ids``: 1 for encoder-decoders (after the decoder start token), the padded prompt width
    for decoder-only models. Rows that have emitted EOS only allow EOS (``generate`` pads them).
    Greedy search only (``num_beams=1``, no sampling): beams would need a matcher per beam.
    """

    def __init__(self, grammar: CompiledGrammar, tools: Sequence[str], *, offset: int):
        self.grammar = grammar
        self.matchers = [grammar.matcher(t) for t in tools]
        self.consumed = [0] * len(tools)
        self.offset = offset

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.matchers):
            raise GrammarError("GrammarLogitsProcessor: batch size differs from the tools given (beam search is not supported)")
        mask = torch.ones_like(scores, dtype=torch.bool)
        generated = input_ids[:, self.offset :].tolist()
        for i, (m, seq) in enumerate(zip(self.matchers, generated)):
            for t in seq[self.consumed[i] :]:
                if not m.is_finished() and not m.advance(t):
                    raise GrammarError(f"generate emitted token {t}, which the grammar refuses")
            self.consumed[i] = len(seq)
            allowed = [self.grammar.eos_token_id] if m.is_finished() else m.allowed_tokens()
            mask[i, torch.as_tensor(np.asarray(allowed, dtype=np.int64))] = False
        return scores.masked_fill(mask, float("-inf"))


def constrained_generate(model, export_dir: str | Path, intents: Sequence[str], *,
                         constrained: bool = True) -> list[dict[str, str]]:
    """Greedy PyTorch generation for each intent's three tool prompts; raw text per tool.

    ``model`` is the PyTorch original of the export in ``export_dir`` (its tokenizer, registry and
    grammar are read from there). ``constrained=False`` gives plain ``generate`` output.
    """
    d = Path(export_dir)
    family, _, config = read_manifest(d)
    registry = load_registry(d / "registry.json")
    grammar = load_grammar(d)
    tok = load_tokenizer(d)
    longest = max(a.max_tokens() for a in grammar.automata.values())
    if family == "t5":
        limit = int(config.get("n_positions") or DEFAULT_MAX_INPUT_TOKENS)
    else:
        limit = int(config.get("max_position_embeddings") or 2048) - longest
    builder = PromptBuilder(registry, tok.tokenizer, family, limit)
    rows = [ids for s in intents for ids in builder.build(s).ids]
    tools = [t for _ in intents for t in registry.tool_names]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, r in enumerate(rows):
        if family == "t5":
            ids[k, : len(r)], mask[k, : len(r)] = torch.tensor(r), 1
        else:  # decoder-only: left padding
            ids[k, width - len(r) :], mask[k, width - len(r) :] = torch.tensor(r), 1
    offset = 1 if family == "t5" else width
    kwargs = dict(do_sample=False, num_beams=1, max_new_tokens=longest + 1,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if constrained:
        kwargs["logits_processor"] = [GrammarLogitsProcessor(grammar, tools, offset=offset)]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    texts = []
    for k in range(len(rows)):
        gen = out[k, offset:].tolist()
        if tok.eos_token_id in gen:
            gen = gen[: gen.index(tok.eos_token_id) + 1]
        texts.append(grammar.text(gen) if constrained else tok.tokenizer.decode(gen, skip_special_tokens=True))
    n = len(registry.tool_names)
    return [dict(zip(registry.tool_names, texts[i * n : (i + 1) * n])) for i in range(len(intents))]


__all__ = ["GrammarLogitsProcessor", "constrained_generate"]
