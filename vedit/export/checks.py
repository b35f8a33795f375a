"""Checks on model and adapter directories, done before any heavy work.

Every check raises :class:`~vedit.errors.ModelDirError` (or ``ExportError`` for an unsupported
architecture) with one line that says what is wrong and what to do, so the CLI can print it as is.
Pickled weights (``pytorch_model.bin``) are refused unless the caller passes ``allow_pickle``:
unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vedit.atomicio import sha256_file
from vedit.errors import ModelDirError
from vedit.export.families import Family, family_for_model_type

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "tokenizer.model",
)


@dataclass(frozen=True)
class ModelDir:
    """A checked model directory: its config, family and weight files."""

    path: Path
    config: dict[str, Any]
    family: Family
    weight_files: tuple[Path, ...]
    pickled: bool

    @property
    def model_type(self) -> str:
        return self.config["model_type"]


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{path.parent}: no {path.name}; is this a {what} directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc}); the {what} files are corrupt") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{path}: expected a JSON object; the {what} files are corrupt")
    return data


def require_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelDirError(f"{what} directory not found: {p}")
    if not p.is_dir():
        raise ModelDirError(f"{what} path is not a directory: {p}")
    return p.resolve()


def check_safetensors(path: Path) -> None:
    """Open the header and check the file covers every tensor (catches truncation early)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as exc:  # SafetensorError is not exported under a stable name
        raise ModelDirError(
            f"{path}: corrupt or truncated weights ({exc}); re-save or re-download the model"
        ) from None


def _weight_files(path: Path, allow_pickle: bool) -> tuple[tuple[Path, ...], bool]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(read_json(index, "model").get("weight_map", {}).values()))
        missing = [s for s in shards if not (path / s).exists()]
        if missing:
            raise ModelDirError(f"{path}: weight shards listed in {index.name} are missing: {', '.join(missing)}")
        files = tuple(path / s for s in shards)
    else:
        files = tuple(sorted(path.glob(f"*{SAFETENSORS_SUFFIX}")))
        files = tuple(f for f in files if not f.name.startswith("adapter_"))
    if files:
        for f in files:
            check_safetensors(f)
        return files, False
    pickled = [path / n for n in PICKLE_WEIGHTS if (path / n).exists()] or sorted(path.glob("pytorch_model*.bin"))
    if pickled:
        if not allow_pickle:
            raise ModelDirError(
                f"{path}: only pickled weights ({pickled[0].name}), which can run code when loaded; "
                "convert them to safetensors or pass --allow-pickle if you trust the source"
            )
        bins = tuple(sorted(path.glob("pytorch_model*.bin")))
        return bins, True
    raise ModelDirError(f"{path}: no model weights (*.safetensors) found")


def inspect_model_dir(path: str | Path, *, allow_pickle: bool = False, what: str = "model") -> ModelDir:
    """Check a Hugging Face model directory without loading the weights."""
    p = require_dir(path, what)
    if (p / "adapter_config.json").exists() and not (p / "config.json").exists():
        raise ModelDirError(f"{p} is a LoRA adapter, not a full model; pass it as --adapter with --model/--base")
    config = read_json(p / "config.json", what)
    family = family_for_model_type(config.get("model_type"), str(p))
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "unknown")
        raise ModelDirError(
            f"{p}: the model is saved quantized ({method}); it cannot be merged or exported exactly: "
            "use the full-precision base model"
        )
    files, pickled = _weight_files(p, allow_pickle)
    return ModelDir(p, config, family, files, pickled)


def source_hashes(md: ModelDir, adapter_dir: str | Path | None) -> dict[str, str]:
    """sha256 of the weights an export came from: what tells a stale export from a current one."""
    sha = {f.name: sha256_file(f) for f in md.weight_files}
    if adapter_dir is not None:
        for f in sorted(Path(adapter_dir).glob("adapter_model.*")):
            sha[f"adapter/{f.name}"] = sha256_file(f)
    return sha


def export_is_current(export_dir: str | Path, model_dir: str | Path, adapter_dir: str | Path | None = None,
                      registry=None) -> bool:
    """True when ``export_dir`` holds a complete export of exactly these weights, made of the graphs this
    version of vedit writes, for the same tools (``registry``, default: the package's) in a registry
    format this vedit reads (else export again)."""
    from vedit.errors import RegistryError
    from vedit.export.manifest import graph_recipe
    from vedit.manifest import read_manifest
    from vedit.registry import default_registry, load_registry

    try:
        manifest = read_manifest(export_dir)
        if manifest.data.get("graphs") != graph_recipe(manifest.family, manifest.precision):
            return False
        if load_registry(Path(export_dir) / "registry.json").tools != (registry or default_registry()).tools:
            return False
        source = manifest.data.get("source", {})
        return source.get("sha256") == source_hashes(inspect_model_dir(model_dir), adapter_dir)
    except (ModelDirError, RegistryError):
        return False


def load_model(md: ModelDir):
    """Load the PyTorch reference in float32 (eval mode); weight failures become one line."""
    import torch

    cls = md.family.load_class()
    try:
        model = cls.from_pretrained(str(md.path), use_safetensors=not md.pickled, dtype=torch.float32)
    except Exception as exc:  # corrupt tensors, shape mismatches, missing keys...
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelDirError(f"{md.path}: cannot load the model weights ({msg})") from None
    return model.eval()


def load_tokenizer(path: Path):
    """The folder's tokenizer as a transformers fast tokenizer.

    A folder with only a SentencePiece model (``spiece.model`` as many T5 checkpoints ship,
    ``tokenizer.model`` as Llama-2's) is rebuilt with :mod:`vedit.export.spm`: transformers' own
    conversion fails on the pinned protobuf runtime."""
    from transformers import AutoTokenizer

    if not any((path / n).exists() for n in ("tokenizer.json", "tokenizer.model", "spiece.model")):
        raise ModelDirError(f"{path}: no tokenizer files (tokenizer.json); save the tokenizer next to the model")
    if not (path / "tokenizer.json").exists():
        return _spm_tokenizer(path)
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        raise ModelDirError(f"{path}: cannot load the tokenizer ({str(exc).strip().splitlines()[0]})") from None


def _spm_tokenizer(path: Path):
    """A fast tokenizer from the folder's SentencePiece file, with the family's special-token rule
    (T5 appends ``</s>``, Llama prepends ``<s>``, unless ``tokenizer_config.json`` says otherwise)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    from vedit.export.spm import special_tokens, spm_file, tokenizer_from_spm

    f = spm_file(path)
    try:
        data = f.read_bytes()
        tok = tokenizer_from_spm(data)
        names = special_tokens(data)
    except ModelDirError as exc:
        raise ModelDirError(f"{f}: cannot load the tokenizer ({exc}); save it as tokenizer.json with a fast "
                            "tokenizer's save_pretrained()") from None
    tcfg = _json_or_empty(path / "tokenizer_config.json")
    for key in ("eos", "bos", "unk", "pad"):
        value = tcfg.get(f"{key}_token")
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str) and tok.token_to_id(value) is not None:
            names[key] = value
    t5 = _json_or_empty(path / "config.json").get("model_type") == "t5"
    add_bos = bool(tcfg.get("add_bos_token", not t5)) and "bos" in names
    add_eos = bool(tcfg.get("add_eos_token", t5)) and "eos" in names
    single = " ".join(([names["bos"]] if add_bos else []) + ["$A"] + ([names["eos"]] if add_eos else []))
    used = [names[k] for k, on in (("bos", add_bos), ("eos", add_eos)) if on]
    tok.post_processor = processors.TemplateProcessing(single=single,
                                                       special_tokens=[(n, tok.token_to_id(n)) for n in used])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{f"{k}_token": v for k, v in names.items()},
                                   padding_side="right" if t5 else "left")


def _json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


#: Where the fix for a tokenizer that cannot write a grammar's characters is written up.
TOKENIZER_RECIPE = "docs/byo-student.md#a-tokenizer-that-cannot-write-the-answers"


def check_tokenizer_writes(tokenizer, registry, path: Path) -> None:
    """Refuse, before any export work, a tokenizer that cannot write some character a tool's answers
    need (stock FlanT5 writes ``{`` and ``}`` as ``<unk>``), naming every such tool and the fix."""
    from vedit.decoding.language import needed_chars
    from vedit.errors import GrammarError

    unk = getattr(tokenizer, "unk_token_id", None)
    verdict: dict[str, bool] = {}

    def writes(c: str) -> bool:
        if c not in verdict:
            ids = tokenizer(c, add_special_tokens=False)["input_ids"]
            verdict[c] = bool(ids) and unk not in ids and c in tokenizer.decode(ids)
        return verdict[c]

    missing = {t.name: sorted(c for c in needed_chars(t) if not writes(c)) for t in registry.tools}
    missing = {name: chars for name, chars in missing.items() if chars}
    if missing:
        tools = "; ".join(f"{name} needs {' '.join(repr(c) for c in chars)}" for name, chars in missing.items())
        raise GrammarError(
            f"{path}: the tokenizer cannot write the answers of {len(missing)} tool(s) ({tools}); add the characters "
            "as tokens (tokenizer.add_tokens([...]), model.resize_token_embeddings(len(tokenizer)), then fine-tune) "
            f"or train the tokenizer with byte fallback: see {TOKENIZER_RECIPE}"
        )


def check_tokenizer_matches(model, tokenizer, path: Path) -> None:
    """A tokenizer with more ids than embedding rows belongs to another model (ids would overflow)."""
    rows = model.get_input_embeddings().num_embeddings
    n = len(tokenizer)
    if n > rows or model.config.vocab_size != rows:
        raise ModelDirError(
            f"{path}: the tokenizer does not match the model: {n} tokens but the embedding has {rows} rows "
            f"(config vocab_size {model.config.vocab_size}); use the tokenizer saved with this model"
        )


def copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer files byte for byte (no re-serialisation drift); a folder with only a
    SentencePiece model also gets the ``tokenizer.json`` serving reads (built as :func:`load_tokenizer` does)."""
    import shutil

    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        _spm_tokenizer(src).backend_tokenizer.save(str(dst / "tokenizer.json"))
        copied.append("tokenizer.json")
    return copied
