"""Write a static site that runs an export's student in the browser.

The site is the JavaScript runtime of ``web/`` (bundled by esbuild, with onnxruntime-web's WASM
files: ``web/dist``, built by ``bash scripts/web.sh``), the export's ONNX files and tokenizer, and
``model/web.json``: everything the JavaScript loop needs that the Python runtime derives from the
export, rendered here by the Python code itself so nothing is restated: the compiled grammar's
tables and token bytes (the :class:`~vedit.decoding.grammar.CompiledGrammar` that
:func:`~vedit.decoding.grammar.load_grammar` reads), each tool's prompt around the intent (from the
registry snapshot), the input limit (:func:`~vedit.decoding.prompts.input_limit`) and the intent
rule's byte limit. A service worker caches every file, so the page answers offline once loaded.

Why the runtime is not shipped inside the Python package: onnxruntime-web's WASM binary alone is
15 MB (29 MB for its WebGPU build), a binary that does not belong in git nor in the 220 MB edge
install; ``scripts/web.sh`` builds it with the pinned npm packages (``npm ci``) in seconds, and
``vedit web build`` says so in one line when it is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vedit.atomicio import atomic_dir
from vedit.decoding.grammar import load_grammar
from vedit.decoding.decoder_only import DecoderOnlyModel
from vedit.decoding.prompts import PromptBuilder, input_limit
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import WebBuildError
from vedit.intents import MAX_INTENT_BYTES
from vedit.manifest import read_manifest
from vedit.registry.model import load_registry

WEB_FORMAT = "vedit-web"
WEB_VERSION = 2
#: site file -> ``web/dist`` file, per flavour: onnxruntime-web's WASM build (CPU, 15 MB), or its
#: WebGPU build (WebGPU where the browser offers it, else the same CPU kernels; 29 MB)
RUNTIME_FILES = {
    "wasm": {"index.html": "index.html", "sw.js": "sw.js", "vedit-web.js": "vedit-web.js",
             "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
             "ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.mjs"},
    "webgpu": {"index.html": "index.html", "sw.js": "sw.js", "vedit-web.js": "vedit-web-webgpu.js",
               "ort-wasm-simd-threaded.asyncify.wasm": "ort-wasm-simd-threaded.asyncify.wasm",
               "ort-wasm-simd-threaded.asyncify.mjs": "ort-wasm-simd-threaded.asyncify.mjs"},
}
#: the precisions whose ONNX inputs and outputs are float32 (what the JavaScript caches hold)
PRECISIONS = ("fp32", "int8")
#: the model families the JavaScript runtime has a backend for (web/src/t5.js, web/src/llama.js)
FAMILIES = ("t5", "llama")
_SENTINEL = "\x00vedit-intent\x00"


@dataclass(frozen=True)
class SiteReport:
    out_dir: Path
    family: str
    precision: str
    bytes_total: int
    bytes_model: int
    files: int


def runtime_dir() -> Path:
    """The built JavaScript runtime: ``$VEDIT_WEB_DIST``, else ``web/dist`` of this checkout."""
    env = os.environ.get("VEDIT_WEB_DIST")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "web" / "dist"


def web_meta(export_dir: str | Path) -> dict[str, Any]:
    """``model/web.json``: what the JavaScript runtime reads besides the ONNX files and tokenizer."""
    d = Path(export_dir)
    man = read_manifest(d)
    if man.family not in FAMILIES:
        raise WebBuildError(f"{d}: the web runtime serves {' and '.join(FAMILIES)} students; this export is "
                            f"{man.family}: serve it with vedit predict or Triton")
    if man.precision not in PRECISIONS:
        raise WebBuildError(f"{d}: the web runtime serves {' and '.join(PRECISIONS)} exports; this one is "
                            f"{man.precision}: export with --precision int8 or fp32")
    external = sorted(p.name for p in d.iterdir() if p.suffix != ".onnx" and ".onnx" in p.name)
    if external:
        raise WebBuildError(f"{d}: the ONNX weights are in external data files ({', '.join(external)}), which the "
                            "web runtime does not load; a model that needs them is too big for a browser anyway")
    registry = load_registry(d / "registry.json")
    grammar = load_grammar(d)
    tok = load_tokenizer(d)
    tools = []
    for t in registry.tools:
        parts = registry.prompt(t.name, _SENTINEL, man.family).split(_SENTINEL)
        if len(parts) != 2:
            raise WebBuildError(f"the {t.name} prompt must name the intent once; fix the registry's prompt")
        tools.append({"name": t.name, "prompt": parts})  # answers are the grammar's JSON: any tools file
    automata = {name: {"indptr": a.indptr.tolist(), "tokens": a.tokens.tolist(), "next": a.next.tolist(),
                       "final": a.final.astype(int).tolist()} for name, a in grammar.automata.items()}
    limit = input_limit(man.family, man.config, grammar.max_tokens())
    family: dict[str, Any] = {}
    if man.family == "t5":
        family["files"] = {role: man.files[role] for role in ("encoder", "decoder", "decoder_with_past")}
        family["decoder_start_token_id"] = int(man.config.get("decoder_start_token_id", tok.pad_token_id))
    else:  # the prompt prefixes the predictor caches at load, and the KV cache's shape, as Python has them
        model = DecoderOnlyModel(d, man.files, pad_token_id=tok.pad_token_id, config=man.config)
        family["files"] = {"decoder": man.files["decoder"]}
        family["prefixes"] = PromptBuilder(registry, tok.tokenizer, man.family, limit).shared_prefixes()
        family["kv_shape"] = {name: [h, dim] for name, (h, dim, _) in model._shape.items()}
    return {
        "format": WEB_FORMAT,
        "version": WEB_VERSION,
        "family": man.family,
        "precision": man.precision,
        **family,
        "pad_token_id": tok.pad_token_id,
        "max_input_tokens": limit,
        "max_intent_bytes": MAX_INTENT_BYTES,
        "tools": tools,
        "grammar": {"mode": grammar.mode, "eos_token_id": grammar.eos_token_id, "automata": automata,
                    "token_bytes": {str(i): b.hex() for i, b in sorted(grammar.token_bytes.items())}},
    }


def build_site(export_dir: str | Path, out_dir: str | Path, *, force: bool = True,
               runtime: str | Path | None = None, webgpu: bool = False) -> SiteReport:
    """Write the site for ``export_dir`` into ``out_dir`` atomically (a temp dir, then a rename).

    ``webgpu``: ship onnxruntime-web's WebGPU build (twice the WASM bytes); the page then asks for
    WebGPU where the browser offers an adapter and runs on the CPU kernels otherwise."""
    d = Path(export_dir)
    meta = web_meta(d)
    src = Path(runtime) if runtime else runtime_dir()
    runtime_files = RUNTIME_FILES["webgpu" if webgpu else "wasm"]
    missing = [f for f in runtime_files.values() if not (src / f).is_file()]
    if missing:
        raise WebBuildError(f"the web runtime is not built ({src} lacks {', '.join(missing)}); build it with "
                            "`bash scripts/web.sh` (needs node and npm)")
    model_files = [*meta["files"].values(), "tokenizer.json", "tokenizer_config.json"]
    with atomic_dir(out_dir, force=force) as tmp:
        (tmp / "model").mkdir()
        for name in model_files:
            shutil.copyfile(d / name, tmp / "model" / name)
        (tmp / "model" / "web.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n", encoding="utf-8")
        for name, source in runtime_files.items():
            if name != "sw.js":
                shutil.copyfile(src / source, tmp / name)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for name in files:
            digest.update(name.encode() + b"\0" + (tmp / name).read_bytes())
        sw = (src / "sw.js").read_text(encoding="utf-8")
        sw = sw.replace("__VEDIT_FILES__", json.dumps(["./", *files])).replace("__VEDIT_VERSION__", digest.hexdigest()[:16])
        (tmp / "sw.js").write_text(sw, encoding="utf-8")
        sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
    return SiteReport(Path(out_dir), meta["family"], meta["precision"], sum(sizes.values()),
                      sum(v for k, v in sizes.items() if k.startswith("model/")), len(sizes))


__all__ = ["FAMILIES", "PRECISIONS", "SiteReport", "build_site", "runtime_dir", "web_meta"]
