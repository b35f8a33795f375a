"""The language of one tool's output, derived from its JSON Schema, and its two renderings.

A tool's valid outputs are its canonical compact JSON (``ToolCall.dumps()``), optionally after one
leading space (T5-style tokenizers put ``▁`` before the first token). The language is described
once, from the schema's node tree (:mod:`vedit.registry.subset`), as nested :class:`Seq` and
:class:`Alt` of these parts:

- :class:`Lit`: fixed text (keys, braces, separators, the unused answer);
- :class:`Choice`: one of several fixed texts (enum values, booleans);
- :class:`Int`: an integer of an inclusive range (sign + digit patterns, see ``intrange``);
- :class:`Digits`: the fixed-width decimals of a number (``multipleOf: 0.01``);
- :class:`Str`: the free characters of a bounded string (``maxLength`` or ``pattern``).

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

from vedit.decoding.intrange import DigitPattern, _same_length, signed_patterns
from vedit.errors import GrammarError
from vedit.registry import subset
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


@dataclass(frozen=True)
class Digits:
    """A fixed-width run of digits (the decimals of a number): one of ``patterns``."""

    patterns: tuple[DigitPattern, ...]


@dataclass(frozen=True)
class Str:
    """A JSON string's characters (between its quotes): ``regex`` over characters, never a quote,
    backslash or control character. Free text has no canonical tokenization: its tool takes mode
    ``runs`` (the forced text around it re-tokenized at the boundary), else ``any``."""

    regex: str


@dataclass(frozen=True)
class Seq:
    parts: tuple["Part", ...]


@dataclass(frozen=True)
class Alt:
    branches: tuple["Part", ...]


Part = Union[Lit, Choice, Int, Digits, Str, Seq, Alt]
Alternative = tuple[Part, ...]

#: The optional prefix before the JSON: nothing, or one space.
LEADING = ("", " ")
EMPTY = Seq(())


def _key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def node_language(node: subset.Node) -> Part:
    """The canonical texts of a schema node (:mod:`vedit.registry.subset`) as parts."""
    if isinstance(node, subset.Integer):
        return Int(node.lo, node.hi)
    if isinstance(node, subset.Number):
        return _number(node)
    if isinstance(node, subset.Boolean):
        return Choice(("true", "false"))
    if isinstance(node, subset.Const):
        return Choice(node.texts) if len(node.texts) > 1 else Lit(node.texts[0])
    if isinstance(node, subset.String):
        if node.pattern is not None:
            body = f"(?:{node.pattern})"
        else:
            hi = node.max_length or 0
            body = f"{subset.STRING_CHARS}{{{node.min_length},{hi}}}" if hi else ""
        return Seq((Lit('"'), Str(body), Lit('"'))) if body else Lit('""')
    if isinstance(node, subset.Object):
        return _object(node)
    if isinstance(node, subset.Array):
        item = node_language(node.items)
        rest: Part = EMPTY
        for k in range(node.max_items - 1, 0, -1):  # ("," item){min-1..max-1}, nested
            more = Seq((Lit(","), item, rest))
            rest = more if k < node.min_items else Alt((EMPTY, more))
        full = Seq((Lit("["), item, rest, Lit("]")))
        if node.max_items == 0:
            return Lit("[]")
        return full if node.min_items > 0 else Alt((Lit("[]"), full))
    return Alt(tuple(node_language(o) for o in node.options))


def _object(node: subset.Object) -> Part:
    """Properties in schema order; an optional one may be absent. The first written property has no
    comma: alternatives by which property comes first (only optional ones may be skipped before it)."""
    props = node.props
    kv = [(_key(p.name) + ":", node_language(p.node)) for p in props]

    def tail(i: int) -> Part:
        items: list[Part] = []
        for j in range(i, len(props)):
            pair = Seq((Lit("," + kv[j][0]), kv[j][1]))
            items.append(pair if props[j].required else Alt((EMPTY, pair)))
        return Seq(tuple(items))

    firsts: list[Part] = []
    for i, p in enumerate(props):
        firsts.append(Seq((Lit("{" + kv[i][0]), kv[i][1], tail(i + 1), Lit("}"))))
        if p.required:
            break
    else:
        firsts.append(Lit("{}"))
    return firsts[0] if len(firsts) == 1 else Alt(tuple(firsts))


def _number(node: subset.Number) -> Part:
    """A decimal with exactly ``places`` decimals in ``lo..hi`` (scaled): sign, whole part, ``.``,
    fixed-width decimals; the whole part's range and the decimals' ranges are split at the bounds."""
    if node.places == 0:
        return Int(node.lo, node.hi)
    unit = 10**node.places
    branches: list[Part] = []
    if node.lo < 0:
        branches += [Seq((Lit("-"), m)) for m in _magnitudes(max(1, -node.hi), -node.lo, unit, node.places)]
    if node.hi >= 0:
        branches += _magnitudes(max(0, node.lo), node.hi, unit, node.places)
    return branches[0] if len(branches) == 1 else Alt(tuple(branches))


def _magnitudes(a: int, b: int, unit: int, places: int) -> list[Part]:
    def frac(lo: int, hi: int) -> Digits:
        return Digits(tuple(_same_length(f"{lo:0{places}d}", f"{hi:0{places}d}")))

    (ai, af), (bi, bf) = divmod(a, unit), divmod(b, unit)
    if ai == bi:
        return [Seq((Int(ai, ai), Lit("."), frac(af, bf)))]
    out: list[Part] = [Seq((Int(ai, ai), Lit("."), frac(af, unit - 1)))]
    if ai + 1 <= bi - 1:
        out.append(Seq((Int(ai + 1, bi - 1), Lit("."), frac(0, unit - 1))))
    out.append(Seq((Int(bi, bi), Lit("."), frac(0, bf))))
    return out


def tool_tree(tool: Tool) -> Part:
    """The language of ``tool``'s canonical answers (no leading space), from its schema."""
    return node_language(tool.language)


def tool_language(tool: Tool, limit: int = 4096) -> tuple[Alternative, ...]:
    """The language expanded into alternatives of flat parts (Lit, Choice, Int, Digits, Str), for
    renderers that cannot nest (GBNF); refuses languages with more than ``limit`` alternatives."""

    def expand(part: Part) -> list[Alternative]:
        if isinstance(part, Seq):
            out: list[Alternative] = [()]
            for p in part.parts:
                out = [a + b for a in out for b in expand(p)]
                if len(out) > limit:
                    raise GrammarError(f"{tool.name}: the language has more than {limit} alternatives")
            return out
        if isinstance(part, Alt):
            return [a for b in part.branches for a in expand(b)]
        return [(part,)]

    return tuple(dict.fromkeys(expand(tool_tree(tool))))


def _leaves(part: Part):
    if isinstance(part, Seq):
        for p in part.parts:
            yield from _leaves(p)
    elif isinstance(part, Alt):
        for b in part.branches:
            yield from _leaves(b)
    else:
        yield part


def needed_chars(tool: Tool) -> set[str]:
    """Every character of the fixed text and numbers some valid output of ``tool`` uses (digits and
    ``-`` where ranges need them; free string characters are not listed: any will do)."""
    chars: set[str] = set()
    for part in _leaves(tool_tree(tool)):
        if isinstance(part, Lit):
            chars.update(part.text)
        elif isinstance(part, Choice):
            for o in part.options:
                chars.update(o)
        elif isinstance(part, (Int, Digits)):
            if isinstance(part, Int):
                sp = signed_patterns(part.lo, part.hi)
                chars.update("-" if sp.negative else "")
                pats = sp.negative + sp.non_negative
            else:
                pats = part.patterns
            for pat in pats:
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
    free: Callable[[str], str]  # a string's free characters (char regex) -> regex
    eager: bool  # text may be cut anywhere (characters): flush pending text at once

    def digits(self, patterns: Sequence[DigitPattern]) -> str:
        return _group(["".join(self.digits_in(lo, hi) for lo, hi in pat) for pat in patterns])


#: Most pending stretches kept apart (enum choices in a row multiply them); beyond, they are
#: tokenized apart, which keeps the texts exact and is caught by the canonical check if it matters.
MAX_PENDING = 64
#: A walk state: the regex that every path shares, and per pending digit-free text the regex since.
_Frame = tuple[str, dict[str, str]]


def _merge(pairs) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for carry, rx in pairs:
        out.setdefault(carry, []).append(rx)
    return {c: _group(rxs) for c, rxs in out.items()}


def _flush(r: _Renderer, frame: _Frame) -> _Frame:
    prefix, st = frame
    return prefix + _group([rx + r.text(c) for c, rx in st.items()]), {"": ""}


def _walk(r: _Renderer, part: Part, frame: _Frame) -> _Frame:
    """Render ``part`` after ``frame``; text is only tokenized when a digit or free text ends the
    stretch, so a number's sign joins the stretch before it (see module docstring)."""
    prefix, st = frame
    if isinstance(part, Lit):
        st = _merge(_append(r, rx, c, part.text)[::-1] for c, rx in st.items())
    elif isinstance(part, Choice):
        st = _merge(_append(r, rx, c, o)[::-1] for c, rx in st.items() for o in part.options)
    elif isinstance(part, Int):
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
        prefix, st = prefix + _group([rx + number(c) for c, rx in st.items()]), {"": ""}
    elif isinstance(part, Digits):
        prefix, st = prefix + _group([rx + r.text(c) for c, rx in st.items()]) + r.digits(part.patterns), {"": ""}
    elif isinstance(part, Str):
        prefix, st = prefix + _group([rx + r.text(c) for c, rx in st.items()]) + r.free(part.regex), {"": ""}
    elif isinstance(part, Seq):
        for p in part.parts:
            prefix, st = _walk(r, p, (prefix, st))
    else:
        pairs = []
        for b in part.branches:
            bp, bst = _walk(r, b, ("", st))
            pairs += [(c, bp + rx) for c, rx in bst.items()]
        st = _merge(pairs)
    if len(st) == 1 and "" in st:
        prefix, st = prefix + st[""], {"": ""}
    elif r.eager or len(st) > MAX_PENDING:
        prefix, st = _flush(r, (prefix, st))
    return prefix, st


def _render(tool: Tool, r: _Renderer) -> str:
    """The regex of the tool's answers, each after one of the :data:`LEADING` prefixes."""
    frame = _walk(r, tool_tree(tool), ("", {lead: "" for lead in LEADING}))
    return _flush(r, frame)[0]


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

    return _render(tool, _Renderer(text=escape, digits_in=digits_in, free=lambda rx: rx, eager=True))


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

    def free(_: str) -> str:
        raise GrammarError(f"{tool.name}: free string text has no canonical tokenization")

    return _render(tool, _Renderer(text=text, digits_in=digits_in, free=free, eager=False))


__all__ = [
    "Alt",
    "Alternative",
    "Choice",
    "Digits",
    "Seq",
    "Str",
    "node_language",
    "tool_tree",
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
