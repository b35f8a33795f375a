"""Shared fixtures: tiny, untrained students built from configs (seconds, no network)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from support import quick_export
from vedit.registry import ToolCall, default_registry
from vedit.data.looks import build_value


def _random_call(tool, rng: random.Random) -> ToolCall:
    """Uniform values in every slot; tools with a choice pick one uniformly, the others are
    unused one time in five."""
    if tool.categories:
        values = [rng.randint(p.min, p.max) for p in tool.slot_params]
        return ToolCall.of(tool, build_value(tool, values, rng.choice(tool.choices(tool.categories[0]))))
    if rng.random() < 0.2:
        return ToolCall.unused(tool)
    return ToolCall.of(tool, build_value(tool, [rng.randint(p.min, p.max) for p in tool.slot_params]))


@pytest.fixture(autouse=True)
def _vedit_logging_isolated():
    """Commands route vedit's logging to their own handler (clibase.show_progress); put it back
    after each test, so that caplog sees the records in the next one."""
    import logging

    yield
    logger = logging.getLogger("vedit")
    logger.propagate = True
    logger.handlers[:] = [h for h in logger.handlers if type(h).__name__ != "EchoHandler"]
    logger.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def registry():
    return default_registry()


@pytest.fixture(scope="session")
def tiny_sp_model(registry) -> bytes:
    """A small SentencePiece model trained on prompts and canonical tool JSON."""
    from vedit.students.tokenizer import train_sentencepiece

    rng = random.Random(0)
    texts = []
    for i in range(60):
        intent = rng.choice(["golden hour", "Morocco", "welding mask", "cold tone", "neon night"])
        texts.extend(registry.prompts(f"{intent} {i}"))
        texts.extend(_random_call(t, rng).dumps() for t in registry.tools)
    return train_sentencepiece(texts, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, tiny_sp_model) -> Path:
    """An untrained tiny T5 student with the project tokenizer, saved as safetensors."""
    from vedit.students.models import new_t5
    from vedit.students.tokenizer import save_tokenizer

    out = tmp_path_factory.mktemp("tiny_t5")
    tok = save_tokenizer(tiny_sp_model, "t5", out)
    new_t5(len(tok), "tiny", seed=1).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_sp_model) -> Path:
    from vedit.students.models import new_llama
    from vedit.students.tokenizer import save_tokenizer

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = save_tokenizer(tiny_sp_model, "llama", out)
    new_llama(len(tok), "tiny", seed=2).save_pretrained(out)
    return out


def _random_lora(base_dir: Path, out: Path, targets, seed: int, loader) -> Path:
    """A LoRA adapter with non-zero random B matrices, so merging changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = loader(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_lora_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    from transformers import LlamaForCausalLM

    from vedit.students.models import LLAMA_LORA_TARGETS

    return _random_lora(tiny_llama_dir, tmp_path_factory.mktemp("tiny_llama_lora"), LLAMA_LORA_TARGETS, 3,
                        LlamaForCausalLM.from_pretrained)


@pytest.fixture(scope="session")
def tiny_t5_lora_dir(tmp_path_factory, tiny_t5_dir) -> Path:
    from transformers import T5ForConditionalGeneration

    from vedit.students.models import T5_LORA_TARGETS

    return _random_lora(tiny_t5_dir, tmp_path_factory.mktemp("tiny_t5_lora"), T5_LORA_TARGETS, 4,
                        T5ForConditionalGeneration.from_pretrained)


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def t5_fp32(export_root, tiny_t5_dir):
    """ExportResult of the tiny T5 student (fp32, with compiled grammar)."""
    return quick_export(tiny_t5_dir, export_root / "t5-fp32", family="t5")


@pytest.fixture(scope="session")
def llama_fp32(export_root, tiny_llama_dir):
    return quick_export(tiny_llama_dir, export_root / "llama-fp32", family="llama")


@pytest.fixture(scope="session")
def tiny_export(t5_fp32) -> Path:
    """The tiny T5 student's fp32 export directory (with its compiled grammar)."""
    return t5_fp32.out_dir


@pytest.fixture(scope="session")
def triton_served(request, tmp_path_factory, tiny_export):
    """A running tritonserver serving the tiny export (cpu profile), one per session."""
    from triton_served import served

    return served(request, tmp_path_factory, tiny_export)
