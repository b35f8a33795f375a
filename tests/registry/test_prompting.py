"""Prompts as data: templates and the student's chat template, rendered without transformers, agree
with transformers' own ``apply_chat_template`` (the reference)."""

from __future__ import annotations

import json
import shutil

import pytest

from vedit.errors import RegistryError
from vedit.registry.prompting import PromptStyle, chat_template_of, template_file

#: Llama-2 style, with the tools listed in a system block when given (as tool-calling templates do).
CHAT = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
    "{% if tools %}<<TOOLS>>{{ tools | tojson }}<</TOOLS>> {% endif %}{{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


@pytest.fixture()
def chat_dir(tmp_path, tiny_llama_dir):
    d = tmp_path / "chat"
    shutil.copytree(tiny_llama_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def test_chat_template_renders_as_transformers_does(chat_dir, registry):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(chat_dir)
    style = chat_template_of(chat_dir)
    assert style is not None and style.kind == "chat" and style.eos_token == hf.eos_token
    prompted = registry.with_prompt(style)
    for tool in registry.tool_names:
        for intent in ("golden hour", 'a "quoted" {brace} 😈', ""):
            body = registry.prompt(tool, intent, "t5")  # vedit's prompt of the tool: the user message
            want = hf.apply_chat_template([{"role": "user", "content": body}], tools=[registry.function(tool)],
                                          add_generation_prompt=True, tokenize=False)
            assert want.startswith(hf.bos_token)
            assert prompted.prompt(tool, intent, "llama") == want[len(hf.bos_token):]  # BOS: the tokenizer's


def test_style_survives_the_snapshot(chat_dir, registry, tmp_path):
    from vedit.registry import load_registry

    prompted = registry.with_prompt(chat_template_of(chat_dir))
    prompted.save(tmp_path / "registry.json")
    again = load_registry(tmp_path / "registry.json")
    assert again.style == prompted.style
    assert again.prompts("x", "llama") == prompted.prompts("x", "llama")


def test_user_template_has_intent_and_tool(tmp_path, registry):
    f = tmp_path / "prompt.jinja"
    f.write_text("{{ tool.name }} ({{ tool.parameters.required | length }} required): {{ intent }}")
    prompted = registry.with_prompt(template_file(f))
    assert prompted.prompt("adjust", "golden hour") == "adjust (14 required): golden hour"
    assert prompted.prompt("filter", "{{ 7 * 7 }}") == "filter (2 required): {{ 7 * 7 }}"  # intents are not templates


def test_bad_templates_are_refused(tmp_path, registry):
    f = tmp_path / "bad.jinja"
    f.write_text("{% for x in %}")
    with pytest.raises(RegistryError, match="does not compile"):
        template_file(f)
    with pytest.raises(RegistryError, match="cannot read"):
        template_file(tmp_path / "missing.jinja")
    style = PromptStyle("template", "{{ raise_exception('no tools here') }}")
    with pytest.raises(RegistryError, match="no tools here"):
        registry.with_prompt(style).prompt("adjust", "x")
    # the sandbox: no access to Python internals from a template
    with pytest.raises(RegistryError):
        registry.with_prompt(PromptStyle("template", "{{ intent.__class__.__mro__[1].__subclasses__() }}")).prompt("adjust", "x")


def test_no_chat_template_means_vedit_prompts(tiny_llama_dir):
    assert chat_template_of(tiny_llama_dir) is None
