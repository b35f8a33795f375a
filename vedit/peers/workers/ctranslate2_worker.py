"""CTranslate2 worker (runs in the ``ctranslate2`` peer env; standalone, no vedit import).

``python ctranslate2_worker.py --model CT2_DIR --compute-type float32|int8 --threads N``

The model is loaded once. A ``run`` request carries token *ids* (vedit's prompt ids): they are
mapped to CTranslate2's token strings through the converted model's own vocabulary, whose order
is the tokenizer's id order, so no tokenizer is needed here and the ids are exactly vedit's.

- ``{"op": "run", "rows": [[ids]...], "lengths": [L...]}``: greedy, one batch, row ``i`` decoded
  for exactly ``L[i]`` steps (``min_decoding_length`` keeps EOS away until the longest row's
  length; a step callback ends each shorter row at its own length). This is the scripted workload:
  the same number of tokens per row as the constrained paths, EOS step included.
- ``{"op": "run", "rows": [...], "max_length": M}``: greedy until EOS or ``M`` tokens (unscripted).
- ``"prefix": [[ids]...]`` (optional): CTranslate2's ``target_prefix``, forced before decoding.

Reply: ``{"ms": generation time, "tokens": [[ids]...], "steps": decoder steps of the batch}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jsonl_protocol import serve


def setup(argv: list[str]):
    import ctranslate2

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--compute-type", default="float32")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    vocab = json.loads((Path(a.model) / "shared_vocabulary.json").read_text(encoding="utf-8"))
    index = {t: i for i, t in enumerate(vocab)}
    tr = ctranslate2.Translator(a.model, device="cpu", compute_type=a.compute_type,
                                inter_threads=1, intra_threads=a.threads)

    def handle(req: dict) -> dict:
        source = [[vocab[i] for i in row] for row in req["rows"]]
        prefix = [[vocab[i] for i in row] for row in req["prefix"]] if req.get("prefix") else None
        lengths = req.get("lengths")
        opts: dict = {"beam_size": 1, "return_end_token": True, "max_input_length": 0}
        if lengths:
            longest = max(lengths)
            opts.update(max_decoding_length=longest, min_decoding_length=longest,
                        callback=lambda step: step.step + 1 >= lengths[step.batch_id])
        else:
            opts.update(max_decoding_length=int(req["max_length"]))
        t0 = time.perf_counter()
        results = tr.translate_batch(source, target_prefix=prefix, **opts)
        ms = (time.perf_counter() - t0) * 1000
        tokens = [[index[t] for t in r.hypotheses[0]] for r in results]
        return {"ms": ms, "tokens": tokens, "steps": max((len(t) for t in tokens), default=0)}

    info = {"engine": f"ctranslate2 {ctranslate2.__version__}", "compute_type": tr.compute_type,
            "intra_threads": a.threads, "inter_threads": 1, "device": tr.device}
    return handle, info


if __name__ == "__main__":
    serve(setup)
