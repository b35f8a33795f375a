"""Tokenizers of the common families at real vocabulary sizes, trained locally (no network).

Why: users bring students whose tokenizers vedit did not build -- T5's SentencePiece Unigram
(digits merged, no byte fallback), Llama-2's SentencePiece BPE (32k, byte fallback), GPT-2 /
Llama-3 / Qwen byte-level BPE (~50k). The grammar tests and the tokenizer table need each family
at its real size. They are trained on the project's own text (prompts, synthetic intents, tool
JSON) plus the Python standard library's sources (generic text, enough for 32k/50k pieces), and
cached under ``$VEDIT_HOME/tokenizers/<family>-<recipe key>`` (~1 min each on 2 cores, once).

Each cached folder is what a user's checkpoint carries: ``spiece.model`` (T5) or
``tokenizer.model`` (Llama-2) only, or ``tokenizer.json`` (byte-level BPE), plus ``config.json``
with the special ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

from vedit import paths
from vedit.atomicio import atomic_dir
from vedit.registry import Registry, default_registry


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "sp-unigram" | "sp-bpe" | "byte-bpe"
    vocab_size: int
    split_digits: bool = False
    byte_fallback: bool = False


FAMILIES = {
    "t5-unigram": Family("t5-unigram", "sp-unigram", 32000),
    "llama2-bpe": Family("llama2-bpe", "sp-bpe", 32000, byte_fallback=True),
    "byte-level-bpe": Family("byte-level-bpe", "byte-bpe", 50000),
    # the digit-splitting reference (vedit's own recipe at the same size)
    "unigram-split-digits": Family("unigram-split-digits", "sp-unigram", 32000, split_digits=True, byte_fallback=True),
}
#: Bump when the corpus or the training code changes (part of the cache key).
RECIPE_VERSION = 1
_CORPUS_BYTES = 16_000_000


def project_lines(registry: Registry, n_intents: int = 4000) -> list[str]:
    """The project's own text: each synthetic intent's prompts and canonical answers."""
    from vedit.data.synth import generate

    rows = generate(seed=0, n_intents=n_intents, n_test=0, registry=registry).train
    return [line for row in rows for tool in registry.tools
            for line in (registry.prompt(tool.name, row.intent, "llama"), row.calls_by_tool[tool.name].dumps())]


def corpus(registry: Registry, n_intents: int = 4000) -> list[str]:
    """The training lines: :func:`project_lines` first, then standard-library sources up to the budget."""
    lines = project_lines(registry, n_intents)
    size = sum(map(len, lines))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(f for f in stdlib.rglob("*.py") if "site-packages" not in f.parts)
    for f in sources:
        if size >= _CORPUS_BYTES:
            break
        text = f.read_text(encoding="utf-8", errors="replace")
        lines.extend(line for line in text.splitlines() if line.strip())
        size += len(text)
    return lines


def recipe_key(family: Family, registry: Registry) -> str:
    spec = {"family": asdict(family), "version": RECIPE_VERSION, "python": sysconfig.get_python_version(),
            "registry": registry.to_json(), "budget": _CORPUS_BYTES}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def family_dir(name: str, registry: Registry | None = None) -> Path:
    """The cached folder of tokenizer ``name`` (trained on first use)."""
    registry = registry or default_registry()
    family = FAMILIES[name]
    out = paths.home() / "tokenizers" / f"{name}-{recipe_key(family, registry)}"
    if (out / "config.json").is_file():
        return out
    lines = corpus(registry)
    with atomic_dir(out, force=True) as tmp:
        if family.kind == "byte-bpe":
            specials = _train_byte_bpe(family, lines, tmp)
        else:
            specials = _train_sp(family, lines, tmp)
        (tmp / "config.json").write_text(json.dumps(specials, indent=1) + "\n", encoding="utf-8")
    return out


def _train_sp(family: Family, lines: list[str], out: Path) -> dict:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf,
        model_type="unigram" if family.kind == "sp-unigram" else "bpe",
        vocab_size=family.vocab_size, split_digits=family.split_digits, byte_fallback=family.byte_fallback,
        character_coverage=1.0, input_sentence_size=400_000, shuffle_input_sentence=True,
        max_sentence_length=4096, hard_vocab_limit=False, num_threads=2, minloglevel=2,
        remove_extra_whitespaces=family.kind != "sp-bpe",  # Llama-2 keeps every space
        pad_id=0, eos_id=1, unk_id=2, bos_id=3 if family.kind == "sp-bpe" else -1,
    )
    name = "spiece.model" if family.kind == "sp-unigram" else "tokenizer.model"
    (out / name).write_bytes(buf.getvalue())
    return {"eos_token_id": 1, "pad_token_id": 0, "unk_token_id": 2}


def _train_byte_bpe(family: Family, lines: list[str], out: Path) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=family.vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(out / "tokenizer.json"))
    special = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
               "tokenizer_class": "PreTrainedTokenizerFast"}
    (out / "tokenizer_config.json").write_text(json.dumps(special, indent=1) + "\n", encoding="utf-8")
    return {"eos_token_id": 0, "pad_token_id": 0, "vocab_size": tok.get_vocab_size()}


__all__ = ["FAMILIES", "Family", "corpus", "family_dir", "project_lines", "recipe_key"]
