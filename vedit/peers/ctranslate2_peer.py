"""CTranslate2 on the T5 student: what a user who wants a fast CPU seq2seq engine would pick.

Setup, as its documentation has it: ``ct2-transformers-converter`` on the student folder (in the
``ctranslate2`` peer env: ctranslate2 4.8.5 with torch and transformers pinned like the main venv),
one float32 conversion loaded twice, as ``compute_type="float32"`` and ``"int8"`` (CTranslate2
quantizes at load), ``inter_threads=1, intra_threads=threads``, greedy (``beam_size=1``), the
request's three tool rows in one ``translate_batch``, prompt ids identical to vedit's.

It cannot be constrained: CTranslate2's Python API has no logits hook. What it offers, checked
here (demo T5 and base shape, 2026-12-01): ``target_prefix`` forces a fixed start per row, and it
is decoded step by step, so forcing the whole scripted answer costs the same as decoding that
many tokens (base shape: 6.4 s vs 6.3 s under the same load) and yields the scripts' exact texts,
but every token is then imposed (no model choice, no grammar); a step ``callback`` sees each token
and may end a row but cannot change it; ``suppress_sequences`` / ``end_token`` / ``disable_unk``
are fixed for the whole call, not grammar states; ``return_alternatives`` gives choices at one
position only. A grammar can only be emulated by one call per free token with the answer so far
as prefix (encoder and prefix re-run each time): 34 calls, ~13x the plain decode, for one demo
request on the base shape. So these rows decode each row freely for exactly its scripted length
(same token count as the constrained paths, EOS step included; the worker's ``prefix`` option
is there to re-check the above) and report no ``texts``: they are the random model's own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from vedit.atomicio import atomic_dir
from vedit.workload.cost import Call, Cost
from vedit.peers.env import TORCH_PIN, child_env, models_dir, peer_env, run_or_raise, student_key, venv_python
from vedit.peers.requests import Requests
from vedit.peers.worker import WORKERS, Worker
from vedit.errors import PeerError, SettingError
from vedit.workload.fastest import fastest

if TYPE_CHECKING:
    from vedit.workload.scripted import Script

log = logging.getLogger(__name__)

VERSION = "4.8.5"
REQUIREMENTS = (f"ctranslate2=={VERSION}", TORCH_PIN, "transformers==4.57.6")
#: row label -> CTranslate2 compute_type
PRECISIONS = {"fp32": "float32", "int8": "int8"}
#: CTranslate2's documented CPU backend switch: MKL or oneDNN (its default depends on the CPU vendor).
#: Which is faster depends on the host (Intel Xeon: flan-t5-base step 57 ms with MKL, 24 ms without),
#: so each row is timed with both and runs on the faster: a ratio against a slow default is no result.
BACKENDS = {"oneDNN": {"CT2_USE_MKL": "0"}, "MKL": {"CT2_USE_MKL": "1"}}
TRIAL_REQUESTS = 3


def convert(env: Path, student_dir: Path) -> Path:
    """The student converted with ``ct2-transformers-converter`` (float32), cached under ``<home>/peers/models``."""
    student_dir = Path(student_dir)
    if not (student_dir / "config.json").is_file():
        raise PeerError(f"ctranslate2: {student_dir} is not a saved student (no config.json)")
    target = models_dir() / f"ctranslate2-{VERSION}-{student_dir.name}-{student_key(student_dir)}"
    if (target / "model.bin").is_file():
        return target
    log.info(f"ctranslate2: converting {student_dir} (ct2-transformers-converter)")
    with atomic_dir(target, first_wins=True) as tmp:
        run_or_raise([env / "bin" / "ct2-transformers-converter", "--model", student_dir, "--output_dir", tmp,
                      "--force"], f"ctranslate2: converting {student_dir} failed", env=child_env())
    return target


def paths(*, student_dir: Path, exports: dict[str, Path], scripts: dict[str, "Script"], threads: int) -> dict[str, Call]:
    """``ctranslate2-fp32`` and ``ctranslate2-int8``, one worker each (loaded now, reused per request)."""
    env = peer_env("ctranslate2", REQUIREMENTS)
    model = convert(env, Path(student_dir))
    requests = Requests.load(exports, scripts)
    rows = requests.rows(next(iter(scripts), "golden hour"))
    kwargs = ({"lengths": [len(r) for r in rows.script]} if rows.script is not None
              else {"max_length": requests.max_tokens})

    def trial(worker: Worker) -> float:
        return float(worker.run(rows=rows.prompts, **kwargs)["ms"])

    out: dict[str, Call] = {}
    for label, compute in PRECISIONS.items():
        worker, choice = best_backend(
            lambda backend: Worker(venv_python(env), WORKERS / "ctranslate2_worker.py",
                                   ["--model", model, "--compute-type", compute, "--threads", threads],
                                   name=f"ctranslate2-{label}-{backend}", env=BACKENDS[backend]),
            trial)
        out[f"ctranslate2-{label}"] = _call(worker, requests, label, threads, choice)
    return out


def best_backend(start: Callable[[str], Worker], trial: Callable[[Worker], float],
                 backends: Sequence[str] = tuple(BACKENDS)) -> tuple[Worker, str]:
    """Start a worker per backend (``start(name)``), time :data:`TRIAL_REQUESTS` requests on each
    (``trial(worker)`` -> ms; median, after one warm-up), keep the faster and close the others
    (:func:`vedit.workload.fastest.fastest`). Returns the worker and a line naming the choice and
    every time, for the report. A backend that cannot start or run is passed over (logged)."""
    try:
        choice = fastest(backends, start, trial, trials=TRIAL_REQUESTS, close=Worker.close, errors=(PeerError,))
    except SettingError as exc:
        raise PeerError(f"ctranslate2: no backend could start ({exc})") from None
    switch = "/".join(f"{k}={v}" for k, v in BACKENDS.get(choice.name, {}).items())
    return choice.value, choice.describe("backend", switch=switch)


def _call(worker: Worker, requests: Requests, label: str, threads: int, backend: str) -> Call:
    def call(intent: str) -> Cost:
        rows = requests.rows(intent)
        if rows.script is not None:
            reply = worker.run(rows=rows.prompts, lengths=[len(r) for r in rows.script])
        else:
            reply = worker.run(rows=rows.prompts, max_length=requests.max_tokens)
        call.inner_ms.append(reply["ms"])
        return Cost(decoder_calls=int(reply["steps"]))

    call.worker = worker  # type: ignore[attr-defined]  # kept alive as long as the path
    call.inner_ms = []  # type: ignore[attr-defined]  # generation time measured inside the worker
    call.info = (f"{label}: {worker.info.get('engine')}, ct2-transformers-converter float32 model loaded with "  # type: ignore[attr-defined]
                 f"compute_type {worker.info.get('compute_type')}, {backend}, intra_threads {threads}, inter_threads 1, greedy, "
                 "3 rows per translate_batch; unconstrained (its API has no logits hook; target_prefix could only "
                 "impose the whole answer): " + (
                     "each row decoded for exactly its scripted length" if requests.scripts else
                     f"unscripted, each row decoded until EOS or the grammar's longest output ({requests.max_tokens} tokens)"))
    return call


__all__ = ["BACKENDS", "PRECISIONS", "REQUIREMENTS", "best_backend", "convert", "paths"]
