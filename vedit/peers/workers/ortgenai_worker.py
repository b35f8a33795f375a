"""onnxruntime-genai worker (runs in the ``ortgenai`` peer env; standalone, no vedit import).

``python ortgenai_worker.py --model GENAI_DIR``  (threads are in the model's genai_config.json)

The model is loaded once. Requests carry vedit's prompt token *ids*, so genai's tokenizer never
writes a prompt; genai uses it only inside guidance (llguidance tokenizes fast-forward text with it).

- ``{"op": "run", "rows": [{"prompt": [ids], "prefix": int, "regex": str, "script": [ids] | null,
  "text": str | null, "max_new": int}, ...], "reuse": true}``: each row is one generator of batch 1
  with genai's guidance (llguidance regex, fast-forward tokens on), run one after another. With
  ``reuse`` (the default) one generator per regex is kept and rewound for the next request, the
  cheapest way genai offers: a new generator re-reads ``tokenizer.json`` and rebuilds llguidance's
  token table; it is rewound to the row's shared ``prefix`` (the prompt template before the intent),
  whose KV it keeps, as vedit's prompt-prefix cache does, so only the rest of the prompt is fed. Rows are not batched: genai turns
  fast-forward off for batch > 1, and its batched guidance aborts when one row finishes
  ("compute_mask() called after stop"). With ``script``, the scripted token gets +``BIAS`` before
  genai's guidance mask and greedy choice (``"bias"`` in the request, else ``BIAS``) (``get_logits`` / ``set_logits``), so genai answers the
  script; once genai's own token split of a fast-forward run differs from the script's, the
  scripted *text* steers instead (the longest token that continues it).
  Reply: ``{"ms", "texts": [...], "tokens": [[ids]...], "calls", "free", "forced", "prefill_fed"}``:
  ``calls`` counts model runs (prefill, one per generated token, one more per fast-forward run),
  ``free`` tokens genai's sampler picked, ``forced`` fast-forward tokens, ``prefill_fed`` prompt
  tokens fed (the rest came from the kept prefix).
- ``{"op": "steps", "rows": [[ids]...], "steps": N}``: plain batched greedy, no guidance: prefill
  the rows (left-padded with the pad id) and then ``N`` decoding steps; reply
  ``{"prefill_ms", "step_ms": [...]}`` (one model run per step for all rows).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jsonl_protocol import serve

#: added to the scripted token's logit (vedit's SCRIPT_BIAS is of the same size)
BIAS = 1.0e4


def token_bytes(model_dir: Path) -> dict[int, bytes]:
    """Bytes each token writes (SentencePiece pieces: ``▁`` is a space, ``<0xXX>`` one byte)."""
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    special = {t["id"] for t in tj.get("added_tokens", []) if t.get("special")}
    out = {}
    for piece, i in tj["model"]["vocab"].items():
        if i in special:
            out[i] = b""
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out[i] = bytes([int(piece[3:5], 16)])
        else:
            out[i] = piece.replace("\u2581", " ").encode("utf-8")
    return out


def byte_tokens(model_dir: Path) -> list[int]:
    """Ids of the byte-fallback pieces (``<0xXX>``): steering prefers a real piece writing the same bytes."""
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return [i for p, i in tj["model"]["vocab"].items() if len(p) == 6 and p.startswith("<0x") and p.endswith(">")]


def setup(argv: list[str]):
    import numpy as np
    import onnxruntime_genai as og

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    a = p.parse_args(argv)
    model_dir = Path(a.model)
    cfg = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))
    eos = cfg["model"]["eos_token_id"]
    eos = eos[0] if isinstance(eos, list) else int(eos)
    pad = int(cfg["model"].get("pad_token_id", 0))
    model = og.Model(og.Config(str(model_dir)))
    table = token_bytes(model_dir)
    byte_ids = set(byte_tokens(model_dir))
    by_first: dict[int, list[tuple[int, bytes]]] = {}  # first byte -> tokens, longest first, <0xXX> last
    for i, b in sorted(table.items(), key=lambda kv: (-len(kv[1]), kv[0] in byte_ids, kv[0])):
        if b:
            by_first.setdefault(b[0], []).append((i, b))

    def steer_token(gen: list[int], script: list[int] | None, text: bytes) -> int | None:
        """The token that continues the script after ``gen`` (None: nothing to steer to)."""
        p = len(gen)
        if script is not None and p < len(script) and gen == script[:p]:
            return script[p]
        done = b"".join(table.get(t, b"") for t in gen)
        if not text.startswith(done):
            return None
        rest = text[len(done):]
        if not rest:
            return eos
        return next((i for i, b in by_first.get(rest[0], []) if rest.startswith(b)), None)

    context = int(cfg["search"].get("max_length") or cfg["model"]["context_length"])
    generators: dict[str, object] = {}  # regex -> a batch-1 generator with that guidance, reused
    kept: dict[str, list[int]] = {}  # regex -> the prompt whose KV that generator holds

    def start(regex: str, prompt: list[int], prefix: int, need: int, reuse: bool):
        """A guided generator fed ``prompt``. Kept per regex and rewound: genai parses tokenizer.json
        and builds llguidance's token table per new generator (~25 ms here). When the kept KV starts
        with the prompt's shared ``prefix`` (the template before the intent, as vedit's prefix cache
        uses), it rewinds to there and feeds only the rest; rewinding also resets the guidance."""
        if need > context:
            raise ValueError(f"prompt + output ({need} tokens) exceed the context ({context})")
        g = generators.get(regex) if reuse else None
        if g is None:
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=context, batch_size=1, do_sample=False)
            params.set_guidance("regex", regex, True)
            g = og.Generator(model, params)
            if reuse:
                generators[regex] = g
            keep = 0
        else:
            old = kept.get(regex, [])
            keep = prefix if 0 < prefix < len(prompt) and old[:prefix] == prompt[:prefix] else 0
            g.rewind_to(keep)
        if reuse:
            kept[regex] = prompt  # what the kept generator's KV starts with now
        g.append_tokens(np.array([prompt[keep:]], dtype=np.int32))  # prefill: one model run
        return g, keep

    def run_row(row: dict, reuse: bool, bias: float) -> dict:
        prompt = [int(t) for t in row["prompt"]]
        script = [int(t) for t in row["script"]] if row.get("script") is not None else None
        text = row["text"].encode("utf-8") if row.get("text") is not None else None
        n0 = len(prompt)
        t0 = time.perf_counter()
        g, kept_n = start(row["regex"], prompt, int(row.get("prefix", 0)), n0 + int(row["max_new"]) + 1, reuse)
        calls, free, forced = 1, 0, 0
        first = True
        while not g.is_done():
            before = g.token_count()
            if text is not None:
                logits = g.get_logits()  # runs the model (and a fast-forward run) unless the prefill just did
                if not first:
                    calls += 1
                gen = [int(t) for t in g.get_sequence(0)[n0:]]
                want = steer_token(gen, script, text)
                if want is not None:
                    logits = np.array(logits, dtype=np.float32, copy=True)
                    logits[0, -1, want] += bias
                    g.set_logits(logits)
                g.generate_next_token()
            else:
                g.generate_next_token()
                if not first:
                    calls += 1
            # the sequence grew by the fast-forward run and the pick (genai does not append a picked EOS)
            ff = g.token_count() - before - (0 if int(g.get_next_tokens()[0]) == eos else 1)
            if ff > 0:  # llguidance's forced tokens were fed in one more run
                calls += 1
                forced += ff
            free += 1
            first = False
        seq = [int(t) for t in g.get_sequence(0)[n0:]]
        last = int(g.get_next_tokens()[0])
        if last == eos and (not seq or seq[-1] != eos):
            seq.append(eos)
        ms = (time.perf_counter() - t0) * 1000
        out = b"".join(table.get(t, b"") for t in seq if t != eos).decode("utf-8", errors="replace")
        return {"ms": ms, "prefill_fed": n0 - kept_n, "tokens": seq, "text": out, "calls": calls,
                "free": free, "forced": forced}

    def handle(req: dict) -> dict:
        if req.get("op") == "steps":
            return steps(req)
        t0 = time.perf_counter()
        reuse = bool(req.get("reuse", True))
        bias = float(req.get("bias", BIAS))
        rows = [run_row(r, reuse, bias) for r in req["rows"]]
        ms = (time.perf_counter() - t0) * 1000
        return {"ms": ms, "texts": [r["text"] for r in rows], "tokens": [r["tokens"] for r in rows],
                "calls": sum(r["calls"] for r in rows), "free": sum(r["free"] for r in rows),
                "forced": sum(r["forced"] for r in rows), "prefill_fed": sum(r["prefill_fed"] for r in rows)}

    def steps(req: dict) -> dict:
        rows = [[int(t) for t in r] for r in req["rows"]]
        n = int(req["steps"])
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), pad, dtype=np.int32)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = r
        params = og.GeneratorParams(model)
        # min_length keeps EOS away: every row runs every step
        params.set_search_options(max_length=width + n + 1, min_length=width + n + 1, batch_size=len(rows),
                                  do_sample=False)
        g = og.Generator(model, params)
        t0 = time.perf_counter()
        g.append_tokens(ids)
        prefill = time.perf_counter() - t0
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            g.generate_next_token()  # greedy pick of the last logits, then one batched model run
            g.get_logits()
            out.append((time.perf_counter() - t0) * 1000)
        return {"ms": sum(out), "prefill_ms": prefill * 1000, "step_ms": out}

    session = cfg["model"]["decoder"].get("session_options", {})
    info = {"engine": f"onnxruntime-genai {og.__version__}", "threads": session.get("intra_op_num_threads"),
            "spinning": session.get("session.intra_op.allow_spinning", "default"),
            "vocab_size": cfg["model"]["vocab_size"]}
    return handle, info


if __name__ == "__main__":
    serve(setup)
