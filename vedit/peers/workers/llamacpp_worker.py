"""llama.cpp worker (runs in the ``llamacpp`` peer env; standalone, no vedit import).

``python llamacpp_worker.py --model M.gguf --grammars G.json --threads 2 --n-ctx 1024``

``G.json`` maps each tool to its GBNF text (written by the main process from vedit's registry);
each grammar is parsed once at start, because llama.cpp answers an unparseable grammar with no
sampler and llama-cpp-python would crash on that later, mid-request. The model is loaded once.

- ``{"op": "run", "rows": [{"tool": str, "prompt": [ids], "script": [ids] | null, "max_new": int}]}``:
  each row goes through ``Llama.generate`` (temperature 0) with the tool's ``LlamaGrammar`` and,
  with ``script``, a logits processor adding ``BIAS`` to the scripted token at each step (vedit's
  rule: the bias is applied to the model's logits before the grammar's choice), rows one after
  another. Prompts are vedit's ids: llama.cpp's tokenizer never writes a prompt.
  Reply: ``{"ms", "tokens": [[ids]...], "texts": [...], "calls", "decode_ms"}``: ``ms`` covers
  the rows' generation only; ``calls`` counts ``llama_decode`` calls (prefill, then one per
  generated token but the last: llama.cpp has no jump-forward) and ``decode_ms`` the part of
  ``ms`` spent in them (the rest is sampling: the grammar over the whole vocabulary, the logits
  processor, llama-cpp-python's Python loop); ``texts`` are the bytes llama.cpp's own
  vocabulary gives each token (a check that the GGUF vocabulary is vedit's).
- ``{"op": "pieces", "ids": [...]}`` -> ``{"pieces": [hex]}``: the bytes of each token, as above.
- ``{"op": "tokenize", "texts": [...], "add_bos": bool}`` -> ``{"ids": [[...]]}``: llama.cpp's own
  tokenization (for checking it against vedit's; requests never use it).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time

from jsonl_protocol import serve

#: added to the scripted token's logit (vedit's SCRIPT_BIAS is of the same size)
BIAS = 1.0e4


def setup(argv: list[str]):
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama, LlamaGrammar

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--grammars", required=True, help="JSON file: {tool: GBNF text}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-ctx", type=int, default=1024)
    a = p.parse_args(argv)

    began = time.perf_counter()
    # n_batch = n_ctx: any prompt is one llama_decode (in micro-batches of llama.cpp's default 512
    # tokens inside it); logits of the last position only
    llm = Llama(model_path=a.model, n_ctx=a.n_ctx, n_batch=a.n_ctx, n_ubatch=512, n_threads=a.threads,
                n_threads_batch=a.threads, logits_all=False, verbose=False, seed=0)
    load_s = time.perf_counter() - began
    vocab = llm._model.vocab
    eos = int(llm.token_eos())

    with open(a.grammars, encoding="utf-8") as f:
        texts = json.load(f)
    grammars = {}
    for tool, text in texts.items():
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError(f"llama.cpp cannot parse the GBNF grammar of tool {tool!r}")
        llama_cpp.llama_sampler_free(sampler)
        grammars[tool] = LlamaGrammar.from_string(text, verbose=False)

    calls, decode_s = [0], [0.0]
    ctx = llm._ctx
    decode = ctx.decode

    def counted(batch):  # every llama_decode (prefill, generated tokens), and the time the model takes
        calls[0] += 1
        t0 = time.perf_counter()
        try:
            return decode(batch)
        finally:
            decode_s[0] += time.perf_counter() - t0

    ctx.decode = counted

    def piece(token: int) -> bytes:
        """The bytes ``token`` writes (no leading space stripped; special tokens write nothing)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def row(tool: str, prompt: list[int], script: list[int] | None, max_new: int) -> list[int]:
        start = len(prompt)

        def steer(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            position = len(input_ids) - start
            if position < len(script):
                scores[script[position]] += BIAS
            return scores

        out: list[int] = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                  grammar=grammars[tool], logits_processor=[steer] if script else None):
            out.append(int(token))
            if token == eos or len(out) >= max_new:
                break
        return out

    def run(req: dict) -> dict:
        rows = req["rows"]
        calls[0], decode_s[0] = 0, 0.0
        began = time.perf_counter()
        outs = [row(r["tool"], [int(t) for t in r["prompt"]], r.get("script"), int(r.get("max_new", 512)))
                for r in rows]
        ms = (time.perf_counter() - began) * 1e3
        texts = [b"".join(piece(t) for t in o if t != eos).decode("utf-8", "replace") for o in outs]
        return {"ms": ms, "calls": calls[0], "decode_ms": decode_s[0] * 1e3, "tokens": outs, "texts": texts}

    def handler(req: dict) -> dict:
        op = req.get("op")
        if op == "run":
            return run(req)
        if op == "pieces":
            return {"pieces": [piece(int(t)).hex() for t in req["ids"]]}
        if op == "tokenize":
            return {"ids": [llm.tokenize(t.encode("utf-8"), add_bos=bool(req.get("add_bos", False)), special=False)
                            for t in req["texts"]]}
        raise ValueError(f"unknown op {op!r}")

    info = {"engine": f"llama-cpp-python {llama_cpp.__version__}", "load_s": round(load_s, 3),
            "n_vocab": int(llm.n_vocab()), "eos": eos, "threads": a.threads, "n_ctx": a.n_ctx,
            "system": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()}
    return handler, info


if __name__ == "__main__":
    serve(setup)
