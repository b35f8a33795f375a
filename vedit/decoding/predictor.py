"""The embedded predictor: an export directory in, valid tool calls out (no server).

``Predictor.load(export_dir)`` opens the ONNX sessions, the tokenizer, the registry snapshot and
the compiled grammar (nothing is compiled at start-up). ``predict(intents)`` runs the three tool
prompts of every request as rows of one batch and returns one :class:`Prediction` per intent.
"""

from __future__ import annotations

import copy

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vedit.decoding.decoder_only import DecoderOnlyModel
from vedit.decoding.grammar import CompiledGrammar, load_grammar
from vedit.decoding.drafting import Drafter
from vedit.decoding.loop import Bias, RowTrace, decode, decode_drafted
from vedit.decoding.prompts import PromptBuilder, input_limit
from vedit.decoding.seq2seq import Seq2SeqModel
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import GrammarError, ModelDirError, ToolCallError
from vedit.manifest import Family, read_manifest
from vedit.registry.calls import ToolCall, parse_call
from vedit.registry.model import Registry, load_registry

#: ``bias(request, tool, position, logits) -> logits``: adjusts the logits of one request's tool row
#: at a free step (``request`` indexes the ``intents`` given to ``predict``; ``position`` = tokens
#: that row has generated so far). The latency bench steers the model to scripted answers with it.
RequestBias = Callable[[int, str, int, Any], Any]


@dataclass(frozen=True)
class DecodeStats:
    """Cost of one request (its three rows together)."""

    decoder_calls: int  # decoder calls any of the request's rows took part in
    free_tokens: int  # tokens the model chose among several allowed ones
    forced_tokens: int  # tokens the grammar allowed alone (EOS included)
    truncated: bool = False  # the intent was cut to fit the input limit

    @property
    def tokens(self) -> int:
        return self.free_tokens + self.forced_tokens

    def as_dict(self) -> dict[str, Any]:
        return {"decoder_calls": self.decoder_calls, "free_tokens": self.free_tokens,
                "forced_tokens": self.forced_tokens, "truncated": self.truncated}


@dataclass(frozen=True)
class Prediction:
    intent: str
    calls: dict[str, ToolCall]  # tool name -> call, registry order
    raw: dict[str, str]  # tool name -> exact generated text (may start with one space)
    stats: DecodeStats | None = None  # None when a server answered (its statistics stay there)

    def to_json(self) -> dict[str, Any]:
        """``{"intent": ..., "<tool>": {...}, ...}`` with tool names from the registry."""
        out: dict[str, Any] = {"intent": self.intent}
        out.update({name: call.as_value() for name, call in self.calls.items()})
        return out


class Predictor:
    """Constrained greedy tool-call prediction on onnxruntime (see module docstring)."""

    def __init__(self, *, registry: Registry, grammar: CompiledGrammar, prompts: PromptBuilder, family: Family,
                 model: Seq2SeqModel | DecoderOnlyModel, start_token_id: int, pad_token_id: int, jump_forward: bool,
                 batch_size: int, drafter: Drafter | None = None):
        self.registry = registry
        #: drafts verified per call (``load(draft=True)``); its ``proposed``/``accepted`` count them
        self.drafter = drafter
        self.grammar = grammar
        self.prompts = prompts
        self.family = family
        self.model = model
        self.start_token_id = start_token_id
        self.pad_token_id = pad_token_id
        self.jump_forward = jump_forward
        self.batch_size = batch_size

    @classmethod
    def load(cls, export_dir: str | Path, *, providers: Sequence | None = None, threads: int | None = None,
             jump_forward: bool = True, max_input_tokens: int | None = None, batch_size: int = 8,
             allow_cpu_fallback: bool = False, io_binding: bool | None = None,
             prefix_cache: bool = True, join_rows: bool | None = None, draft: bool | None = None) -> "Predictor":
        """Open an export directory.

        ``providers``: onnxruntime providers (default: CUDA when onnxruntime-gpu offers it, else
        CPU). ``threads``: intra-op threads per session. ``jump_forward=False`` asks the model for
        every token (the step-by-step reference; same outputs, more calls). ``max_input_tokens``:
        prompt limit (default: T5 ``n_positions`` or 512; Llama ``max_position_embeddings`` minus
        the longest output); longer intents are cut, see :mod:`vedit.decoding.prompts`.
        ``batch_size``: requests per batch (each request is 3 rows). ``prefix_cache`` (decoder-only
        students): the KV cache of each tool prompt's fixed start is computed here, once, and every
        request starts from it (same outputs, less prefill; see :mod:`vedit.decoding.decoder_only`). A requested accelerator
        (CUDA) that onnxruntime did not start is an error unless ``allow_cpu_fallback``;
        ``io_binding`` keeps the KV cache on the device (default: on when running on CUDA), see
        :mod:`vedit.decoding.session`. ``join_rows`` (T5): every active row joins every decoder call
        (default); ``False`` shares a call only between rows of equal cache length, the previous
        scheduler, kept to measure against (see :mod:`vedit.decoding.seq2seq`). ``draft``: after
        each decision a row also feeds what it will probably write next (:class:`~vedit.decoding.loop.Drafter`,
        learnt from this predictor's own answers) and keeps the part the model confirms in the same
        call (:func:`~vedit.decoding.loop.decode_drafted`): the same outputs in fewer decoder calls,
        each call's draft length priced by the measured cost of a call and of a token
        (:mod:`vedit.decoding.drafting`), so a host where drafts do not pay feeds none. Needs
        jump-forward and an export whose decoders give logits at several positions per row (exports
        of this vedit). ``None`` (default): on wherever both hold (faster on every student and shape
        measured, see docs); ``True`` makes an export that cannot draft an error; ``False`` off.
        """
        d = Path(export_dir)
        man = read_manifest(d)
        family, files, config = man.family, man.files, man.config
        registry = load_registry(d / "registry.json")
        grammar = load_grammar(d)
        missing = set(registry.tool_names) - set(grammar.automata)
        if missing:
            raise GrammarError(f"{d}: the compiled grammar lacks tools {sorted(missing)}; recompile it")
        tok = load_tokenizer(d)
        if tok.eos_token_id != grammar.eos_token_id:
            raise GrammarError(f"{d}: grammar EOS {grammar.eos_token_id} != tokenizer EOS {tok.eos_token_id}; recompile")
        if family == "t5":
            start = int(config.get("decoder_start_token_id", tok.pad_token_id))
            model: Seq2SeqModel | DecoderOnlyModel = Seq2SeqModel(
                d, files, providers=providers, threads=threads, decoder_start_token_id=start, pad_token_id=tok.pad_token_id,
                allow_cpu_fallback=allow_cpu_fallback, io_binding=io_binding, join_rows=join_rows)
        else:
            start = -1
            model = DecoderOnlyModel(d, files, providers=providers, threads=threads, pad_token_id=tok.pad_token_id,
                                     config=config, allow_cpu_fallback=allow_cpu_fallback, io_binding=io_binding)
        sessions = [model.decoder, model.decoder_with_past] if isinstance(model, Seq2SeqModel) else [model.session]
        if draft is None:
            draft = jump_forward and all(s.gathers_many for s in sessions)
        if draft:
            if not jump_forward:
                raise ValueError("draft=True needs jump_forward=True (drafts span forced runs)")
            if not all(s.gathers_many for s in sessions):
                raise ModelDirError(f"{d}: its decoders give logits at one position per row, so drafts cannot be "
                                    "verified; export it again with this vedit, or go without drafts (draft=False, no --draft)")
        drafter = _drafter(d, grammar) if draft else None
        longest_output = grammar.max_tokens()
        limit = input_limit(family, config, longest_output, max_input_tokens)
        prompts = PromptBuilder(registry, tok.tokenizer, family, limit)
        if prefix_cache and isinstance(model, DecoderOnlyModel):
            for ids in prompts.shared_prefixes():
                model.add_prefix(ids)
        return cls(registry=registry, grammar=grammar, prompts=prompts, family=family, model=model,
                   start_token_id=start, pad_token_id=tok.pad_token_id, jump_forward=jump_forward, batch_size=max(1, int(batch_size)),
                   drafter=drafter)

    def without_drafts(self) -> "Predictor":
        """This predictor without drafts, sharing its sessions (the bench times both on one export
        without loading its model twice: a 1.1B export is ~4.4 GB per copy)."""
        other = copy.copy(self)
        other.drafter = None
        return other

    @property
    def providers(self) -> list[str]:
        return self.model.providers

    def predict(self, intents: Sequence[str], *, bias: RequestBias | None = None) -> list[Prediction]:
        """One prediction per intent, in order; batches of ``batch_size`` requests (3 rows each).

        ``bias`` (see :data:`RequestBias`) adjusts the model's logits before the grammar's choice."""
        if isinstance(intents, str):
            raise TypeError("predict() takes a list of intents, not one string")
        out: list[Prediction] = []
        for i in range(0, len(intents), self.batch_size):
            rows_bias = _rows_bias(bias, i, self.registry.tool_names)
            out.extend(self._predict_batch(list(intents[i : i + self.batch_size]), bias=rows_bias))
        return out

    def _predict_batch(self, intents: list[str], *, bias: Bias | None = None) -> list[Prediction]:
        import numpy as np

        built = [self.prompts.build(s) for s in intents]
        tools = self.registry.tool_names
        row_ids = [ids for b in built for ids in b.ids]
        matchers = [self.grammar.matcher(t) for _ in intents for t in tools]
        if self.family == "t5":
            width = max(len(r) for r in row_ids)
            ids = np.full((len(row_ids), width), self.pad_token_id, dtype=np.int64)
            mask = np.zeros_like(ids)
            for k, r in enumerate(row_ids):
                ids[k, : len(r)] = r
                mask[k, : len(r)] = 1
            backend = self.model.backend(ids, mask)
            prefixes = [[self.start_token_id] for _ in row_ids]
        else:
            backend = self.model.backend(row_ids)
            prefixes = row_ids
        if self.drafter is not None:
            traces = decode_drafted(backend, matchers, prefixes, self.drafter, bias=bias)
        else:
            traces = decode(backend, matchers, prefixes, jump_forward=self.jump_forward, bias=bias)
        n = len(tools)
        return [self._prediction(b, traces[k * n : (k + 1) * n]) for k, b in enumerate(built)]

    def _prediction(self, built, traces: list[RowTrace]) -> Prediction:
        calls, raw = {}, {}
        for name, tr in zip(self.registry.tool_names, traces):
            text = self.grammar.text(tr.tokens)
            raw[name] = text
            try:
                calls[name] = parse_call(self.registry.tool(name), text)
            except ToolCallError as exc:  # the grammar admits only valid calls: this is a bug
                raise GrammarError(f"constrained output failed validation ({exc}); the compiled grammar is wrong") from exc
        stats = DecodeStats(
            decoder_calls=len({c for tr in traces for c in tr.calls}),
            free_tokens=sum(tr.free for tr in traces),
            forced_tokens=sum(tr.forced for tr in traces),
            truncated=built.truncated,
        )
        return Prediction(built.intent, calls, raw, stats)


#: What an export keeps of its calibration answers for drafts (:mod:`vedit.export.drafts` writes it).
DRAFTS_FILE = "drafts.json"


def _drafter(export_dir: Path, grammar: CompiledGrammar) -> Drafter:
    """A drafter seeded from the export's ``drafts.json`` when it was made for this compiled grammar
    (a grammar recompiled in place since leaves it unseeded, with a log line: drafts only save calls)."""
    import json
    import logging

    from vedit.atomicio import sha256_file
    from vedit.decoding.grammar import GRAMMAR_DIR, GRAMMAR_FILE

    drafter = Drafter()
    path = export_dir / DRAFTS_FILE
    if not path.is_file():
        return drafter
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("grammar_sha256") != sha256_file(export_dir / GRAMMAR_DIR / GRAMMAR_FILE):
            logging.getLogger("vedit.decoding").info("%s: made for another compiled grammar; drafts start unseeded", path)
            return drafter
        drafter.seed(data["tools"], grammar.automata)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelDirError(f"{path}: not a drafts table of this export ({exc}); export the model again "
                            "or delete the file") from None
    return drafter


def _rows_bias(bias: RequestBias | None, first: int, tools: Sequence[str]) -> Bias | None:
    """The loop's per-row hook for a batch whose first request is ``intents[first]`` (rows: request-major)."""
    if bias is None:
        return None
    n = len(tools)
    return lambda row, position, logits: bias(first + row // n, tools[row % n], position, logits)


__all__ = ["DRAFTS_FILE", "DecodeStats", "Prediction", "Predictor", "RequestBias"]
