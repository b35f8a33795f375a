"""The language of one tool's output, derived from the registry, and its two renderings.

A tool's valid outputs are its canonical compact JSON (``ToolCall.dumps()``), optionally after one
leading space (T5-style tokenizers put ``▁`` before the first token). The language is described
once, as a list of alternatives made of three kinds of parts:

- :class:`Lit`: fixed text (keys, braces, separators);
- :class:`Choice`: one of several fixed texts (preset names);
- :class:`Int`: an integer of an inclusive range (sign + digit patterns, see ``intrange``).

Two renderers turn that description into a regex:

- :func:`char_regex`: a regex over characters, matching exactly the valid texts. It is the
  reference (tests check ranges against it) and the grammar of the ``any`` tokenization mode.
- :func:`token_regex`: a regex over *token symbols* (one private-use character per token id)
  that spells every fixed stretch of text by the tokenizer's own canonical tokenization. Splitting
  at digits is what makes that exact: when no token mixes a digit with other characters (unigram
  or BPE with ``split_digits``), the canonical tokenization of a whole output is the concatenation
  of the canonical tokenizations of its digit-free stretches and its single digits. The sign of a
  number belongs to the stretch before it, so ``":-`` can be one token, as the tokenizer writes it.

The token grammar admits the same texts as the character grammar, but each text only under its
canonical tokenization: so every fixed stretch becomes a chain of forced tokens (jump-forward) and
the model only decides signs, digits, presets and ``{}``, in the token form it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from vedit.decoding.intrange import DigitPattern, signed_patterns
from vedit.errors import GrammarError
from vedit.registry.model import Tool


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int


Part = Union[Lit, Choice, Int]
Alternative = tuple[Part, ...]

#: The optional prefix before the JSON: nothing, or one space.
LEADING = ("", " ")


def _key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def tool_language(tool: Tool) -> tuple[Alternative, ...]:
    """The alternatives of ``tool``'s canonical JSON, keys in registry order (no leading space)."""
    if tool.kind == "preset":
        parts: list[Part] = [Lit("{" + _key("name") + ":"), Choice(tuple(_key(p) for p in tool.presets))]
        for p in tool.params:
            parts += [Lit("," + _key(p.name) + ":"), Int(p.min, p.max)]
        parts.append(Lit("}"))
        return (tuple(parts),)
    full: list[Part] = []
    if tool.kind == "flat":
        for i, p in enumerate(tool.params):
            full += [Lit(("{" if i == 0 else ",") + _key(p.name) + ":"), Int(p.min, p.max)]
        full.append(Lit("}"))
    else:
        for ci, colour in enumerate(tool.colours):
            full.append(Lit(("{" if ci == 0 else ",") + _key(colour) + ":"))
            for i, p in enumerate(tool.params):
                full += [Lit(("{" if i == 0 else ",") + _key(p.name) + ":"), Int(p.min, p.max)]
            full.append(Lit("}"))
        full.append(Lit("}"))
    return ((Lit("{}"),), tuple(full))


def needed_chars(tool: Tool) -> set[str]:
    """Every character some valid output of ``tool`` uses (digits and ``-`` where ranges need them)."""
    chars: set[str] = set()
    for alt in tool_language(tool):
        for part in alt:
            if isinstance(part, Lit):
                chars.update(part.text)
            elif isinstance(part, Choice):
                for o in part.options:
                    chars.update(o)
            else:
                sp = signed_patterns(part.lo, part.hi)
                if sp.negative:
                    chars.add("-")
                for pat in sp.negative + sp.non_negative:
                    for lo, hi in pat:
                        chars.update(str(d) for d in range(lo, hi + 1))
    return chars


# --------------------------------------------------------------------------- rendering


def _group(alts: Sequence[str]) -> str:
    uniq = list(dict.fromkeys(alts))
    return uniq[0] if len(uniq) == 1 else "(?:" + "|".join(uniq) + ")"


_META = set("\\.+*?()|[]{}^$#&-~")


def escape(text: str) -> str:
    """Escape regex metacharacters (the subset of syntax both Python ``re`` and Rust ``regex`` share)."""
    return "".join("\\" + c if c in _META else c for c in text)


@dataclass(frozen=True)
class _Renderer:
    """How fixed text and digits become regex: characters or token symbols."""

    text: Callable[[str], str]  # a digit-free stretch of text -> regex
    digits_in: Callable[[int, int], str]  # one digit position with an inclusive digit range -> regex

    def digits(self, patterns: Sequence[DigitPattern]) -> str:
        return _group(["".join(self.digits_in(lo, hi) for lo, hi in pat) for pat in patterns])


def _render(tool: Tool, r: _Renderer) -> str:
    """Walk the language, tokenizing each digit-free stretch as a whole (see module docstring).

    State: a list of ``(regex so far, pending digit-free text)`` pairs; text is only rendered when
    a digit ends the stretch, so a number's sign joins the stretch before it.
    """
    out = []
    for alt in tool_language(tool):
        state: list[tuple[str, str]] = [("", lead) for lead in LEADING]
        for part in alt:
            if isinstance(part, Lit):
                state = [_append(r, rx, carry, part.text) for rx, carry in state]
            elif isinstance(part, Choice):
                state = [_append(r, rx, carry, o) for rx, carry in state for o in part.options]
            else:
                sp = signed_patterns(part.lo, part.hi)
                neg = r.digits(sp.negative) if sp.negative else None
                pos = r.digits(sp.non_negative) if sp.non_negative else None

                def number(carry: str) -> str:
                    branches = []
                    if neg is not None:
                        branches.append(r.text(carry + "-") + neg)
                    if pos is not None:
                        branches.append(r.text(carry) + pos)
                    return _group(branches)

                # Each prefix appears once (factoring the sign inside keeps the regex linear).
                state = [(_group([rx + number(carry) for rx, carry in state]), "")]
        out.append(_group([rx + r.text(carry) for rx, carry in state]))
    return _group(out)


def _append(r: _Renderer, rx: str, carry: str, text: str) -> tuple[str, str]:
    """Add fixed ``text``; a digit inside it (``teal_and_orange_1``) closes the pending stretch."""
    for ch in text:
        if ch.isascii() and ch.isdigit():
            rx, carry = rx + r.text(carry) + r.digits_in(int(ch), int(ch)), ""
        else:
            carry += ch
    return rx, carry


def char_regex(tool: Tool) -> str:
    """Regex over characters for exactly the valid outputs of ``tool`` (with optional leading space)."""

    def digits_in(lo: int, hi: int) -> str:
        return str(lo) if lo == hi else f"[{lo}-{hi}]"

    return _render(tool, _Renderer(text=escape, digits_in=digits_in))


def token_regex(tool: Tool, tokenize: Callable[[str], Sequence[int]], symbol: Callable[[int], str]) -> str:
    """Regex over token symbols.

    ``tokenize(text)`` is the canonical tokenization of a digit-free stretch as it appears inside
    an output (no prefix added; the optional leading space is part of the first stretch), and
    ``symbol(token_id)`` the character that stands for a token in the regex.
    """

    def text(s: str) -> str:
        return "".join(symbol(t) for t in tokenize(s)) if s else ""

    digit_symbols = []
    for d in range(10):
        ids = tokenize(str(d))
        if len(ids) != 1:
            raise GrammarError(f"the tokenizer does not write the digit {d} as one token")
        digit_symbols.append(symbol(ids[0]))

    def digits_in(lo: int, hi: int) -> str:
        syms = digit_symbols[lo : hi + 1]
        return syms[0] if len(syms) == 1 else "[" + "".join(syms) + "]"

    return _render(tool, _Renderer(text=text, digits_in=digits_in))


__all__ = [
    "Alternative",
    "Choice",
    "Int",
    "LEADING",
    "Lit",
    "Part",
    "char_regex",
    "escape",
    "needed_chars",
    "token_regex",
    "tool_language",
]
