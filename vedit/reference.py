"""The PyTorch original: a student directory (+ optional LoRA adapter) answered with HF ``generate``.

Every export is judged against this predictor, so it is deliberately plain: greedy decoding
(``do_sample=False``, one beam), the registry's three prompts per intent in one batch, and the
parser from :mod:`vedit.registry` to type the answers. Prompt ids come from the runtime's own
:class:`~vedit.decoding.prompts.PromptBuilder` (same text, same truncation of long intents), so the
two sides see the same tokens. ``predict(..., grammar=G)`` adds :class:`GrammarLogitsProcessor`, the
runtime's compiled grammar as a transformers logits processor: the PyTorch side constrained like
with like. This is the one PyTorch generation path; benchmarks and parity load it once and reuse it.

Weights are loaded from safetensors only: pickled checkpoints (``*.bin``) can run arbitrary code
when loaded, so they are refused unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vedit.decoding.grammar import CompiledGrammar
from vedit.decoding.prompts import PromptBuilder, input_limit
from vedit.errors import GrammarError, ModelDirError, ToolCallError
from vedit.export.budget import output_token_budget
from vedit.export.checks import load_tokenizer
from vedit.registry import Registry, ToolCall, default_registry, load_registry, parse_call
from vedit.registry.model import Family

#: config.json ``model_type`` -> student family
FAMILIES: dict[str, Family] = {"t5": "t5", "llama": "llama"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
#: a student directory may carry the registry it was trained against
REGISTRY_FILE = "registry.json"
#: Added to a scripted token's logit (see :class:`ScriptLogitsProcessor`): far above any logit a
#: model produces (random base-shaped models reach tens), small enough to keep fp32 exact there.
SCRIPT_BIAS = 1.0e4


@dataclass
class ReferenceResult:
    """One intent's answer: a typed call per tool (``None`` if unparseable) and the raw text."""

    intent: str
    calls: dict[str, ToolCall | None]
    raw: dict[str, str]
    #: parser message for each tool whose text is not a valid call
    errors: dict[str, str]
    #: generated tokens per tool, the end-of-sequence token included
    new_tokens: dict[str, int]
    #: generate steps (decoder calls) of the batch that answered this intent
    decoder_calls: int
    #: the generated token ids per tool, the end-of-sequence token included
    tokens: dict[str, list[int]] = field(default_factory=dict)

    def outputs(self) -> dict[str, ToolCall | str]:
        """Per tool: the call, or the raw text when it did not parse (the metrics score both)."""
        return {name: call if call is not None else self.raw[name] for name, call in self.calls.items()}

    def to_row(self) -> dict[str, Any]:
        """A prediction row (``vedit bench metrics`` format)."""
        from vedit.data.rows import prediction_row

        return prediction_row(self.intent, self.outputs())


@dataclass
class PredictorStats:
    """Running totals since the predictor was loaded."""

    requests: int = 0
    batches: int = 0
    sequences: int = 0
    decoder_calls: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _StepCounter:
    """A pass-through logits processor: greedy ``generate`` calls it once per decoder step."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        return scores


class GrammarLogitsProcessor:
    """Masks every token the grammar refuses (score -inf); greedy search then never leaves it.

    ``tools[i]`` is the tool of batch row ``i``; ``offset`` is where generated tokens start in
    ``input_ids``: 1 for encoder-decoders (after the decoder start token), the padded prompt width
    for decoder-only models. Rows that have emitted EOS only allow EOS (``generate`` pads them).
    Greedy search only (``num_beams=1``, no sampling): beams would need a matcher per beam.
    The mask is filled from the automaton's own sorted id arrays (no Python lists per step).
    """

    def __init__(self, grammar: CompiledGrammar, tools: Sequence[str], *, offset: int):
        self.grammar = grammar
        self.matchers = [grammar.matcher(t) for t in tools]
        self.consumed = [0] * len(tools)
        self.offset = offset
        self._eos = np.array([grammar.eos_token_id], dtype=np.int64)

    def __call__(self, input_ids, scores):
        import torch

        if input_ids.shape[0] != len(self.matchers):
            raise GrammarError("GrammarLogitsProcessor: batch size differs from the tools given (beam search is not supported)")
        mask = torch.ones_like(scores, dtype=torch.bool)
        generated = input_ids[:, self.offset :].tolist()
        for i, (m, seq) in enumerate(zip(self.matchers, generated)):
            for t in seq[self.consumed[i] :]:
                if not m.is_finished() and not m.advance(t):
                    raise GrammarError(f"generate emitted token {t}, which the grammar refuses")
            self.consumed[i] = len(seq)
            allowed = self._eos if m.is_finished() else m.allowed_tokens()
            mask[i, torch.from_numpy(np.asarray(allowed, dtype=np.int64))] = False
        return scores.masked_fill(mask, float("-inf"))


class ScriptLogitsProcessor:
    """Steers greedy ``generate`` to scripted answers: adds :data:`SCRIPT_BIAS` to row ``i``'s token
    ``rows[i][p]`` at generated position ``p`` (nothing past the row's end).

    ``offset`` is where generated tokens start in ``input_ids`` (1 for T5's start token, the padded
    prompt width for decoder-only models). A random-weight model then answers what a trained one
    would, at the same compute: the latency bench's realistic workload on every path. Works with
    any ``generate`` that takes transformers logits processors (optimum's ORT models too).
    """

    def __init__(self, rows: Sequence[Sequence[int]], offset: int, *, bias: float = SCRIPT_BIAS):
        import torch

        self.offset = offset
        self.bias = bias
        longest = max((len(r) for r in rows), default=0)
        # per position: the rows still scripted there and their tokens, as index tensors (built once)
        self._at = []
        for p in range(longest):
            live = [i for i, r in enumerate(rows) if p < len(r)]
            self._at.append((torch.tensor(live, dtype=torch.long),
                             torch.tensor([int(rows[i][p]) for i in live], dtype=torch.long)))
        self.rows = len(rows)

    def __call__(self, input_ids, scores):
        if input_ids.shape[0] != self.rows:
            raise GrammarError("ScriptLogitsProcessor: batch size differs from the scripted rows (beam search is not supported)")
        p = input_ids.shape[1] - self.offset
        if 0 <= p < len(self._at):
            live, toks = self._at[p]
            scores = scores.clone()
            scores[live, toks] += self.bias
        return scores


def _weights_check(directory: Path, *, allow_pickle: bool, what: str) -> bool:
    """Return whether safetensors weights exist; refuse pickled-only directories unless allowed."""
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: {what} directory not found")
    safetensors = list(directory.glob("*.safetensors"))
    pickled = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if safetensors:
        return True
    if not pickled:
        raise ModelDirError(f"{directory}: no {what} weights found (expected *.safetensors)")
    if not allow_pickle:
        raise ModelDirError(
            f"{directory}: only pickled weights ({', '.join(pickled)}); loading pickles can run "
            "arbitrary code. Convert them to safetensors, or pass allow_pickle=True "
            "(--allow-pickle) if you trust the file"
        )
    return False


def detect_family(student_dir: str | Path) -> Family:
    """The student family from ``config.json``'s ``model_type``."""
    cfg_path = Path(student_dir) / "config.json"
    try:
        model_type = json.loads(cfg_path.read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise ModelDirError(f"{cfg_path}: not found; is {student_dir} a saved student?") from None
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{cfg_path}: not valid JSON ({exc.msg})") from None
    if model_type not in FAMILIES:
        raise ModelDirError(
            f"{student_dir}: unsupported model_type {model_type!r}; supported: {', '.join(FAMILIES)}"
        )
    return FAMILIES[model_type]


class ReferencePredictor:
    """Greedy HF ``generate`` over the registry's prompts. Build with :meth:`load`."""

    def __init__(self, model, tokenizer, *, family: Family, registry: Registry,
                 max_new_tokens: int | None = None, source: str = "") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.family = family
        self.registry = registry
        self.max_new_tokens = max_new_tokens or output_token_budget(registry, tokenizer)
        self.source = source
        self.stats = PredictorStats()
        self._builders: dict[int, PromptBuilder] = {}
        if family == "llama":
            tokenizer.padding_side = "left"

    def prompt_builder(self, longest_output: int) -> PromptBuilder:
        """The runtime's prompt builder for this tokenizer, with the runtime's input limit."""
        if longest_output not in self._builders:  # built once: predict() is on the timed path
            limit = input_limit(self.family, self.model.config.to_dict(), longest_output)
            self._builders[longest_output] = PromptBuilder(self.registry, self.tokenizer.backend_tokenizer,
                                                           self.family, limit)
        return self._builders[longest_output]

    @classmethod
    def load(cls, student_dir: str | Path, adapter_dir: str | Path | None = None, *,
             allow_pickle: bool = False, family: Family | None = None, threads: int | None = None,
             registry: Registry | None = None) -> "ReferencePredictor":
        """Load a student (and a LoRA adapter on top, unmerged).

        ``registry``: defaults to the student's ``registry.json`` snapshot if it has one, else the
        package registry.
        """
        import torch
        from transformers import LlamaForCausalLM, T5ForConditionalGeneration

        if threads:
            torch.set_num_threads(threads)
        student_dir = Path(student_dir)
        has_st = _weights_check(student_dir, allow_pickle=allow_pickle, what="student")
        family = family or detect_family(student_dir)
        if family not in ("t5", "llama"):
            raise ModelDirError(f"unknown family {family!r}; supported: t5, llama")
        model_cls = T5ForConditionalGeneration if family == "t5" else LlamaForCausalLM
        try:
            model = model_cls.from_pretrained(student_dir, use_safetensors=has_st)
        except OSError as exc:
            raise ModelDirError(f"{student_dir}: cannot load the student ({exc})") from None
        # the exporter's loader: a folder with only spiece.model / tokenizer.model is rebuilt without
        # transformers' protobuf-based conversion, so the original loads whatever could be exported
        tokenizer = load_tokenizer(student_dir)
        source = str(student_dir)
        if adapter_dir is not None:
            from peft import PeftModel

            adapter_dir = Path(adapter_dir)
            if not (adapter_dir / "adapter_config.json").exists():
                raise ModelDirError(f"{adapter_dir}: no adapter_config.json; is it a LoRA adapter?")
            _weights_check(adapter_dir, allow_pickle=allow_pickle, what="adapter")
            model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
            source += f" + {adapter_dir}"
        if registry is None:
            snapshot = student_dir / REGISTRY_FILE
            registry = load_registry(snapshot) if snapshot.exists() else default_registry()
        return cls(model, tokenizer, family=family, registry=registry, source=source)

    def _generation_config(self):
        from transformers import GenerationConfig

        tok = self.tokenizer
        extra = {"bos_token_id": getattr(self.model.config, "bos_token_id", None)}
        if self.family == "t5":
            extra["decoder_start_token_id"] = self.model.config.decoder_start_token_id
        return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
                                pad_token_id=self.pad_id, eos_token_id=tok.eos_token_id, **extra)

    @property
    def pad_id(self) -> int:
        """The id rows are padded with: the tokenizer's pad token, else EOS (stock Llama-2 has no
        pad token; padded positions are masked out, so which id fills them does not matter)."""
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    def generate(self, rows: Sequence[Sequence[int]], *, tools: Sequence[str] | None = None,
                 grammar: CompiledGrammar | None = None, script: Sequence[Sequence[int]] | None = None,
                 logits_processor: Sequence[Any] = (), max_steps: int | None = None) -> tuple[list[list[int]], int]:
        """Greedy-generate one batch of prompt id rows; return the new token ids per row (up to and
        including ``</s>``) and the number of decoder steps. ``grammar`` (with ``tools``, the
        tool of each row) constrains every row to its tool's grammar; ``script`` (token ids per
        row) steers each row to its scripted answer (:class:`ScriptLogitsProcessor`); ``max_steps``
        cuts generation short (a trial of the same work per step, e.g. the bench's settings trial)."""
        import torch
        from transformers import LogitsProcessorList

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, r in enumerate(rows):
            span = slice(0, len(r)) if self.family == "t5" else slice(width - len(r), width)  # Llama: left padding
            ids[k, span], mask[k, span] = torch.tensor(list(r), dtype=torch.long), 1
        # T5 outputs start with the decoder start token; Llama outputs repeat the prompt.
        skip = 1 if self.family == "t5" else width
        counter = _StepCounter()
        processors = [counter, *logits_processor]
        if script is not None:
            if len(script) != len(rows):
                raise GrammarError(f"generate(script=...) needs one scripted row per prompt ({len(script)} != {len(rows)})")
            processors.append(ScriptLogitsProcessor(script, offset=skip))
        if grammar is not None:
            if tools is None or len(tools) != len(rows):
                raise GrammarError("generate(grammar=...) needs the tool of every row")
            processors.append(GrammarLogitsProcessor(grammar, tools, offset=skip))
        config = self._generation_config()
        if grammar is not None:  # the longest path through the grammar, EOS included
            config.max_new_tokens = max(grammar.automata[t].max_tokens() for t in set(tools))
        if script is not None:  # room for the whole script (it ends with EOS, which stops the row)
            config.max_new_tokens = max(config.max_new_tokens, max(len(r) for r in script))
        if max_steps is not None:
            config.max_new_tokens = min(config.max_new_tokens, max_steps)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                      logits_processor=LogitsProcessorList(processors))
        eos, pad = self.tokenizer.eos_token_id, self.pad_id
        new: list[list[int]] = []
        for row in out[:, skip:].tolist():
            ids = []
            for t in row:
                ids.append(t)
                if t == eos:
                    break
            if ids and ids[-1] != eos:  # hit max_new_tokens: drop trailing padding only
                while ids and ids[-1] == pad:
                    ids.pop()
            new.append(ids)
        return new, counter.steps

    def predict(self, intents: Sequence[str], *, batch_size: int = 8, grammar: CompiledGrammar | None = None,
                script: Sequence[Any] | None = None, logits_processor: Sequence[Any] = (),
                progress: bool = False) -> list[ReferenceResult]:
        """Answer every intent: its three prompts go in one batch (``batch_size`` intents per
        ``generate`` call, i.e. ``3 * batch_size`` sequences). ``grammar``: constrained by the
        runtime's compiled grammar (raw texts are then exactly the grammar's bytes). ``script``:
        one per intent, a mapping tool name -> token ids (or an object with such a ``tokens``
        attribute, e.g. :class:`vedit.workload.scripted.Script`): each row is steered to those ids."""
        import sys

        from tqdm.auto import tqdm

        tools = self.registry.tools
        if grammar is not None:
            missing = set(self.registry.tool_names) - set(grammar.automata)
            if missing:
                raise GrammarError(f"the grammar lacks tools {sorted(missing)}; compile it for this registry")
            longest = grammar.max_tokens()
        else:
            longest = self.max_new_tokens
        builder = self.prompt_builder(longest)
        if script is not None and len(script) != len(intents):
            raise GrammarError(f"predict(script=...) needs one script per intent ({len(script)} != {len(intents)})")
        results: list[ReferenceResult] = []
        bar = tqdm(total=len(intents), desc="predict", file=sys.stderr, disable=not progress,
                   mininterval=1.0, dynamic_ncols=True)
        try:
            for start in range(0, len(intents), batch_size):
                chunk = list(intents[start : start + batch_size])
                prompts = [ids for i in chunk for ids in builder.build(i).ids]
                row_tools = [t.name for _ in chunk for t in tools]
                rows = None
                if script is not None:
                    scripted = [getattr(x, "tokens", x) for x in script[start : start + batch_size]]
                    rows = [s[t.name] for s in scripted for t in tools]
                began = time.perf_counter()
                ids, steps = self.generate(prompts, tools=row_tools, grammar=grammar, script=rows,
                                           logits_processor=logits_processor)
                self.stats.seconds += time.perf_counter() - began
                self.stats.batches += 1
                self.stats.requests += len(chunk)
                self.stats.sequences += len(prompts)
                self.stats.decoder_calls += steps
                self.stats.new_tokens += sum(len(x) for x in ids)
                for k, intent in enumerate(chunk):
                    results.append(self._result(intent, ids[k * len(tools) : (k + 1) * len(tools)], steps, grammar))
                bar.update(len(chunk))
        finally:
            bar.close()
        return results

    def _result(self, intent: str, ids: list[list[int]], steps: int,
                grammar: CompiledGrammar | None) -> ReferenceResult:
        calls: dict[str, ToolCall | None] = {}
        raw: dict[str, str] = {}
        errors: dict[str, str] = {}
        for tool, seq in zip(self.registry.tools, ids):
            if grammar is not None:
                text = grammar.text(seq)
            else:
                text = self.tokenizer.decode(seq, skip_special_tokens=True)
            raw[tool.name] = text
            try:
                calls[tool.name] = parse_call(tool, text)
            except ToolCallError as exc:
                calls[tool.name] = None
                errors[tool.name] = exc.reason
        return ReferenceResult(
            intent=intent, calls=calls, raw=raw, errors=errors,
            new_tokens={t.name: len(seq) for t, seq in zip(self.registry.tools, ids)},
            decoder_calls=steps,
            tokens={t.name: list(seq) for t, seq in zip(self.registry.tools, ids)},
        )


__all__ = [
    "FAMILIES",
    "PredictorStats",
    "GrammarLogitsProcessor",
    "ReferencePredictor",
    "ReferenceResult",
    "SCRIPT_BIAS",
    "ScriptLogitsProcessor",
    "detect_family",
    "output_token_budget",
]
