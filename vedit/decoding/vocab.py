"""What each token of a Hugging Face tokenizer really writes, as bytes.

The grammar works on bytes, so every token must be decoded to the exact bytes it adds to the
output: SentencePiece's ``▁`` is a space, byte-fallback tokens ``<0xNN>`` are one raw byte,
byte-level BPE (GPT-2 style) maps printable stand-ins back to bytes, and special tokens write
nothing (they are left out of the grammar, except EOS which only final states allow).

Only the ``tokenizers`` library is needed (no transformers import), so serving starts fast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from vedit.errors import GrammarError, ModelDirError

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SPIECE_SPACE = "▁"


@dataclass(frozen=True)
class TokenizerInfo:
    """A tokenizer plus the ids decoding needs (read from the model dir's config files)."""

    tokenizer: Tokenizer
    eos_token_id: int
    pad_token_id: int
    unk_token_id: int | None
    vocab_size: int


def load_tokenizer(model_dir: str | Path) -> TokenizerInfo:
    """Load ``tokenizer.json`` and the special ids of ``config.json`` from a model/export dir."""
    d = Path(model_dir)
    path = d / "tokenizer.json"
    if not path.is_file():
        raise ModelDirError(
            f"{d}: no tokenizer.json; save the tokenizer with a fast tokenizer's save_pretrained()"
        )
    tok = Tokenizer.from_file(str(path))
    cfg = _read_json(d / "config.json")
    tcfg = _read_json(d / "tokenizer_config.json")

    def special(name: str) -> int | None:
        if isinstance(cfg.get(f"{name}_token_id"), int):
            return cfg[f"{name}_token_id"]
        content = tcfg.get(f"{name}_token")
        if isinstance(content, dict):
            content = content.get("content")
        return tok.token_to_id(content) if isinstance(content, str) else None

    eos = special("eos")
    if eos is None:
        raise ModelDirError(f"{d}: cannot tell the EOS token (no eos_token_id in config.json)")
    pad = special("pad")
    unk = special("unk")
    size = max(tok.get_vocab_size(with_added_tokens=True), int(cfg.get("vocab_size") or 0))
    return TokenizerInfo(tok, eos, eos if pad is None else pad, unk, size)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc.msg})") from None


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _uses(component: dict | None, kind: str) -> bool:
    """Whether a tokenizer.json component (or any member of a Sequence) has type ``kind``."""
    if not component:
        return False
    if component.get("type") == kind:
        return True
    return any(_uses(c, kind) for c in component.get("decoders", []) + component.get("pretokenizers", []))


def token_bytes(tok: Tokenizer) -> list[bytes | None]:
    """The bytes each token id writes; ``None`` for special tokens (they write no text)."""
    spec = json.loads(tok.to_str())
    decoder, model = spec.get("decoder"), spec.get("model", {})
    byte_level = _uses(decoder, "ByteLevel")
    byte_fallback = bool(model.get("byte_fallback")) or _uses(decoder, "ByteFallback")
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    out: list[bytes | None] = []
    for i in range(tok.get_vocab_size(with_added_tokens=True)):
        piece = tok.id_to_token(i)
        if piece is None or (i in added and added[i].get("special")):
            out.append(None)
        elif i in added:
            out.append(piece.encode("utf-8"))
        elif byte_level:
            table = _byte_level_decoder()
            out.append(bytes(table[c] for c in piece) if all(c in table for c in piece) else piece.encode())
        elif byte_fallback and (m := _BYTE_TOKEN.match(piece)):
            out.append(bytes([int(m.group(1), 16)]))
        else:
            out.append(piece.replace(SPIECE_SPACE, " ").encode("utf-8"))
    return out


def check_reachable(chars: set[str], table: list[bytes | None], unk_id: int | None, tok: Tokenizer,
                    *, where: str) -> None:
    """Raise :class:`GrammarError` if the tokenizer cannot write a character the grammar needs.

    A character is reachable when some token's bytes contain it and the tokenizer encodes it
    without the unknown token (stock FlanT5 has no ``{`` or ``}``: they come out as ``<unk>``).
    """
    pieces = [b for b in table if b]
    missing = []
    for c in sorted(chars):
        ids = tok.encode(c, add_special_tokens=False).ids
        cb = c.encode("utf-8")
        if not any(cb in b for b in pieces) or (unk_id is not None and unk_id in ids):
            missing.append(c)
    if missing:
        shown = " ".join(repr(c) for c in missing)
        raise GrammarError(
            f"the tokenizer cannot write {shown}, which {where} needs; add the missing characters as "
            "tokens (tokenizer.add_tokens(...), resize the model's embeddings and fine-tune) or use a "
            "tokenizer with byte fallback (vedit's student tokenizer recipe)"
        )


def stretch_tokenizer(tok: Tokenizer, table: list[bytes | None]):
    """``tokenize(text) -> ids``: the canonical tokens of ``text`` as it appears *inside* an output.

    The full tokenizer pipeline may add a prefix (SentencePiece prepends ``▁``); we encode
    ``"0" + text`` and keep what follows the ``0`` token. This is exact when digits are always
    tokens of their own, which :func:`digits_split` checks first.
    """
    zero = [i for i, b in enumerate(table) if b == b"0"]

    def tokenize(text: str) -> list[int]:
        ids = tok.encode("0" + text, add_special_tokens=False).ids
        for k, i in enumerate(ids):
            if i in zero:
                head = b"".join(table[j] or b"" for j in ids[:k])
                if head.strip():
                    break
                return ids[k + 1 :]
        raise GrammarError(f"cannot tokenize {text!r} in context: the '0' anchor token was merged")

    return tokenize


def continuation_tokenizer(tok: Tokenizer) -> Tokenizer:
    """A copy of ``tok`` that encodes text as it continues after a token boundary.

    The full pipeline marks the start of a text: SentencePiece prepends ``▁`` (a ``Prepend``
    normalizer or a ``Metaspace`` pre-tokenizer with ``prepend_scheme``), byte-level BPE may add a
    space (``add_prefix_space``). Inside an output none of that happens, so the copy drops those
    steps and keeps every other one (normalization, splitting, the model's merges or scores).
    """
    spec = json.loads(tok.to_str())
    spec["normalizer"] = _without_prepend(spec.get("normalizer"))
    spec["pre_tokenizer"] = _no_prefix(spec.get("pre_tokenizer"))
    spec["post_processor"] = None
    return Tokenizer.from_str(json.dumps(spec))


def _without_prepend(component: dict | None) -> dict | None:
    if not component:
        return component
    if component.get("type") == "Prepend":
        return None
    if component.get("type") == "Sequence":
        kept = [c for c in (_without_prepend(c) for c in component["normalizers"]) if c]
        return {**component, "normalizers": kept} if kept else None
    return component


def _no_prefix(component: dict | None) -> dict | None:
    if not component:
        return component
    out = dict(component)
    if out.get("type") == "Metaspace":
        out["prepend_scheme"] = "never"
        out.pop("add_prefix_space", None)  # tokenizers < 0.14 spelling
    elif out.get("type") == "ByteLevel":
        out["add_prefix_space"] = False
    elif out.get("type") == "Sequence":
        out["pretokenizers"] = [_no_prefix(c) for c in out["pretokenizers"]]
    return out


def digits_split(table: list[bytes | None]) -> bool:
    """True when no token mixes an ASCII digit with anything else (``split_digits`` tokenizers)."""
    digits = set(b"0123456789")
    has_digit_token = {b for b in table if b is not None and len(b) == 1 and b[0] in digits}
    if len(has_digit_token) < 10:
        return False
    return all(b is None or len(b) <= 1 or not (set(b) & digits) for b in table)


__all__ = [
    "TokenizerInfo",
    "check_reachable",
    "continuation_tokenizer",
    "digits_split",
    "load_tokenizer",
    "stretch_tokenizer",
    "token_bytes",
]
