"""How a tool's prompt is written for an intent: vedit's prompts, a user's Jinja2 template, or the
chat template of the student's ``tokenizer_config.json``.

A student answers well only with the prompt it was trained on, so the prompt is data the export
records (in ``registry.json``) and the runtime renders the same way, with jinja2 alone (no
transformers at run time). Three kinds:

- ``vedit``: the tool's ``x-vedit-prompt`` (``{intent}`` replaced) in the family's wrapping
  (``vedit/registry/prompts.json``: T5 as is, Llama in ``[INST] ... [/INST]``);
- ``template``: a Jinja2 template given with ``--prompt-template FILE``; variables ``intent`` and
  ``tool`` (``tool.name``, ``tool.description``, ``tool.parameters``: the JSON Schema);
- ``chat``: the student's own chat template, rendered as transformers' ``apply_chat_template``
  would with ``messages=[{"role": "user", "content": <the tool's vedit prompt>}]``,
  ``tools=[<the tool's function definition>]`` and ``add_generation_prompt=True``. The user
  message carries the tool's own prompt, so a template that ignores ``tools`` still gives each tool
  its own input. ``bos_token`` renders empty: the tokenizer adds its BOS to every prompt, as it
  does for vedit's prompts.

Templates run in jinja2's sandbox, as transformers runs chat templates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from vedit.errors import RegistryError

PromptKind = Literal["vedit", "template", "chat"]


@dataclass(frozen=True)
class PromptStyle:
    """The recorded prompt style: what an export's ``registry.json`` keeps under ``"prompt"``."""

    kind: PromptKind = "vedit"
    template: str = ""
    eos_token: str = ""
    source: str = ""  # where it came from (a file, a tokenizer_config.json), for the manifest

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "template": self.template, "eos_token": self.eos_token, "source": self.source}

    @classmethod
    def from_json(cls, raw: Any) -> "PromptStyle":
        if raw is None:
            return cls()
        if not isinstance(raw, dict) or raw.get("kind") not in ("vedit", "template", "chat"):
            raise RegistryError("malformed prompt style: expected kind vedit, template or chat")
        style = cls(raw["kind"], str(raw.get("template", "")), str(raw.get("eos_token", "")), str(raw.get("source", "")))
        if style.kind != "vedit":
            compiled(style.template)  # a broken template is refused when the registry is read
        return style


@lru_cache(maxsize=16)
def compiled(template: str):
    """The template compiled in jinja2's sandbox (as transformers compiles chat templates)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except TemplateError as exc:
        raise RegistryError(f"the prompt template does not compile: {exc}") from None


def render(style: PromptStyle, *, intent: str, body: str, tool: dict[str, Any], function: dict[str, Any]) -> str:
    """The model input of one tool for ``intent`` (``body``: the tool's vedit prompt for it)."""
    from jinja2 import TemplateError

    try:
        if style.kind == "template":
            return compiled(style.template).render(intent=intent, tool=tool)
        return compiled(style.template).render(
            messages=[{"role": "user", "content": body}], tools=[function], add_generation_prompt=True,
            bos_token="", eos_token=style.eos_token)
    except TemplateError as exc:
        raise RegistryError(f"the prompt template failed for tool {tool['name']!r}: {exc}") from None


def template_file(path: str | Path) -> PromptStyle:
    """A ``--prompt-template FILE`` (Jinja2 with ``intent`` and ``tool``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"{p}: cannot read the prompt template ({exc.strerror})") from None
    compiled(text)
    return PromptStyle("template", text, source=str(p))


def chat_template_of(model_dir: str | Path) -> PromptStyle | None:
    """The chat template in a student's ``tokenizer_config.json`` (or ``chat_template.jinja``), if any."""
    d = Path(model_dir)
    cfg: dict[str, Any] = {}
    try:
        cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    template = cfg.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    source = str(d / "tokenizer_config.json")
    if not template and (d / "chat_template.jinja").is_file():
        template, source = (d / "chat_template.jinja").read_text(encoding="utf-8"), str(d / "chat_template.jinja")
    if not isinstance(template, str) or not template.strip():
        return None
    eos = cfg.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    compiled(template)
    return PromptStyle("chat", template, eos_token=eos if isinstance(eos, str) else "", source=source)


__all__ = ["PromptKind", "PromptStyle", "chat_template_of", "compiled", "render", "template_file"]
