"""onnxruntime-genai with its own guidance, the peer a user would pick for a Llama student on CPU.

What runs: genai 0.18's model builder turns the student's merged HF folder into genai's graph
(GroupQueryAttention, rotary embedding, SkipSimplifiedLayerNorm, a KV buffer shared between past
and present) at ``fp32`` or ``int8`` (builder ``-p int8``: MatMulNBits 8-bit weights, block 32,
int8 activations by default on CPU; vedit's int8 is MatMulNBits 8-bit weights, block 32, with each row's
activations quantized on their own, so the two
int8 rows are each engine's own int8). A worker in the peer venv answers each request's three
tool prompts (vedit's prompt ids) with genai's guidance: llguidance with vedit's character regex of
each tool (:func:`vedit.decoding.language.char_regex`, exactly vedit's output format) and
fast-forward tokens on. See ``workers/ortgenai_worker.py`` for why rows run one at a time and how
genai is steered to the scripted answers (``get_logits`` / ``set_logits``).

Tokenizer: genai 0.18 builds guidance's token table from ``tokenizer.json`` with llguidance, which
reads only map-shaped (BPE) vocabularies, and the students' tokenizer is a SentencePiece Unigram
(list-shaped). The genai folder therefore gets the same pieces with the same ids as a BPE
``tokenizer.json`` (:func:`unigram_as_bpe`): the token table (what guidance masks) is exact; only
genai's own splitting of fast-forward text differs from the Unigram's (more, shorter tokens: on the
demo test set's answers 113 forced tokens per request against vedit's 91), which the reply's token
counts show. Prompts never go through genai's tokenizer. (Its Unigram loader, class ``T5Tokenizer``,
reads the list-shaped vocabulary, but genai hands the same file to llguidance, which then fails.)

:func:`step_costs` times genai's batched decoder step beside vedit's on the same model, precision
and prompts (issue 11's per-step target).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vedit.atomicio import atomic_dir
from vedit.workload.cost import Call, Cost
from vedit.peers.env import child_env, peer_env, peers_dir, run_or_raise, student_key, venv_python
from vedit.peers.requests import export_parts
from vedit.peers.worker import WORKERS, Worker
from vedit.decoding.language import char_regex
from vedit.decoding.prompts import PromptBuilder
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import ModelDirError, PeerError
from vedit.manifest import read_manifest
from vedit.reference import SCRIPT_BIAS

if TYPE_CHECKING:
    from vedit.workload.scripted import Script

log = logging.getLogger(__name__)

GENAI_VERSION = "0.18.0"
#: the builder imports transformers 5 classes and onnx_ir; torch pinned to the local CPU wheel
REQUIREMENTS = (f"onnxruntime-genai=={GENAI_VERSION}", "transformers==5.24.0", "onnx==1.23.2", "onnx-ir==1.1.0",
                "torch==2.13.0")
PRECISIONS = ("fp32", "int8")
#: bump when the genai folder's recipe changes (builder flags, tokenizer rewrite, session options)
RECIPE = 1
WORKER = WORKERS / "ortgenai_worker.py"


def unigram_as_bpe(tokenizer_json: dict) -> dict:
    """The same tokenizer with its Unigram vocabulary written as a BPE one (ids and pieces kept).

    Merges: every split of a piece into two pieces, the higher-scored pieces first; genai's BPE then
    splits text close to (not always as) the Unigram does. Normalizer, decoder and special tokens
    are kept, so llguidance reads the token bytes exactly (``▁`` as space, ``<0xXX>`` as bytes).
    """
    model = tokenizer_json["model"]
    if model.get("type") != "Unigram":
        return tokenizer_json
    pieces = [p for p, _ in model["vocab"]]
    scores = [float(s) for _, s in model["vocab"]]
    ids = {p: i for i, p in enumerate(pieces)}
    special = {t["content"] for t in tokenizer_json.get("added_tokens", [])}
    merges = []
    for i in sorted(range(len(pieces)), key=lambda i: (-scores[i], i)):
        p = pieces[i]
        if p in special or len(p) < 2 or (len(p) == 6 and p.startswith("<0x")):
            continue
        splits = [(p[:k], p[k:]) for k in range(1, len(p)) if p[:k] in ids and p[k:] in ids]
        splits.sort(key=lambda lr: -(scores[ids[lr[0]]] + scores[ids[lr[1]]]))
        merges += [[a, b] for a, b in splits]
    unk = pieces[model["unk_id"]] if model.get("unk_id") is not None else None
    out = dict(tokenizer_json)
    out["model"] = {"type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": bool(model.get("byte_fallback")),
                    "ignore_merges": False, "vocab": ids, "merges": merges}
    return out


def models_dir() -> Path:
    """Where genai's built models are cached (one folder per student, precision, threads and recipe)."""
    return peers_dir() / "ortgenai-models"


def _student_key(student_dir: Path) -> str:
    """The student's content key plus its tokenizer (genai's folder carries a rendering of it)."""
    h = hashlib.sha256(student_key(student_dir).encode())
    h.update((student_dir / "tokenizer.json").read_bytes())
    return h.hexdigest()[:12]


def genai_model(student_dir: Path, precision: str, *, threads: int, python: Path) -> Path:
    """genai's folder for ``student_dir`` at ``precision`` (built once with genai's builder, then cached)."""
    student_dir = Path(student_dir)
    if precision not in PRECISIONS:
        raise PeerError(f"onnxruntime-genai: precision {precision!r} not offered here (only {', '.join(PRECISIONS)})")
    if not (student_dir / "config.json").is_file() or not list(student_dir.glob("*.safetensors")):
        raise ModelDirError(f"{student_dir}: not a merged HF Llama folder (config.json + *.safetensors)")
    key = f"{student_dir.name}-{precision}-t{threads}-{_student_key(student_dir)}-r{RECIPE}"
    out = models_dir() / key
    if (out / "genai_config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"onnxruntime-genai: building {precision} model from {student_dir} (genai's builder)")
    began = time.monotonic()
    with atomic_dir(out) as tmp:
        cache = tmp / ".cache"
        cmd = [str(python), "-m", "onnxruntime_genai.models.builder", "-i", str(student_dir), "-o", str(tmp),
               "-p", precision, "-e", "cpu", "-c", str(cache)]
        run_or_raise(cmd, f"onnxruntime-genai builder failed on {student_dir} ({precision})", env=child_env())
        shutil.rmtree(cache, ignore_errors=True)
        tj = json.loads((student_dir / "tokenizer.json").read_text(encoding="utf-8"))
        (tmp / "tokenizer.json").write_text(json.dumps(unigram_as_bpe(tj), ensure_ascii=False), encoding="utf-8")
        tc_path = tmp / "tokenizer_config.json"
        tc = json.loads(tc_path.read_text(encoding="utf-8")) if tc_path.exists() else {}
        tc["tokenizer_class"] = "LlamaTokenizer"  # onnxruntime-extensions: SentencePiece-style BPE
        tc_path.write_text(json.dumps(tc, indent=1), encoding="utf-8")
        cfg_path = tmp / "genai_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        # the same session settings as vedit's (vedit.decoding.session): N intra-op threads, no spinning
        cfg["model"]["decoder"]["session_options"].update({
            "intra_op_num_threads": int(threads), "inter_op_num_threads": 1,
            "session.intra_op.allow_spinning": "0"})
        cfg_path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    log.info(f"onnxruntime-genai: {precision} model ready in {time.monotonic() - began:.0f} s at {out}")
    return out


@dataclass
class LlamaRequests:
    """An intent's rows as vedit's Predictor builds them (same registry, tokenizer, template, limit)."""

    builder: PromptBuilder
    tools: list[str]
    regex: list[str]
    scripts: dict[str, "Script"]
    max_new: int
    prefixes: list[list[int]]  # per tool: the prompt start every request shares (vedit's prefix cache)
    cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for intent in self.scripts:  # built before any timing: tokenizing is not the peer's work
            self.rows(intent)

    @classmethod
    def load(cls, exports: dict[str, Path], scripts: dict[str, "Script"]) -> "LlamaRequests":
        x = export_parts(exports, "llama", "onnxruntime-genai")
        registry, builder, longest = x.registry, x.builder, x.longest
        tools = list(registry.tool_names)
        return cls(builder, tools, [char_regex(registry.tool(t)) for t in tools], dict(scripts), longest,
                   [list(p) for p in builder.shared_prefixes()])

    def rows(self, intent: str) -> list[dict[str, Any]]:
        """One request per tool row: vedit's prompt ids, the tool's regex and (if scripted) the script."""
        if intent not in self.cache:
            self.cache[intent] = self._rows(intent)
        return self.cache[intent]

    def _rows(self, intent: str) -> list[dict[str, Any]]:
        ids = self.builder.build(intent).ids
        script = self.scripts.get(intent)
        out = []
        for tool, prompt, rx, pre in zip(self.tools, ids, self.regex, self.prefixes):
            shared = len(pre) if list(prompt[: len(pre)]) == pre else 0
            # genai may split forced text into more tokens than vedit: bound by bytes (a token writes >= 1)
            row: dict[str, Any] = {"prompt": list(prompt), "prefix": shared, "regex": rx, "script": None,
                                   "text": None, "max_new": self.max_new * 4}
            if script is not None:
                row.update(script=list(script.tokens[tool]), text=script.texts[tool],
                           max_new=len(script.texts[tool].encode("utf-8")) + 1)
            out.append(row)
        return out


def check_student(student_dir: Path, exports: dict[str, Path]) -> None:
    """Refuse the base folder of a LoRA export: genai would then run other weights than vedit does."""
    for export in exports.values():
        source = read_manifest(export).data.get("source") or {}
        base = source.get("model_dir")
        if source.get("adapter_dir") and base and Path(base).resolve() == Path(student_dir).resolve():
            raise ModelDirError(f"{student_dir}: the base of {export}, which merged the adapter "
                                f"{source['adapter_dir']}; give onnxruntime-genai the merged HF folder")


def peer_python() -> Path:
    """The peer venv's interpreter (built on first use, minutes: transformers 5, torch CPU, genai)."""
    return venv_python(peer_env("ortgenai", REQUIREMENTS))


def start_worker(model_dir: Path, python: Path, precision: str) -> Worker:
    return Worker(python, WORKER, ["--model", str(model_dir)], name=f"ortgenai-{precision}", timeout=600.0)


def paths(*, student_dir: Path, exports: dict[str, Path], scripts: dict[str, "Script"], threads: int,
          precisions: Sequence[str] = PRECISIONS) -> dict[str, Call]:
    """Rows ``ort-genai+guidance-fp32`` / ``-int8``: genai's guidance and fast-forward, steered to the scripts."""
    check_student(student_dir, exports)
    requests = LlamaRequests.load(exports, scripts)
    python = peer_python()
    out: dict[str, Call] = {}
    for precision in precisions:
        worker = start_worker(genai_model(student_dir, precision, threads=threads, python=python), python, precision)
        out[f"ort-genai+guidance-{precision}"] = _call(worker, requests, precision, threads)
    return out


def _call(worker: Worker, requests: LlamaRequests, precision: str, threads: int) -> Call:
    def call(intent: str) -> Cost:
        rows = requests.rows(intent)
        r = worker.run(rows=rows, bias=SCRIPT_BIAS)
        scripted = all(row["text"] is not None for row in rows)
        return Cost(decoder_calls=int(r["calls"]), free_tokens=int(r["free"]), forced_tokens=int(r["forced"]),
                    texts=tuple(r["texts"]) if scripted else None)

    kind = ("MatMulNBits 8-bit weights (block 32), int8 activations" if precision == "int8" else "fp32")
    call.info = (f"{worker.info.get('engine', 'onnxruntime-genai')}, {kind}, {threads} threads (no spinning); "
                 "guidance: llguidance regex = vedit's output language per tool, fast-forward on; "
                 "the 3 rows one after another at batch 1 (genai disables fast-forward above batch 1 and its "
                 "batched guidance aborts when a row finishes), one generator per tool rewound to the "
                 "prompt's shared prefix (its KV kept, like vedit's prefix cache); steered to the script with get_logits/set_logits; "
                 "free = tokens genai's sampler picked")  # type: ignore[attr-defined]
    call.worker = worker  # type: ignore[attr-defined]
    return call


# --------------------------------------------------------------------------- per-step cost (issue 11)


@dataclass
class StepCost:
    precision: str
    batch: int
    steps: int
    vedit_ms: float  # median ms per batched decoder step
    genai_ms: float
    vedit_prefill_ms: float
    genai_prefill_ms: float

    @property
    def ratio(self) -> float:
        """vedit / genai: above 1 means vedit's step is slower."""
        return self.vedit_ms / self.genai_ms if self.genai_ms else float("nan")

    def to_json(self) -> dict:
        return {**self.__dict__, "ratio": round(self.ratio, 3)}


def _vedit_steps(export_dir: Path, prompts: list[list[int]], steps: int, threads: int, model=None):
    """vedit's decoder-only backend: prefill, then ``steps`` calls of one token per row (ms each)."""
    import numpy as np

    from vedit.decoding.decoder_only import DecoderOnlyModel

    if model is None:
        man = read_manifest(export_dir)
        tok = load_tokenizer(export_dir)
        model = DecoderOnlyModel(export_dir, man.files, threads=threads, pad_token_id=tok.pad_token_id,
                                 config=man.config)
    backend = model.backend(prompts)
    rows = list(range(len(prompts)))
    t0 = time.perf_counter()
    logits = backend.feed(rows, [list(p) for p in prompts])
    prefill = (time.perf_counter() - t0) * 1000
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        nxt = [[int(np.argmax(logits[k]))] for k in rows]
        logits = backend.feed(rows, nxt)
        out.append((time.perf_counter() - t0) * 1000)
    return model, prefill, out


def step_costs(*, student_dir: Path, exports: dict[str, Path], intents: Sequence[str], threads: int = 2,
               steps: int = 32, rounds: int = 3) -> list[StepCost]:
    """ms per batched decoder step (batch = one request's 3 tool prompts), vedit vs genai, interleaved.

    For each precision in ``exports``: the same prompts (vedit's ids), ``rounds`` alternating blocks
    of ``steps`` steps per engine (vedit in this process, genai in its worker, never at once), medians.
    """
    check_student(student_dir, exports)
    requests = LlamaRequests.load(exports, {})
    python = peer_python()
    out = []
    for precision, export_dir in exports.items():
        if precision not in PRECISIONS:
            continue
        worker = start_worker(genai_model(student_dir, precision, threads=threads, python=python), python, precision)
        try:
            model = None
            v_ms, g_ms, v_pre, g_pre = [], [], [], []
            for r in range(rounds):
                for intent in intents:
                    prompts = [row["prompt"] for row in requests.rows(intent)]
                    model, pre, ms = _vedit_steps(Path(export_dir), prompts, steps, threads, model)
                    reply = worker.request("steps", rows=prompts, steps=steps)
                    if r or len(intents) == 1:  # the first round warms both up
                        v_ms += ms
                        v_pre.append(pre)
                        g_ms += reply["step_ms"]
                        g_pre.append(reply["prefill_ms"])
            out.append(StepCost(precision, len(prompts), steps, statistics.median(v_ms), statistics.median(g_ms),
                                statistics.median(v_pre), statistics.median(g_pre)))
        finally:
            worker.close()
    return out


__all__ = ["GENAI_VERSION", "LlamaRequests", "REQUIREMENTS", "StepCost", "check_student", "genai_model", "models_dir",
           "paths",
           "step_costs", "unigram_as_bpe"]
