"""The demo: a synthetic dataset and the students trained on it, built once and cached.

``build()`` runs the stages below; each writes one directory under the vedit home, atomically
(a temp dir next to the target, renamed into place), with a ``train_info.json`` holding the
stage's cache key::

    data/                 train.jsonl, test.jsonl, stats.json       (vedit.data.synth)
    students/tokenizer/   spiece.model                               (shared by both families)
    students/t5/          T5 student, tokenizer, registry.json
    students/t5-lora/     LoRA adapter trained on top of t5/
    students/llama-base/  Llama student, tokenizer (left padding), registry.json
    students/llama-lora/  LoRA adapter trained on top of llama-base/
    students/manifest.json  the key of the whole build, written last

A stage's key hashes its configuration, the keys of the stages it depends on, and the code that
decides its result; a stage whose directory already carries its key is skipped. A second
``build()`` compares only keys (no data is read, nothing trains), so it returns at once.

``evaluate()`` scores a student on the test split with the PyTorch reference predictor and caches
the predictions and the report under ``reports/``, keyed the same way.
"""

from __future__ import annotations

import logging
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from vedit import paths
from vedit.atomicio import TMP_SUFFIX, atomic_dir, atomic_open
from vedit.errors import ModelDirError
from vedit.students.train import TrainConfig, TrainInfo

log = logging.getLogger(__name__)

#: Bump when the recipe changes in a way the hashed configs and sources do not show.
RECIPE_VERSION = 1

Student = Literal["t5", "t5-lora", "llama-base", "llama"]
#: Student name -> (base directory, adapter directory or None), relative to ``students/``
STUDENTS: dict[str, tuple[str, str | None]] = {
    "t5": ("t5", None),
    "t5-lora": ("t5", "t5-lora"),
    "llama-base": ("llama-base", None),
    "llama": ("llama-base", "llama-lora"),
}
STAGES = ("data", "tokenizer", "t5", "t5-lora", "llama-base", "llama-lora")
INFO_FILE = "train_info.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class LoraRun:
    r: int = 8
    alpha: int = 16
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class DemoConfig:
    """Everything that decides the demo's bytes (with the hashed sources and library versions).

    One thread everywhere: the weights depend on the thread count (float reductions), so it is
    fixed for reproducibility, and one thread is also the fastest choice for these small matrices
    on a busy machine (a second OpenMP thread that waits for a core can slow a step 5-10x).
    """

    seed: int = 0
    n_intents: int = 9252
    n_test: int = 1000
    vocab_size: int = 1500
    t5_size: str = "demo"
    t5_train: TrainConfig = TrainConfig(epochs=3.0, batch_size=32, optimizer="adafactor", lr=1e-2,
                                        weight_decay=0.0, threads=1)
    t5_lora: LoraRun = LoraRun(r=8, alpha=16, train=TrainConfig(epochs=0.1, lr=1e-3, seed=1, threads=1))
    llama_size: str = "demo"
    #: Llama: smaller batches (more updates per epoch) learn faster per second here than 32
    llama_train: TrainConfig = TrainConfig(epochs=1.5, batch_size=16, lr=2e-3, threads=1)
    llama_lora: LoraRun = LoraRun(r=16, alpha=32, train=TrainConfig(epochs=0.25, batch_size=16, lr=1e-3, seed=1,
                                                                      threads=1))

    @classmethod
    def quick(cls, seed: int = 0) -> "DemoConfig":
        """Tiny sizes and a few steps: for tests and smoke runs (the students learn little)."""
        short = TrainConfig(epochs=1.0, batch_size=16, lr=3e-3, warmup=0.1, threads=1)
        return cls(
            seed=seed, n_intents=160, n_test=40, vocab_size=600,
            t5_size="tiny", t5_train=replace(short, optimizer="adafactor", lr=1e-2, weight_decay=0.0),
            t5_lora=LoraRun(r=4, alpha=8, train=replace(short, epochs=0.25, seed=1)),
            llama_size="tiny", llama_train=short,
            llama_lora=LoraRun(r=4, alpha=8, train=replace(short, epochs=0.25, seed=1)),
        )

    def with_seed(self, seed: int) -> "DemoConfig":
        """The same recipe under another seed (every stage's seed is offset by it)."""
        def shift(t: TrainConfig) -> TrainConfig:
            return replace(t, seed=t.seed + seed - self.seed)

        return replace(
            self, seed=seed, t5_train=shift(self.t5_train), llama_train=shift(self.llama_train),
            t5_lora=replace(self.t5_lora, train=shift(self.t5_lora.train)),
            llama_lora=replace(self.llama_lora, train=shift(self.llama_lora.train)),
        )


@dataclass
class BuildResult:
    home: Path
    key: str
    #: True when the whole build was found complete in the cache and nothing ran
    cached: bool
    built: list[str]
    skipped: list[str]
    seconds: float
    info: dict[str, dict[str, Any]]

    def summary(self) -> str:
        if self.cached:
            return f"demo students up to date in {self.home} (cache key {self.key[:12]})"
        lines = [f"demo built in {self.seconds:.0f} s under {self.home} (cache key {self.key[:12]})"]
        for stage in STAGES:
            if stage not in self.built and stage not in self.skipped:
                continue  # a partial build (``upto``)
            info = self.info.get(stage, {})
            state = "built" if stage in self.built else "cached"
            extra = ""
            if "steps" in info:
                extra = (f": {info['steps']} steps, {info['seconds']:.0f} s, "
                         f"loss {info['first_loss']:.3f} -> {info['last_loss']:.3f}")
            lines.append(f"  {stage:<11} {state}{extra}")
        return "\n".join(lines)


# ---------------------------------------------------------------- keys


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _source_hash(*modules: str) -> str:
    """Hash of the source files of ``modules``."""
    import importlib

    h = hashlib.sha256()
    for name in modules:
        path = Path(importlib.import_module(name).__file__)  # type: ignore[arg-type]
        h.update(path.read_bytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    """Versions of the libraries that decide the bytes (read from metadata: no slow imports)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "peft", "sentencepiece", "tokenizers")}


def stage_keys(cfg: DemoConfig) -> dict[str, str]:
    """The cache key of every stage, and of the whole build under ``"all"``."""
    from vedit.registry import default_registry
    from vedit.students import models

    registry = default_registry().to_json()
    data_files = [p.read_bytes() for p in sorted(_package_dir("vedit.data").glob("*.json"))]
    code = _source_hash("vedit.students.corpus", "vedit.students.train", "vedit.students.tokenizer")
    common = {"recipe": RECIPE_VERSION, "versions": _versions(), "code": code}
    keys: dict[str, str] = {}
    keys["data"] = _sha({
        "seed": cfg.seed, "n_intents": cfg.n_intents, "n_test": cfg.n_test, "registry": registry,
        "synth": _source_hash("vedit.data.synth", "vedit.data.looks", "vedit.data.rows"), "data_files": [hashlib.sha256(b).hexdigest() for b in data_files],
    })
    keys["tokenizer"] = _sha({"up": keys["data"], "vocab": cfg.vocab_size, **common})
    keys["t5"] = _sha({"up": keys["tokenizer"], "size": models.T5_SIZES[cfg.t5_size],
                       "train": asdict(cfg.t5_train), **common})
    keys["t5-lora"] = _sha({"up": keys["t5"], "lora": asdict(cfg.t5_lora),
                            "targets": models.T5_LORA_TARGETS, **common})
    keys["llama-base"] = _sha({"up": keys["tokenizer"], "size": models.LLAMA_SIZES[cfg.llama_size],
                               "train": asdict(cfg.llama_train), **common})
    keys["llama-lora"] = _sha({"up": keys["llama-base"], "lora": asdict(cfg.llama_lora),
                               "targets": models.LLAMA_LORA_TARGETS, **common})
    keys["all"] = _sha([keys[s] for s in STAGES])
    return keys


def _package_dir(package: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).parent  # type: ignore[arg-type]


# ---------------------------------------------------------------- layout and atomic writes


def stage_dir(home: Path, stage: str) -> Path:
    return home / "data" if stage == "data" else home / "students" / stage


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _stage_key(home: Path, stage: str) -> str | None:
    info = _read_json(stage_dir(home, stage) / INFO_FILE)
    return info.get("key") if info else None


def _write_json(path: Path, value: Any) -> None:
    with atomic_open(path) as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def _clean_stray(parent: Path) -> None:
    if parent.is_dir():
        for p in parent.iterdir():
            if p.name.startswith(".") and p.name.endswith((TMP_SUFFIX, ".old")) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- stages


def _progress(msg: str, on: bool) -> None:
    if on:
        log.info(msg)


def _build_data(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    from vedit.data.synth import generate, write_dataset

    start = time.perf_counter()
    ds = generate(seed=cfg.seed, n_intents=cfg.n_intents, n_test=cfg.n_test)
    write_dataset(ds, out)
    return {"seed": cfg.seed, "n_train": len(ds.train), "n_test": len(ds.test),
            "seconds": round(time.perf_counter() - start, 2)}


def _train_rows(home: Path):
    from vedit.data.rows import read_truth

    return read_truth(stage_dir(home, "data") / "train.jsonl")


def _build_tokenizer(cfg: DemoConfig, home: Path, out: Path) -> dict[str, Any]:
    from vedit.registry import default_registry
    from vedit.students.corpus import tokenizer_texts
    from vedit.students.tokenizer import build_hf_tokenizer, train_sentencepiece

    start = time.perf_counter()
    sp = train_sentencepiece(tokenizer_texts(_train_rows(home), default_registry()), cfg.vocab_size)
    (out / "spiece.model").write_bytes(sp)
    vocab = len(build_hf_tokenizer(sp, "t5"))
    return {"seed": cfg.seed, "vocab_size": vocab, "seconds": round(time.perf_counter() - start, 2)}


def _sp_model(home: Path) -> bytes:
    return (stage_dir(home, "tokenizer") / "spiece.model").read_bytes()


def _build_student(family: Literal["t5", "llama"], size: str, train_cfg: TrainConfig, home: Path,
                   out: Path, progress: bool) -> dict[str, Any]:
    from vedit.registry import default_registry
    from vedit.students.corpus import examples
    from vedit.students.models import new_llama, new_t5
    from vedit.students.tokenizer import save_tokenizer
    from vedit.students.train import encode, init_t5_head, train

    registry = default_registry()
    tok = save_tokenizer(_sp_model(home), family, out)
    kind = "seq2seq" if family == "t5" else "causal"
    if family == "t5":
        model = new_t5(len(tok), size, seed=train_cfg.seed)  # type: ignore[arg-type]
        init_t5_head(model)
    else:
        model = new_llama(len(tok), size, seed=train_cfg.seed)  # type: ignore[arg-type]
    data = encode(examples(_train_rows(home), registry, family), tok, kind)
    info = train(model, data, kind, train_cfg, pad_id=tok.pad_token_id, desc=f"train {family}",
                 progress=progress)
    model.save_pretrained(out, safe_serialization=True)
    registry.save(out / "registry.json")
    return {"size": size, **info.to_json()}


def _build_lora(family: Literal["t5", "llama"], base: Path, run: LoraRun, home: Path, out: Path,
                progress: bool) -> dict[str, Any]:
    from transformers import AutoTokenizer, LlamaForCausalLM, T5ForConditionalGeneration

    from vedit.registry import default_registry
    from vedit.students.corpus import examples
    from vedit.students.models import LLAMA_LORA_TARGETS, T5_LORA_TARGETS
    from vedit.students.train import add_lora, encode, train

    kind = "seq2seq" if family == "t5" else "causal"
    model_cls = T5ForConditionalGeneration if family == "t5" else LlamaForCausalLM
    model = model_cls.from_pretrained(base, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(base)
    targets = T5_LORA_TARGETS if family == "t5" else LLAMA_LORA_TARGETS
    peft_model = add_lora(model, targets, r=run.r, alpha=run.alpha, seed=run.train.seed, kind=kind)
    data = encode(examples(_train_rows(home), default_registry(), family), tok, kind)
    info = train(peft_model, data, kind, run.train, pad_id=tok.pad_token_id,
                 desc=f"train {family} LoRA", progress=progress)
    peft_model.save_pretrained(out, safe_serialization=True)
    return {"r": run.r, "alpha": run.alpha, "base": base.name, **info.to_json()}


def _run_stage(stage: str, cfg: DemoConfig, home: Path, out: Path, progress: bool) -> dict[str, Any]:
    students = home / "students"
    if stage == "data":
        return _build_data(cfg, out)
    if stage == "tokenizer":
        return _build_tokenizer(cfg, home, out)
    if stage == "t5":
        return _build_student("t5", cfg.t5_size, cfg.t5_train, home, out, progress)
    if stage == "llama-base":
        return _build_student("llama", cfg.llama_size, cfg.llama_train, home, out, progress)
    if stage == "t5-lora":
        return _build_lora("t5", students / "t5", cfg.t5_lora, home, out, progress)
    if stage == "llama-lora":
        return _build_lora("llama", students / "llama-base", cfg.llama_lora, home, out, progress)
    raise ValueError(f"unknown stage {stage!r}")


def is_built(home: str | Path | None = None, config: DemoConfig | None = None, *, quick: bool = False) -> bool:
    """Whether the whole build for ``config`` is complete under ``home`` (keys only; instant)."""
    home = Path(home) if home else paths.home()
    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    keys = stage_keys(cfg)
    manifest = _read_json(home / "students" / MANIFEST)
    return bool(manifest) and manifest.get("key") == keys["all"] and all(
        _stage_key(home, s) == keys[s] for s in STAGES
    )


def build(home: str | Path | None = None, *, force: bool = False, quick: bool = False,
          seed: int = 0, config: DemoConfig | None = None, progress: bool = True,
          upto: str | None = None) -> BuildResult:
    """Build (or find in the cache) the demo dataset and students under ``home``.

    ``force`` rebuilds every stage; otherwise only stages whose key changed are rebuilt.
    ``config`` overrides ``quick`` and ``seed``. ``upto`` stops after that stage (the ones it needs
    come before it in ``STAGES``): the main job trains the T5 student first to show answers early.
    The build's manifest is written only once every stage is built.
    """
    if upto is not None and upto not in STAGES:
        raise ValueError(f"unknown stage {upto!r}")
    stages = STAGES if upto is None else STAGES[: STAGES.index(upto) + 1]
    home = Path(home) if home else paths.home()
    cfg = config or (DemoConfig.quick() if quick else DemoConfig()).with_seed(seed)
    keys = stage_keys(cfg)
    start = time.perf_counter()
    manifest_path = home / "students" / MANIFEST
    if not force and is_built(home, cfg):
        manifest = _read_json(manifest_path) or {}
        return BuildResult(home=home, key=keys["all"], cached=True, built=[], skipped=list(stages),
                           seconds=time.perf_counter() - start, info=manifest.get("info", {}))
    _clean_stray(home)
    _clean_stray(home / "students")
    built, skipped, infos = [], [], {}
    for stage in stages:
        target = stage_dir(home, stage)
        if not force and _stage_key(home, stage) == keys[stage]:
            skipped.append(stage)
            infos[stage] = _read_json(target / INFO_FILE) or {}
            continue
        _progress(f"building {stage} ...", progress)
        began = time.perf_counter()
        with atomic_dir(target) as tmp:
            info = _run_stage(stage, cfg, home, tmp, progress)
            info = {"key": keys[stage], "stage": stage, "quick": cfg == DemoConfig.quick(cfg.seed), **info}
            _write_json(tmp / INFO_FILE, info)
        infos[stage] = info
        built.append(stage)
        _progress(f"{stage} done in {time.perf_counter() - began:.1f} s", progress)
    seconds = time.perf_counter() - start
    if stages != STAGES:
        return BuildResult(home=home, key=keys["all"], cached=False, built=built, skipped=skipped,
                           seconds=seconds, info=infos)
    _write_json(manifest_path, {"key": keys["all"], "stages": {s: keys[s] for s in STAGES},
                                "config": asdict(cfg), "versions": _versions(), "info": infos})
    return BuildResult(home=home, key=keys["all"], cached=False, built=built, skipped=skipped,
                       seconds=seconds, info=infos)


# ---------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    student: str
    report: Any  # vedit.data.metrics.Report
    cached: bool
    seconds: float
    predictions: Path
    stats: dict[str, Any]


def student_dirs(student: str, home: str | Path | None = None) -> tuple[Path, Path | None]:
    """The (student dir, adapter dir or None) of a demo student name."""
    if student not in STUDENTS:
        raise ModelDirError(f"unknown demo student {student!r}; choose one of {', '.join(STUDENTS)}")
    home = Path(home) if home else paths.home()
    base, adapter = STUDENTS[student]
    students = home / "students"
    return students / base, (students / adapter if adapter else None)


def evaluate(student: str = "t5", home: str | Path | None = None, *, batch_size: int = 32,
             force: bool = False, progress: bool = True, threads: int | None = None) -> EvalResult:
    """Score a demo student on the demo test split with the PyTorch reference predictor.

    Predictions go to ``reports/demo-<student>-predictions.jsonl`` and the report to
    ``reports/demo-<student>-metrics.json``; both are reused while the student and the test split
    are unchanged. ``threads`` defaults to the build's training thread count.
    """
    from vedit.data.metrics import Report, score
    from vedit.data.rows import read_truth, write_jsonl
    from vedit.reference import ReferencePredictor

    home = Path(home) if home else paths.home()
    base, adapter = student_dirs(student, home)
    manifest = _read_json(home / "students" / MANIFEST)
    if not manifest:
        raise ModelDirError(f"no demo students under {home}; run `vedit demo build` first")
    stage_names = [base.name] + ([adapter.name] if adapter else [])
    key = _sha({"students": [_stage_key(home, s) for s in stage_names], "data": _stage_key(home, "data"),
                "batch_size": batch_size, "recipe": RECIPE_VERSION})
    reports = home / "reports"
    pred_path = reports / f"demo-{student}-predictions.jsonl"
    report_path = reports / f"demo-{student}-metrics.json"
    cached = _read_json(report_path)
    if not force and cached and cached.get("key") == key and pred_path.exists():
        return EvalResult(student, Report.from_json(cached["report"]), True, cached["seconds"], pred_path,
                          cached.get("stats", {}))
    truth = read_truth(stage_dir(home, "data") / "test.jsonl")
    threads = threads or manifest.get("config", {}).get("t5_train", {}).get("threads", 2)
    predictor = ReferencePredictor.load(base, adapter, threads=threads)
    start = time.perf_counter()
    results = predictor.predict([r.intent for r in truth], batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - start
    write_jsonl(pred_path, (r.to_row() for r in results))
    report = score(truth, {r.intent: r.outputs() for r in results}, predictor.registry)
    stats = predictor.stats.to_json()
    stats["unparsed"] = {t.name: sum(1 for r in results if r.calls[t.name] is None)
                         for t in predictor.registry.tools}
    _write_json(report_path, {"key": key, "student": student, "source": predictor.source,
                              "seconds": round(seconds, 2), "stats": stats, "report": report.to_json()})
    return EvalResult(student, report, False, seconds, pred_path, stats)


__all__ = [
    "BuildResult",
    "DemoConfig",
    "EvalResult",
    "LoraRun",
    "STAGES",
    "STUDENTS",
    "TrainInfo",
    "build",
    "evaluate",
    "is_built",
    "stage_dir",
    "stage_keys",
    "student_dirs",
]
