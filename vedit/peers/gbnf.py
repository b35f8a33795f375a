"""vedit's tool output languages written as GBNF, the grammar format of llama.cpp.

Why written from :func:`vedit.decoding.language.tool_language` rather than from a JSON schema:
llama.cpp's JSON-schema converter admits whitespace and any key order, vedit's grammar admits
exactly one text per call (its canonical compact JSON, optionally after one leading space). This
renders the same parts (fixed text, preset choices, integer ranges as digit patterns) so the GBNF
accepts exactly vedit's texts, character by character. GBNF is character-level: llama.cpp admits
any tokenization of those texts, where vedit's canonical grammar admits one; a steered run picks
the scripted tokens either way.
"""

from __future__ import annotations

from vedit.decoding.intrange import DigitPattern, signed_patterns
from vedit.decoding.language import LEADING, Choice, Int, Lit, tool_language
from vedit.registry.model import Tool


def literal(text: str) -> str:
    """A GBNF string literal for ``text`` (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _digits(patterns: tuple[DigitPattern, ...]) -> str:
    alts = [" ".join(literal(str(lo)) if lo == hi else f"[{lo}-{hi}]" for lo, hi in pat) for pat in patterns]
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


def _int(part: Int) -> str:
    sp = signed_patterns(part.lo, part.hi)
    branches = []
    if sp.negative:
        branches.append('"-" ' + _digits(sp.negative))
    if sp.non_negative:
        branches.append(_digits(sp.non_negative))
    return branches[0] if len(branches) == 1 else "(" + " | ".join(branches) + ")"


def longest_text(tool: Tool) -> int:
    """Bytes of ``tool``'s longest valid output, leading space included.

    A character-level grammar admits any tokenization, one byte per token at worst, so this (plus
    EOS) bounds the tokens a row may take; vedit's canonical automaton bounds only its own tokenization.
    """
    def most(part) -> int:
        if isinstance(part, Lit):
            return len(part.text.encode("utf-8"))
        if isinstance(part, Choice):
            return max(len(o.encode("utf-8")) for o in part.options)
        return max(len(str(part.lo)), len(str(part.hi)))

    return max(len(s.encode("utf-8")) for s in LEADING) + max(sum(most(p) for p in alt) for alt in tool_language(tool))


def tool_gbnf(tool: Tool) -> str:
    """A GBNF grammar (start symbol ``root``) for exactly the valid outputs of ``tool``."""
    rules: list[str] = []
    ints: dict[tuple[int, int], str] = {}
    alternatives = []
    for alt in tool_language(tool):
        items = []
        for part in alt:
            if isinstance(part, Lit):
                items.append(literal(part.text))
            elif isinstance(part, Choice):
                items.append("(" + " | ".join(literal(o) for o in part.options) + ")")
            else:
                key = (part.lo, part.hi)
                if key not in ints:
                    ints[key] = f"int{len(ints)}"
                    rules.append(f"{ints[key]} ::= {_int(part)}")
                items.append(ints[key])
        alternatives.append(" ".join(items))
    lead = [literal(s) for s in LEADING if s]
    head = f"root ::= ({' | '.join(lead)})? body" if lead else "root ::= body"
    body = "body ::= " + (alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")")
    return "\n".join([head, body, *rules]) + "\n"


__all__ = ["literal", "longest_text", "tool_gbnf"]
