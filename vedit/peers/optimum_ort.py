"""optimum's ``ORTModelForSeq2SeqLM.generate`` with vedit's grammar: the usual way to run a T5 on onnxruntime.

Setup, as a user would do it: a fresh optimum export of the student (``python -m
optimum.exporters.onnx --task text2text-generation-with-past``, cached under
``<home>/peers/models``; not vedit's export, whose decoder graphs are vedit's own), loaded with
``ORTModelForSeq2SeqLM.from_pretrained`` as it chooses by default (the merged decoder), on the CPU
provider with the same session options as vedit (``threads`` intra-op threads, one inter-op
thread, no spinning). Generation is HF ``generate`` through :class:`vedit.reference.ReferencePredictor`'s
own ``generate`` (the PyTorch baseline's code path, only the model differs): greedy, the
request's three tool rows in one batch, vedit's prompt ids, :class:`~vedit.reference.GrammarLogitsProcessor`
for the export's grammar (loaded once) and, when scripted, :class:`~vedit.reference.ScriptLogitsProcessor`.
It runs in the main venv: optimum 2.1 and onnxruntime are vedit's own export stack.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vedit.atomicio import atomic_dir
from vedit.workload.cost import Call, Cost
from vedit.peers.env import models_dir, run_or_raise, student_key
from vedit.peers.requests import Requests
from vedit.errors import MissingExtraError, PeerError

if TYPE_CHECKING:
    from vedit.workload.scripted import Script

log = logging.getLogger(__name__)

TASK = "text2text-generation-with-past"


def optimum_export(student_dir: Path) -> Path:
    """The student exported by optimum's own exporter, as its docs show; cached by content."""
    import optimum.version

    student_dir = Path(student_dir)
    if not (student_dir / "config.json").is_file():
        raise PeerError(f"optimum: {student_dir} is not a saved student (no config.json)")
    target = models_dir() / f"optimum-{optimum.version.__version__}-{student_dir.name}-{student_key(student_dir)}"
    if (target / "config.json").is_file():
        return target
    log.info(f"optimum: exporting {student_dir} with optimum.exporters.onnx ({TASK})")
    with atomic_dir(target, first_wins=True) as tmp:
        # the default 1e-5 tolerance only warns on T5; 1e-3 is what a base-sized T5 meets
        run_or_raise([sys.executable, "-m", "optimum.exporters.onnx", "--model", student_dir, "--task", TASK,
                      "--atol", "1e-3", tmp], f"optimum: exporting {student_dir} failed")
    return target


def load(onnx_dir: Path, *, threads: int):
    """``ORTModelForSeq2SeqLM`` on CPU with vedit's session options, and its tokenizer."""
    try:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSeq2SeqLM
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError(f"the optimum peer needs the export extra ({exc.name}); pip install 'vedit[bench]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as vedit's sessions
    model = ORTModelForSeq2SeqLM.from_pretrained(onnx_dir, session_options=opts, provider="CPUExecutionProvider")
    return model, AutoTokenizer.from_pretrained(onnx_dir)


def paths(*, student_dir: Path, exports: dict[str, Path], scripts: dict[str, "Script"], threads: int) -> dict[str, Call]:
    """``optimum-ort+grammar-fp32``: loaded now, the grammar prepared once, only ``generate`` per request."""
    from vedit.workload.scripted import script_cost
    from vedit.reference import ReferencePredictor

    requests = Requests.load(exports, scripts)
    onnx_dir = optimum_export(Path(student_dir))
    model, tokenizer = load(onnx_dir, threads=threads)
    model.eval = lambda: model  # ORT models have no train/eval modes; ReferencePredictor asks for eval()
    ref = ReferencePredictor(model, tokenizer, family="t5", registry=requests.registry, source=str(onnx_dir))
    tools = requests.tools
    # free/forced tokens of each script under the grammar, counted now (off the timed path); a
    # request reports them only if it produced exactly its script
    expected = {i: (s.text_tuple(), script_cost(requests.grammar, s)) for i, s in scripts.items()}

    def call(intent: str) -> Cost:
        rows = requests.rows(intent)
        ids, steps = ref.generate(rows.prompts, tools=tools, grammar=requests.grammar, script=rows.script)
        texts = requests.texts(ids)
        want = expected.get(intent)
        if want is not None and want[0] == texts:
            return Cost(decoder_calls=steps, free_tokens=want[1].free, forced_tokens=want[1].forced, texts=texts)
        return Cost(decoder_calls=steps, texts=texts)

    import onnxruntime
    import optimum.version

    merged = getattr(model.decoder, "is_merged", None)
    call.info = (f"fp32, optimum {optimum.version.__version__} ORTModelForSeq2SeqLM.generate (fresh optimum export, "  # type: ignore[attr-defined]
                 f"{'merged decoder' if merged else 'decoder + decoder_with_past'}), onnxruntime {onnxruntime.__version__} "
                 f"CPU, {threads} intra-op threads, greedy, 3 rows per generate; constrained by vedit's grammar "
                 "(GrammarLogitsProcessor)" + (", steered by ScriptLogitsProcessor" if scripts else ""))
    call.model = model  # type: ignore[attr-defined]
    return {"optimum-ort+grammar-fp32": call}


__all__ = ["TASK", "load", "optimum_export", "paths"]
