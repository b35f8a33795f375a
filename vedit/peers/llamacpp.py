"""llama.cpp (llama-cpp-python) with a GBNF grammar: the peer a user would pick for a Llama student on a CPU.

What runs: llama-cpp-python, built from its sdist in the ``llamacpp`` peer env (no wheel is offered
here; a plain CPU build, minutes on two cores). The student's merged HF folder is converted to GGUF
by the converter vendored in that same sdist (``convert_hf_to_gguf.py`` + its ``gguf-py``), at F32
(``fp32``) or Q8_0 (``q8_0``: llama.cpp's 8-bit weights, blocks of 32 with one scale each; vedit's
int8 is onnxruntime's MatMulNBits 8-bit weights, blocks of 32, so the two int8 rows are each engine's own int8).

A worker in the peer venv (``workers/llamacpp_worker.py``) answers each request's three tool prompts
with vedit's prompt ids (llama.cpp's tokenizer never writes a prompt: its SentencePiece path merges
by score, not by the Unigram's best segmentation, so it would not give vedit's ids), one row after
another through ``Llama.generate`` at temperature 0, constrained by a GBNF grammar of exactly
vedit's output language (:func:`vedit.peers.gbnf.tool_gbnf`) and steered to the scripted
answer by a logits processor adding the script bias to the scripted token before the grammar.

Tokenizer for the GGUF: the students' ``spiece.model`` (SentencePiece Unigram with byte fallback)
is given to the converter as ``tokenizer.model``; llama.cpp then writes each token's bytes as vedit
does (``▁`` as a space, ``<0xXX>`` as one byte), which the worker's texts check on every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vedit.atomicio import atomic_dir
from vedit.workload.cost import Call, Cost
from vedit.peers.env import child_env, last_line, models_dir, peer_env, peers_dir, student_key, venv_python
from vedit.peers.gbnf import longest_text, tool_gbnf
from vedit.peers.requests import export_parts
from vedit.peers.worker import WORKERS, Worker
from vedit.decoding.prompts import PromptBuilder
from vedit.errors import ModelDirError, PeerError
from vedit.registry.model import Registry

if TYPE_CHECKING:
    from vedit.workload.scripted import Script

log = logging.getLogger(__name__)

LLAMACPP_VERSION = "0.3.36"
#: the converter needs torch (pinned to the local CPU wheel by peer_env too), transformers and sentencepiece
REQUIREMENTS = (f"llama-cpp-python=={LLAMACPP_VERSION}", "torch==2.13.0", "transformers<4.58", "sentencepiece",
                "protobuf", "numpy")
#: a plain CPU build of the sdist (llama.cpp's own tools, tests, server and curl are not needed)
BUILD_ENV = {
    "CMAKE_ARGS": "-DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
                  "-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF",
    "CMAKE_BUILD_PARALLEL_LEVEL": "2",
}
#: row precision -> the converter's --outtype
OUTTYPES = {"fp32": "f32", "q8_0": "q8_0"}
PRECISIONS = tuple(OUTTYPES)
#: bump when the GGUF recipe changes (converter flags, staged files)
RECIPE = 1
WORKER = WORKERS / "llamacpp_worker.py"
#: files of a student folder the converter reads (the weights are found by glob)
_STUDENT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json")


def peer_python() -> Path:
    """The peer venv's interpreter (built on first use: llama-cpp-python from source, minutes)."""
    return venv_python(peer_env("llamacpp", REQUIREMENTS, env=BUILD_ENV))


def converter_dir(python: Path) -> Path:
    """The sdist's ``vendor/llama.cpp`` Python parts (converter, ``conversion``, ``gguf-py``), fetched once.

    The wheel installs only the library; the converter that matches its GGUF format ships in the sdist.
    """
    out = peers_dir() / f"llama.cpp-convert-{LLAMACPP_VERSION}"
    if (out / "convert_hf_to_gguf.py").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"llama.cpp: fetching the converter from the llama-cpp-python {LLAMACPP_VERSION} sdist")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".sdist-") as tmp:
        cmd = [str(python), "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
               f"llama-cpp-python=={LLAMACPP_VERSION}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise PeerError(f"llama.cpp: cannot fetch the llama-cpp-python sdist for its converter: "
                            f"{last_line(done.stderr)}")
        prefix = f"llama_cpp_python-{LLAMACPP_VERSION}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")
        with tarfile.open(archives[0]) as tar, atomic_dir(out, first_wins=True) as dest:
            for m in tar.getmembers():
                rel = m.name[len(prefix):] if m.name.startswith(prefix) else None
                if rel and (m.isfile() or m.isdir()) and rel.startswith(wanted):
                    m = m.replace(name=rel)
                    tar.extract(m, dest, filter="data")
    if not (out / "convert_hf_to_gguf.py").is_file():
        raise PeerError(f"llama.cpp: the sdist has no vendor/llama.cpp/convert_hf_to_gguf.py ({out})")
    return out


def gguf_dir() -> Path:
    """Where converted GGUF files and the grammar files are cached."""
    return models_dir() / "llamacpp"


def _gguf_key(student_dir: Path) -> str:
    """The student's content key plus its SentencePiece model (the GGUF carries the vocabulary too)."""
    h = hashlib.sha256(student_key(student_dir).encode())
    for name in ("tokenizer.model", "spiece.model", "tokenizer_config.json"):
        if (student_dir / name).is_file():
            h.update(name.encode() + (student_dir / name).read_bytes())
    return h.hexdigest()[:12]


def _stage(student_dir: Path, stage: Path) -> None:
    """The folder the converter reads: links to the student's files, its SentencePiece model as ``tokenizer.model``."""
    sp = next((student_dir / n for n in ("tokenizer.model", "spiece.model") if (student_dir / n).is_file()), None)
    if sp is None:
        raise ModelDirError(f"{student_dir}: no SentencePiece model (spiece.model or tokenizer.model) for the GGUF vocabulary")
    for name in _STUDENT_FILES:
        if (student_dir / name).is_file():
            (stage / name).symlink_to((student_dir / name).resolve())
    for w in student_dir.glob("*.safetensors*"):
        (stage / w.name).symlink_to(w.resolve())
    (stage / "tokenizer.model").symlink_to(sp.resolve())


def gguf_model(student_dir: Path, precision: str, *, python: Path) -> Path:
    """The GGUF file of ``student_dir`` at ``precision`` (converted once, then cached under the peers dir)."""
    student_dir = Path(student_dir)
    if precision not in OUTTYPES:
        raise PeerError(f"llama.cpp: precision {precision!r} not offered here (only {', '.join(OUTTYPES)})")
    if not (student_dir / "config.json").is_file() or not list(student_dir.glob("*.safetensors")):
        raise ModelDirError(f"{student_dir}: not a merged HF Llama folder (config.json + *.safetensors)")
    out = gguf_dir() / f"{student_dir.name}-{_gguf_key(student_dir)}-r{RECIPE}-{OUTTYPES[precision]}.gguf"
    if out.is_file():
        return out
    conv = converter_dir(python)
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"llama.cpp: converting {student_dir} to GGUF {OUTTYPES[precision]}")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".convert-") as tmp:
        stage = Path(tmp) / "model"
        stage.mkdir()
        _stage(student_dir, stage)
        part = Path(tmp) / out.name
        env = child_env()
        env["PYTHONPATH"] = str(conv / "gguf-py")
        cmd = [str(python), str(conv / "convert_hf_to_gguf.py"), str(stage), "--outtype", OUTTYPES[precision],
               "--outfile", str(part)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if done.returncode != 0 or not part.is_file():
            errors = [t for t in done.stderr.splitlines() if "Error" in t or "error" in t] or done.stderr.splitlines()
            raise PeerError(f"llama.cpp: GGUF conversion of {student_dir} failed: {(errors or ['(no output)'])[-1].strip()}")
        os.replace(part, out)
    log.info(f"llama.cpp: GGUF {OUTTYPES[precision]} ready in {time.monotonic() - began:.0f} s "
             f"({out.stat().st_size / 2**20:.0f} MB) at {out}")
    return out


class LlamaRows:
    """An intent's three rows as vedit's Predictor builds them (same registry, tokenizer, template, limit)."""

    def __init__(self, registry: Registry, builder: PromptBuilder, scripts: dict[str, "Script"], max_new: int,
                 context: int):
        self.registry = registry
        self.tools = list(registry.tool_names)
        self.builder = builder
        self.scripts = scripts
        self.max_new = max_new
        self.context = context

    @classmethod
    def load(cls, exports: dict[str, Path], scripts: dict[str, "Script"], *,
             trained_context: int | None = None) -> "LlamaRows":
        """``trained_context``: the student's ``max_position_embeddings``. llama.cpp crashes (signal 11
        on an Intel host) when its per-sequence context exceeds the trained one, so the context is
        capped there, and each row may then generate only what still fits after its prompt."""
        x = export_parts(exports, "llama", "the llama.cpp peer")
        registry, builder, longest = x.registry, x.builder, x.longest
        # GBNF admits any tokenization: one byte per token at worst, then EOS
        max_new = 1 + max(longest_text(registry.tool(t)) for t in registry.tool_names)
        # the prompt limit leaves room for vedit's longest output; llama.cpp's may be longer
        context = builder.limit + max(max_new, longest)
        if trained_context is not None and context > trained_context:
            if builder.limit + longest > trained_context:
                raise PeerError(f"llama.cpp: the student's trained context ({trained_context} tokens) cannot hold "
                                f"vedit's prompt limit ({builder.limit}) plus its longest answer ({longest})")
            context = trained_context
        return cls(registry, builder, dict(scripts), max_new, context)

    def grammars(self) -> dict[str, str]:
        return {t: tool_gbnf(self.registry.tool(t)) for t in self.tools}

    def rows(self, intent: str) -> list[dict[str, Any]]:
        ids = self.builder.build(intent).ids
        script = self.scripts.get(intent)
        return [{"tool": tool, "prompt": list(prompt),
                 "script": list(script.tokens[tool]) if script is not None else None,
                 "max_new": min(self.context - len(prompt),
                                max(self.max_new, len(script.tokens[tool])) if script is not None else self.max_new)}
                for tool, prompt in zip(self.tools, ids)]


def start_worker(model: Path, grammars: Path, python: Path, precision: str, *, threads: int, context: int) -> Worker:
    return Worker(python, WORKER, ["--model", str(model), "--grammars", str(grammars), "--threads", str(threads),
                                   "--n-ctx", str(context)], name=f"llamacpp-{precision}", timeout=600.0)


def paths(*, student_dir: Path, exports: dict[str, Path], scripts: dict[str, "Script"], threads: int,
          precisions: Sequence[str] = PRECISIONS) -> dict[str, Call]:
    """Rows ``llama.cpp+gbnf-fp32`` / ``-q8_0``: llama.cpp's GBNF sampling, steered to the scripts."""
    python = peer_python()
    rows = LlamaRows.load(exports, scripts, trained_context=trained_context(student_dir))
    grammar_file = gguf_dir() / f"grammars-{_digest(rows.grammars())}.json"
    if not grammar_file.is_file():
        grammar_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = grammar_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rows.grammars(), ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, grammar_file)
    out: dict[str, Call] = {}
    for precision in precisions:
        model = gguf_model(student_dir, precision, python=python)
        worker = start_worker(model, grammar_file, python, precision, threads=threads, context=rows.context)
        out[f"llama.cpp+gbnf-{precision}"] = _call(worker, rows, precision, threads)
    return out


def trained_context(student_dir: Path) -> int | None:
    """The student's trained context (``max_position_embeddings`` in its config.json), if it says."""
    try:
        value = json.loads((Path(student_dir) / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _call(worker: Worker, rows: LlamaRows, precision: str, threads: int) -> Call:
    def call(intent: str) -> Cost:
        req = rows.rows(intent)
        r = worker.run(rows=req)
        call.last = r  # type: ignore[attr-defined]  # the worker's reply (ms, decode_ms) for profiles
        tokens = [len(t) for t in r["tokens"]]
        return Cost(decoder_calls=int(r["calls"]), free_tokens=sum(tokens), forced_tokens=0, texts=tuple(r["texts"]))

    kind = "Q8_0 weights (8-bit, blocks of 32)" if precision == "q8_0" else "F32 weights"
    call.info = (f"{worker.info.get('engine', 'llama-cpp-python')} (llama.cpp CPU build from the sdist), GGUF {kind}, "
                 f"{threads} threads; constrained by a GBNF grammar of vedit's output language per tool "
                 "(LlamaGrammar, character-level: any tokenization of the valid texts), steered to the script by a "
                 "logits processor, greedy; the 3 rows one after another (not batched; llama-cpp-python reuses the KV of "
                 "the prefix a row shares with the previous one), prompts as vedit's token ids; "
                 "no jump-forward: every output token is sampled (free) and costs one llama_decode")  # type: ignore[attr-defined]
    call.worker = worker  # type: ignore[attr-defined]
    return call


__all__ = ["BUILD_ENV", "LLAMACPP_VERSION", "LlamaRows", "OUTTYPES", "PRECISIONS", "REQUIREMENTS", "converter_dir",
           "gguf_dir", "gguf_model", "paths", "peer_python", "start_worker", "trained_context"]
