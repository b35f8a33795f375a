"""The JSON Schema subset vedit compiles exactly, as a small tree of typed nodes.

A tool's ``parameters`` (JSON Schema, as in OpenAI-style function definitions) is read into a
:data:`Node` tree once, when the tools file is loaded; everything else (the decoding grammar, the
canonical text of an answer, sample answers for the grammar checks, the metrics' leaves) walks
that tree, so no tool layout is special-cased anywhere. What the subset admits (docs/byo-student.md
has the table):

- ``integer`` with ``minimum`` and ``maximum`` (``exclusiveMinimum``/``exclusiveMaximum`` too);
- ``number`` with ``multipleOf`` a power of ten (``0.01``: two decimals) and a range; written with
  exactly that many decimals (``0.50``);
- ``boolean``; ``enum``/``const`` of strings, numbers, booleans or null;
- ``string`` with ``maxLength`` (and ``minLength``) or an anchored ``pattern`` (``^...$``); its
  characters are anything but ``"``, ``\\`` and control characters (no escapes are written);
- ``object`` with ``properties`` (written in the file's order), ``required``, and
  ``additionalProperties`` absent or ``false``;
- ``array`` with ``items`` and ``maxItems`` (``minItems`` too);
- ``anyOf`` of these (an answer is written in the first option that accepts it).

Anything else is refused with :class:`~vedit.errors.SchemaSubsetError`, naming the schema path
and the reason, before any export work starts. Annotations (``title``, ``description``,
``default``, ``examples``, ``$comment``) are ignored.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Union

from vedit.errors import SchemaSubsetError

#: Keywords that only annotate a schema.
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema"})
#: Most decimals a ``number`` may have (``multipleOf`` down to 1e-6).
MAX_PLACES = 6
#: Characters a string may never hold: what JSON would have to escape.
STRING_CHARS = r'[^"\\\x00-\x1f]'


@dataclass(frozen=True)
class Integer:
    lo: int
    hi: int


@dataclass(frozen=True)
class Number:
    """A decimal with ``places`` decimals; ``lo``/``hi`` are scaled by ``10**places``."""

    lo: int
    hi: int
    places: int


@dataclass(frozen=True)
class Boolean:
    pass


@dataclass(frozen=True)
class Const:
    """One of fixed JSON values (``enum``, ``const``), kept as their canonical texts."""

    texts: tuple[str, ...]

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(json.loads(t) for t in self.texts)


@dataclass(frozen=True)
class String:
    """A string of ``min_length..max_length`` characters, or matching ``pattern`` (anchors removed)."""

    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Prop:
    name: str
    node: "Node"
    required: bool


@dataclass(frozen=True)
class Object:
    props: tuple[Prop, ...]


@dataclass(frozen=True)
class Array:
    items: "Node"
    min_items: int
    max_items: int


@dataclass(frozen=True)
class AnyOf:
    options: tuple["Node", ...]


Node = Union[Integer, Number, Boolean, Const, String, Object, Array, AnyOf]


def canonical_json(value: Any) -> str:
    """Compact JSON, no ASCII escaping: the form fixed values take in an answer."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- reading a schema


def compile_schema(schema: Any, path: str = "parameters") -> Node:
    """Read ``schema`` into a node tree, or raise :class:`SchemaSubsetError` at the first problem."""
    if not isinstance(schema, dict):
        raise SchemaSubsetError(path, "a schema must be a JSON object")
    keys = set(schema) - ANNOTATIONS

    def refuse(reason: str) -> SchemaSubsetError:
        return SchemaSubsetError(path, reason)

    def allow(*ok: str) -> None:
        extra = sorted(keys - set(ok))
        if extra:
            raise refuse(f"keyword {extra[0]!r} is not in vedit's schema subset here (allowed: {', '.join(ok)})")

    known = {"anyOf", "enum", "const", "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
             "multipleOf", "maxLength", "minLength", "pattern", "properties", "required", "additionalProperties",
             "items", "maxItems", "minItems"}
    if keys - known:
        raise refuse(f"keyword {sorted(keys - known)[0]!r} is not in vedit's schema subset")
    if "anyOf" in schema:
        allow("anyOf")
        options = schema["anyOf"]
        if not isinstance(options, list) or not options:
            raise refuse("anyOf must be a non-empty list")
        return AnyOf(tuple(compile_schema(o, f"{path}/anyOf/{i}") for i, o in enumerate(options)))
    if "enum" in schema or "const" in schema:
        allow("enum", "const", "type")
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        if not isinstance(values, list) or not values:
            raise refuse("enum must be a non-empty list")
        for v in values:
            if isinstance(v, (dict, list)):
                raise refuse(f"enum/const values must be strings, numbers, booleans or null, not {canonical_json(v)}")
            if isinstance(v, str) and re.search(r'["\\\x00-\x1f]', v):
                raise refuse(f"enum value {v!r} holds a quote, backslash or control character")
        return Const(tuple(dict.fromkeys(canonical_json(v) for v in values)))
    kind = schema.get("type")
    if kind is None:
        raise refuse("a schema needs a 'type' (or enum, const, anyOf)")
    if not isinstance(kind, str):
        raise refuse("'type' must be one type name (use anyOf for several)")
    if kind == "integer":
        allow("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        lo, hi = _bounds(schema, refuse, Decimal(1))
        return Integer(lo, hi)
    if kind == "number":
        allow("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
        if "multipleOf" not in schema:
            raise refuse("a number needs multipleOf (a power of ten such as 0.01: the decimals it is written with)")
        step = _decimal(schema["multipleOf"], "multipleOf", refuse)
        places = -step.normalize().as_tuple().exponent
        if step <= 0 or step != Decimal(1).scaleb(-places) or not 0 <= places <= MAX_PLACES:
            raise refuse(f"multipleOf must be a power of ten between 1 and 1e-{MAX_PLACES}, got {schema['multipleOf']}")
        lo, hi = _bounds(schema, refuse, step)
        return Number(lo, hi, places)
    if kind == "boolean":
        allow("type")
        return Boolean()
    if kind == "string":
        allow("type", "maxLength", "minLength", "pattern")
        return _string(schema, refuse)
    if kind == "object":
        allow("type", "properties", "required", "additionalProperties")
        return _object(schema, path, refuse)
    if kind == "array":
        allow("type", "items", "maxItems", "minItems")
        if "maxItems" not in schema or "items" not in schema:
            raise refuse("an array needs items and maxItems")
        lo, hi = schema.get("minItems", 0), schema["maxItems"]
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
            raise refuse("minItems/maxItems must be integers with 0 <= minItems <= maxItems")
        return Array(compile_schema(schema["items"], f"{path}/items"), lo, hi)
    raise refuse(f"type {kind!r} is not in vedit's schema subset (integer, number, boolean, string, object, array)")


def _decimal(value: Any, what: str, refuse) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(f"{what} must be a number")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise refuse(f"{what} must be a finite number") from None


def _bounds(schema: dict, refuse, step: Decimal) -> tuple[int, int]:
    """The inclusive range in units of ``step`` (bounds that are not multiples are rounded inwards)."""
    lo = hi = None
    if "minimum" in schema:
        lo = -((-_decimal(schema["minimum"], "minimum", refuse) / step) // 1)
    if "exclusiveMinimum" in schema:
        v = _decimal(schema["exclusiveMinimum"], "exclusiveMinimum", refuse) / step
        e = v // 1 + 1
        lo = e if lo is None else max(lo, e)
    if "maximum" in schema:
        hi = _decimal(schema["maximum"], "maximum", refuse) / step // 1
    if "exclusiveMaximum" in schema:
        v = _decimal(schema["exclusiveMaximum"], "exclusiveMaximum", refuse) / step
        e = -((-v) // 1) - 1
        hi = e if hi is None else min(hi, e)
    if lo is None or hi is None:
        raise refuse("a number needs both a minimum and a maximum (the grammar enforces the range exactly)")
    if lo > hi:
        raise refuse(f"the range is empty (minimum {schema.get('minimum', schema.get('exclusiveMinimum'))} > "
                     f"maximum {schema.get('maximum', schema.get('exclusiveMaximum'))})")
    return int(lo), int(hi)


def _string(schema: dict, refuse) -> String:
    lo = schema.get("minLength", 0)
    hi = schema.get("maxLength")
    pattern = schema.get("pattern")
    if pattern is not None and (hi is not None or lo):
        raise refuse("use either maxLength/minLength or pattern, not both")
    if pattern is None:
        if hi is None:
            raise refuse("a string needs maxLength or pattern (an unbounded string cannot be constrained)")
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
            raise refuse("minLength/maxLength must be integers with 0 <= minLength <= maxLength")
        return String(lo, hi)
    if not isinstance(pattern, str) or not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        raise refuse("pattern must be anchored: start with ^ and end with $")
    body = pattern[1:-1]
    try:
        re.compile(body)
    except re.error as exc:
        raise refuse(f"pattern is not a valid regex: {exc}") from None
    if _top_level_bar(body):
        raise refuse("pattern has a top-level '|' (JSON Schema reads ^a|b$ as 'starts with a or ends with b'); "
                     "group the alternatives: ^(?:a|b)$")
    if re.search(r"\(\?(?!:)", body):
        raise refuse("pattern uses (?...) groups other than (?:...), which vedit does not compile")
    problem = _pattern_problem(_sre().parse(body))
    if problem:
        raise refuse(f"pattern {problem}: a string's characters may not be quotes, backslashes or control "
                     "characters (vedit writes no escapes)")
    return String(pattern=body)


def _top_level_bar(body: str) -> bool:
    depth, in_class, i = 0, False, 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _sre():
    try:
        import re._parser as sre  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10 (the Triton container)
        import sre_parse as sre  # type: ignore[no-redef]
    return sre


def _bad_char(c: int) -> bool:
    return c < 0x20 or c in (0x22, 0x5C)


def _pattern_problem(items) -> str:
    """Why a parsed pattern could match a character a JSON string cannot hold unescaped, or ''."""
    for op, arg in items:
        name = str(op)
        if name == "LITERAL" and _bad_char(arg):
            return f"can write {chr(arg)!r}"
        if name == "IN":
            for kind, v in arg:
                k = str(kind)
                if k == "NEGATE":
                    return "uses a negated class [^...]"
                if k == "LITERAL" and _bad_char(v):
                    return f"can write {chr(v)!r}"
                if k == "RANGE" and any(_bad_char(c) for c in (*range(v[0], min(v[1], 0x5C) + 1),)):
                    return f"has the range {chr(v[0])!r}-{chr(v[1])!r}, which holds a quote, backslash or control character"
                if k == "CATEGORY" and str(v) not in ("CATEGORY_DIGIT", "CATEGORY_WORD"):
                    return f"uses {str(v).lower().replace('category_', '')} characters"
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            inner = _pattern_problem(arg[2])
            if inner:
                return inner
        elif name == "SUBPATTERN":
            inner = _pattern_problem(arg[-1])
            if inner:
                return inner
        elif name == "BRANCH":
            for branch in arg[1]:
                inner = _pattern_problem(branch)
                if inner:
                    return inner
        elif name == "CATEGORY":
            if str(arg) not in ("CATEGORY_DIGIT", "CATEGORY_WORD"):
                return f"uses {str(arg).lower().replace('category_', '')} characters"
        elif name != "LITERAL":
            return f"uses {name.lower().replace('_', ' ')} ('.', anchors, look-arounds or back-references)"
    return ""


def _object(schema: dict, path: str, refuse) -> Object:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict) or not isinstance(required, list):
        raise refuse("properties must be an object and required a list")
    unknown = [r for r in required if r not in props]
    if unknown:
        raise refuse(f"required names {unknown[0]!r}, which is not among the properties")
    if schema.get("additionalProperties", False) is not False:
        raise refuse("additionalProperties must be false or absent (vedit writes only the listed properties)")
    for name in props:
        if re.search(r'["\\\x00-\x1f]', name):
            raise refuse(f"property name {name!r} holds a quote, backslash or control character")
    return Object(tuple(Prop(name, compile_schema(s, f"{path}/properties/{name}"), name in required)
                        for name, s in props.items()))


# --------------------------------------------------------------------------- answers


def accepts(node: Node, value: Any) -> bool:
    """Whether the grammar of ``node`` can write ``value`` (stricter than the schema: no escapes)."""
    if isinstance(node, Integer):
        return _is_int(value) and node.lo <= value <= node.hi
    if isinstance(node, Number):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        scaled = Decimal(str(value)).scaleb(node.places)
        return scaled == scaled.to_integral_value() and node.lo <= scaled <= node.hi
    if isinstance(node, Boolean):
        return isinstance(value, bool)
    if isinstance(node, Const):
        return any(_same(value, v) for v in node.values)
    if isinstance(node, String):
        if not isinstance(value, str) or re.search(r'["\\\x00-\x1f]', value):
            return False
        if node.pattern is not None:
            return re.fullmatch(node.pattern, value) is not None
        return node.min_length <= len(value) <= (node.max_length or 0)
    if isinstance(node, Object):
        if not isinstance(value, dict) or set(value) - {p.name for p in node.props}:
            return False
        return all((p.name in value and accepts(p.node, value[p.name])) or (not p.required and p.name not in value)
                   for p in node.props)
    if isinstance(node, Array):
        return (isinstance(value, list) and node.min_items <= len(value) <= node.max_items
                and all(accepts(node.items, v) for v in value))
    return any(accepts(o, value) for o in node.options)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``1 == 1.0``, but ``true != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def dump(node: Node, value: Any) -> str:
    """The canonical text of ``value`` (which ``accepts``): the only text the grammar admits for it."""
    if isinstance(node, Integer):
        return str(int(value))
    if isinstance(node, Number):
        scaled = int(Decimal(str(value)).scaleb(node.places))
        if node.places == 0:
            return str(scaled)
        sign, mag = ("-" if scaled < 0 else ""), abs(scaled)
        whole, frac = divmod(mag, 10**node.places)
        return f"{sign}{whole}.{frac:0{node.places}d}"
    if isinstance(node, Boolean):
        return "true" if value else "false"
    if isinstance(node, Const):
        return next(t for t, v in zip(node.texts, node.values) if _same(value, v))
    if isinstance(node, String):
        return canonical_json(value)
    if isinstance(node, Object):
        body = [canonical_json(p.name) + ":" + dump(p.node, value[p.name]) for p in node.props if p.name in value]
        return "{" + ",".join(body) + "}"
    if isinstance(node, Array):
        return "[" + ",".join(dump(node.items, v) for v in value) + "]"
    return dump(next(o for o in node.options if accepts(o, value)), value)


def normal(node: Node, value: Any) -> Any:
    """``value`` as Python keeps it: ints for integers, properties in schema order."""
    return json.loads(dump(node, value))


def samples(node: Node, rng: random.Random, n: int = 40) -> list[Any]:
    """Values that exercise every branch: each bound, each enum option, each anyOf option,
    absent and present optional properties, empty and full arrays, then random values."""
    out = [_value(node, rng, mode) for mode in ("min", "max", "zero")]
    for i in range(_width(node)):
        out.append(_value(node, rng, ("pick", i)))
    out += [_value(node, rng, "random") for _ in range(n)]
    return out


def _width(node: Node) -> int:
    """How many ``pick`` samples reach every option of every enum / anyOf inside ``node``."""
    if isinstance(node, Const):
        return len(node.texts)
    if isinstance(node, AnyOf):
        return sum(max(1, _width(o)) for o in node.options)
    if isinstance(node, Object):
        return max((_width(p.node) for p in node.props), default=0)
    if isinstance(node, Array):
        return _width(node.items)
    return 0


def _value(node: Node, rng: random.Random, mode: Any) -> Any:
    if isinstance(node, (Integer, Number)):
        lo, hi = node.lo, node.hi
        v = {"min": lo, "max": hi, "zero": min(max(0, lo), hi)}.get(mode) if isinstance(mode, str) else None
        if v is None:
            v = rng.choice([rng.randint(lo, hi), lo, hi, min(max(0, lo), hi), min(max(1, lo), hi)])
        return v if isinstance(node, Integer) else json.loads(dump(node, Decimal(v).scaleb(-node.places)))
    if isinstance(node, Boolean):
        return {"min": False, "max": True}.get(mode, rng.random() < 0.5) if isinstance(mode, str) else bool(mode[1] % 2)
    if isinstance(node, Const):
        values = node.values
        if isinstance(mode, tuple):
            return values[mode[1] % len(values)]
        return {"min": values[0], "max": values[-1]}.get(mode, rng.choice(values))
    if isinstance(node, String):
        return _string_sample(node, rng, mode)
    if isinstance(node, Object):
        out = {}
        for p in node.props:
            keep = p.required or mode == "max" or (mode not in ("min", "zero") and rng.random() < 0.5)
            if keep:
                out[p.name] = _value(p.node, rng, mode)
        return out
    if isinstance(node, Array):
        k = {"min": node.min_items, "max": node.max_items}.get(mode) if isinstance(mode, str) else None
        if k is None:
            k = rng.randint(node.min_items, node.max_items)
        return [_value(node.items, rng, mode) for _ in range(k)]
    if isinstance(mode, tuple):
        i = mode[1]
        for o in node.options:
            w = max(1, _width(o))
            if i < w:
                return _value(o, rng, ("pick", i))
            i -= w
    option = {"min": node.options[0], "zero": node.options[0], "max": node.options[-1]}.get(mode)
    return _value(option if option is not None else rng.choice(node.options), rng, mode)


_SAMPLE_CHARS = "abcxyz ABC019-_.,!é😈"


def _string_sample(node: String, rng: random.Random, mode: Any) -> str:
    if node.pattern is not None:
        return _from_pattern(node.pattern, rng, mode)
    hi = node.max_length or 0
    k = {"min": node.min_length, "max": hi}.get(mode) if isinstance(mode, str) else None
    if k is None:
        k = rng.randint(node.min_length, hi)
    return "".join(rng.choice(_SAMPLE_CHARS) for _ in range(k))


def _from_pattern(pattern: str, rng: random.Random, mode: Any) -> str:
    """A string the (anchor-free) ``pattern`` matches, built by walking its parse tree: shortest
    repeats for "min", longest (at most 8 more) for "max", random otherwise."""
    sre = _sre()  # the stdlib's own regex parser
    categories = {"CATEGORY_DIGIT": "0123456789", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "abcXYZ_019"}

    def pick(choices: list[str]) -> str:
        return {"min": choices[0], "max": choices[-1]}.get(mode, rng.choice(choices)) if isinstance(mode, str) \
            else rng.choice(choices)

    def walk(items) -> str:
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "IN":
                chars: list[str] = []
                for kind, v in arg:
                    if str(kind) == "LITERAL":
                        chars.append(chr(v))
                    elif str(kind) == "RANGE":
                        chars += [chr(c) for c in range(v[0], min(v[1], v[0] + 25) + 1)]
                    elif str(kind) == "CATEGORY":
                        chars += list(categories.get(str(v), "a"))
                out.append(pick(chars or ["a"]))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                lo, hi, sub = arg
                hi = lo + 8 if hi == sre.MAXREPEAT else min(hi, lo + 8)
                n = {"min": lo, "max": hi}.get(mode) if isinstance(mode, str) else None
                out.extend(walk(sub) for _ in range(rng.randint(lo, hi) if n is None else n))
            elif name == "SUBPATTERN":
                out.append(walk(arg[-1]))
            elif name == "BRANCH":
                out.append(walk(pick(list(arg[1])) if not isinstance(mode, str) else
                                {"min": arg[1][0], "max": arg[1][-1]}.get(mode, rng.choice(arg[1]))))
            elif name == "CATEGORY":
                out.append(pick(list(categories.get(str(arg), "a"))))
        return "".join(out)

    text = walk(sre.parse(pattern))
    return text if re.fullmatch(pattern, text) else ""


def free_chars(node: Node) -> int:
    """Most characters of free string text an answer may hold (a bound on its free tokens)."""
    if isinstance(node, String):
        return node.max_length if node.max_length is not None else 64
    if isinstance(node, Object):
        return sum(free_chars(p.node) for p in node.props)
    if isinstance(node, Array):
        return node.max_items * free_chars(node.items)
    if isinstance(node, AnyOf):
        return max(free_chars(o) for o in node.options)
    return 0


# --------------------------------------------------------------------------- leaves for metrics


def leaves(node: Node, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Node]]:
    """The scalar leaves at fixed paths (through objects; not into arrays or anyOf), in schema order."""
    if isinstance(node, Object):
        return [leaf for p in node.props for leaf in leaves(p.node, path + (p.name,))]
    if isinstance(node, (Array, AnyOf)):
        return []
    return [(path, node)]


def at(value: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` (``None`` when some object on the way lacks the key)."""
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def is_numeric(node: Node) -> bool:
    return isinstance(node, (Integer, Number))


def is_categorical(node: Node) -> bool:
    return isinstance(node, (Boolean, Const, String))


__all__ = [
    "AnyOf", "Array", "Boolean", "Const", "Integer", "Node", "Number", "Object", "Prop", "String",
    "STRING_CHARS", "accepts", "at", "canonical_json", "compile_schema", "dump", "free_chars", "is_categorical",
    "is_numeric", "leaves", "normal", "samples",
]
