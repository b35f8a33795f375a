"""Typed view of a tools file: OpenAI-style function definitions plus vedit's few extensions.

A tools file is a JSON list of ``{"type": "function", "function": {"name", "description",
"parameters": <JSON Schema>}}`` (the format chat templates take as ``tools=``). vedit reads three
optional extension keys inside ``function``:

- ``x-vedit-unused``: the answer the student writes when the tool is not needed (the paper's
  ``{}`` and ``{"name": "none", ...}``). When ``parameters`` does not admit it, it is an extra
  alternative of the tool's output language.
- ``x-vedit-idle``: a JSON Schema of the answers that count as "tool not used" for the metrics
  (e.g. every slider 0); by default only the ``x-vedit-unused`` answer.
- ``x-vedit-prompt``: vedit's own prompt for the tool (``{intent}`` is replaced), used when no
  prompt template is given (see :mod:`vedit.registry.prompting`).

The registry is data so that an export directory carries an exact snapshot of it and serving
reads that snapshot, never whatever the installed package says. Nothing below knows a tool's
layout: every derived view (slots, canonical text, grammar, metrics) walks the schema's node tree
(:mod:`vedit.registry.subset`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from vedit.errors import RegistryError, SchemaSubsetError
from vedit.registry import subset
from vedit.registry.prompting import PromptStyle, render
from vedit.registry.subset import Node

Family = Literal["t5", "llama"]
FORMAT_VERSION = 2
UNUSED_KEY, IDLE_KEY, PROMPT_KEY = "x-vedit-unused", "x-vedit-idle", "x-vedit-prompt"
#: vedit's prompt when a tool has no ``x-vedit-prompt``.
DEFAULT_PROMPT = "{description}\nRequest: {intent}"


@dataclass(frozen=True)
class Param:
    """A numeric leaf of a tool's answer: its path and inclusive range (in the leaf's own units)."""

    path: tuple[str, ...]
    min: float
    max: float

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""


@dataclass(frozen=True)
class Tool:
    """One tool: its function definition, read into the node tree of its answers."""

    name: str
    description: str
    parameters: Node
    prompt: str
    unused_text: str | None = None
    schema_text: str = field(default="{}", repr=False)
    idle_text: str | None = field(default=None, repr=False)

    @cached_property
    def language(self) -> Node:
        """The node of every answer the grammar admits: the parameters, or the unused form beside them."""
        if self.unused_text is None or subset.accepts(self.parameters, json.loads(self.unused_text)):
            return self.parameters
        return subset.AnyOf((subset.Const((self.unused_text,)), self.parameters))

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the tool's parameters, as the file wrote it."""
        return json.loads(self.schema_text)

    @property
    def unused(self) -> Any:
        """The "not used" answer (``None`` when the file gives none)."""
        return None if self.unused_text is None else json.loads(self.unused_text)

    @cached_property
    def slots(self) -> tuple[tuple[str, ...], ...]:
        """Paths of the numeric leaves in schema order (the order of the metric vectors)."""
        return tuple(p for p, n in subset.leaves(self.parameters) if subset.is_numeric(n))

    @cached_property
    def slot_params(self) -> tuple[Param, ...]:
        """The range of each slot, aligned with :attr:`slots`."""
        out = []
        for path, n in subset.leaves(self.parameters):
            if isinstance(n, subset.Integer):
                out.append(Param(path, n.lo, n.hi))
            elif isinstance(n, subset.Number):
                out.append(Param(path, n.lo / 10**n.places, n.hi / 10**n.places))
        return tuple(out)

    @cached_property
    def categories(self) -> tuple[tuple[str, ...], ...]:
        """Paths of the categorical leaves (enums, booleans, strings) in schema order."""
        return tuple(p for p, n in subset.leaves(self.parameters) if subset.is_categorical(n))

    def leaf(self, path: tuple[str, ...]) -> Node:
        return dict(subset.leaves(self.parameters))[tuple(path)]

    def choices(self, path: tuple[str, ...]) -> tuple[Any, ...]:
        """The values an enum leaf may take (e.g. the presets of a LUT tool)."""
        node = self.leaf(path)
        if not isinstance(node, subset.Const):
            raise RegistryError(f"{self.name}: {'/'.join(path)} is not an enum")
        return node.values

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@dataclass(frozen=True)
class Registry:
    tools: tuple[Tool, ...]
    chat_templates: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False, default_factory=dict)
    #: The tools file this registry was read from (an export copies it verbatim), if any.
    source: Path | None = field(default=None, repr=False, compare=False, hash=False)
    #: How prompts are written (vedit's, a Jinja2 template, the student's chat template).
    style: PromptStyle = field(default_factory=PromptStyle, repr=False, compare=False, hash=False)

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    @property
    def functions(self) -> list[dict[str, Any]]:
        """The tools file itself (OpenAI-style function definitions)."""
        return self.raw["tools"]

    def tool(self, name: str) -> Tool:
        for t in self.tools:
            if t.name == name:
                return t
        raise RegistryError(f"unknown tool {name!r}; known tools: {', '.join(self.tool_names)}")

    def function(self, tool: str) -> dict[str, Any]:
        """The tool's function definition as the file gives it, without vedit's extensions."""
        i = self.tool_names.index(self.tool(tool).name)
        entry = self.functions[i]
        fn = {k: v for k, v in entry["function"].items() if not k.startswith("x-vedit")}
        return {**entry, "function": fn}

    def with_prompt(self, style: PromptStyle) -> "Registry":
        """The same tools, prompted in ``style`` (recorded in the snapshot an export writes)."""
        return dataclasses.replace(self, style=style, raw={**self.raw, "prompt": style.to_json()})

    def prompt(self, tool: str, intent: str, family: Family = "t5") -> str:
        """The model input of one tool for ``intent`` (see :mod:`vedit.registry.prompting`)."""
        t = self.tool(tool)
        body = t.prompt.replace("{description}", t.description).replace("{name}", t.name).replace("{intent}", intent)
        if self.style.kind != "vedit":
            return render(self.style, intent=intent, body=body, function=self.function(tool),
                          tool={"name": t.name, "description": t.description, "parameters": t.schema})
        try:
            template = self.chat_templates[family]
        except KeyError:
            raise RegistryError(
                f"no chat template for family {family!r}; known: {', '.join(self.chat_templates)}"
            ) from None
        return template.replace("{prompt}", body)

    def prompts(self, intent: str, family: Family = "t5") -> list[str]:
        """The prompts of all tools for one intent, in registry order (one batch per request)."""
        return [self.prompt(t.name, intent, family) for t in self.tools]

    def to_json(self) -> str:
        return json.dumps(self.raw, indent=2, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def save_tools(self, path: str | Path) -> None:
        """Write the tools file: the source file's bytes when there is one, else the functions."""
        if self.source is not None and isinstance(self.raw.get("tools"), list) and self._source_is_list():
            Path(path).write_bytes(self.source.read_bytes())
        else:
            Path(path).write_text(json.dumps(self.functions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def _source_is_list(self) -> bool:
        try:
            return json.loads(self.source.read_text(encoding="utf-8")) == self.functions  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False


def _tool(i: int, entry: Any) -> Tool:
    where = f"tools[{i}]"
    if not isinstance(entry, dict) or entry.get("type") != "function" or not isinstance(entry.get("function"), dict):
        raise RegistryError(f'{where}: expected {{"type": "function", "function": {{...}}}}')
    fn = entry["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise RegistryError(f"{where}: function.name must be a non-empty string")
    where = f"tool {name!r}"
    if "parameters" not in fn:
        raise RegistryError(f"{where}: function.parameters (a JSON Schema) is missing")
    unknown = sorted(k for k in fn if k.startswith("x-vedit") and k not in (UNUSED_KEY, IDLE_KEY, PROMPT_KEY))
    if unknown:
        raise RegistryError(f"{where}: unknown extension {unknown[0]!r} (known: {UNUSED_KEY}, {IDLE_KEY}, {PROMPT_KEY})")
    try:
        node = subset.compile_schema(fn["parameters"], path=f"{name}/parameters")
        if IDLE_KEY in fn:
            import jsonschema

            jsonschema.Draft202012Validator.check_schema(fn[IDLE_KEY])
    except SchemaSubsetError:
        raise
    except Exception as exc:  # jsonschema's SchemaError
        raise RegistryError(f"{where}: {IDLE_KEY} is not a valid JSON Schema: {getattr(exc, 'message', exc)}") from None
    prompt = fn.get(PROMPT_KEY, DEFAULT_PROMPT)
    if not isinstance(prompt, str):
        raise RegistryError(f"{where}: {PROMPT_KEY} must be a string")
    return Tool(
        name=name,
        description=str(fn.get("description", "")),
        parameters=node,
        prompt=prompt,
        unused_text=subset.canonical_json(fn[UNUSED_KEY]) if UNUSED_KEY in fn else None,
        schema_text=json.dumps(fn["parameters"], ensure_ascii=False),
        idle_text=json.dumps(fn[IDLE_KEY], ensure_ascii=False) if IDLE_KEY in fn else None,
    )


def registry_from_dict(raw: Any, chat_templates: dict[str, str] | None = None) -> Registry:
    """Build a registry from a tools file (a list) or a registry snapshot (``{"version", "tools",
    "chat_templates"}``, e.g. the one an export or a Triton config carries)."""
    if isinstance(raw, list):
        raw = {"version": FORMAT_VERSION, "tools": raw, "chat_templates": chat_templates or default_chat_templates()}
    if not isinstance(raw, dict) or not isinstance(raw.get("tools"), list):
        raise RegistryError("malformed tool registry: expected a JSON list of function definitions")
    if raw.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise RegistryError(f"registry format {raw.get('version')} is not {FORMAT_VERSION}: re-export with this vedit")
    tools = tuple(_tool(i, e) for i, e in enumerate(raw["tools"]))
    if not tools:
        raise RegistryError("the tools file lists no tools")
    names = [t.name for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RegistryError(f"tool {dupes[0]!r} is defined twice")
    templates = dict(raw.get("chat_templates") or chat_templates or default_chat_templates())
    return Registry(tools=tools, chat_templates=templates, raw={**raw, "chat_templates": templates},
                    style=PromptStyle.from_json(raw.get("prompt")))


def load_registry(path: str | Path) -> Registry:
    """Load a tools file or a registry snapshot (e.g. the one stored in an export directory)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{p}: tools file not found") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        registry = registry_from_dict(raw)
    except RegistryError as exc:  # name the file, keep the specific type (SchemaSubsetError)
        exc.args = (f"{p}: {exc}",)
        raise
    return dataclasses.replace(registry, source=p.resolve())


def default_chat_templates() -> dict[str, str]:
    """vedit's per-family wrapping of a prompt (``vedit/registry/prompts.json``)."""
    return json.loads(resources.files("vedit.registry").joinpath("prompts.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The paper's three tools, shipped with the package (``vedit/registry/tools.json``)."""
    text = resources.files("vedit.registry").joinpath("tools.json").read_text(encoding="utf-8")
    return registry_from_dict(json.loads(text))
