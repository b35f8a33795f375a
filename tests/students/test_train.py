"""The training loop: batching, schedule, masking, and that a short run actually learns."""

from __future__ import annotations

import random

import pytest

from vedit.students.corpus import Example, examples
from vedit.students.train import IGNORE, Encoded, TrainConfig, add_lora, batch_order, encode, lr_factor, train


def _examples(registry, n: int = 8) -> list[Example]:
    from vedit.data.rows import TruthRow
    from vedit.registry import ToolCall

    adjust, selective, filt = registry.tools
    presets = filt.choices(("name",))
    rows = []
    for i in range(n):
        v = 10 * (i + 1)
        rows.append(TruthRow(f"look number {i}", 1, {
            "adjust": ToolCall.of(adjust, {p.name: v if j == 0 else 0 for j, p in enumerate(adjust.slot_params)}),
            "selective_adjust": ToolCall.unused(selective),
            "filter": ToolCall.of(filt, {"name": presets[i % len(presets)], "intensity": v}),
        }))
    return examples(rows, registry, "t5")


def test_examples_are_prompt_and_canonical_target(registry):
    ex = _examples(registry, 2)
    assert [e.tool for e in ex] == list(registry.tool_names) * 2
    assert ex[0].prompt == registry.prompt("adjust", "look number 0", "t5")
    assert ex[1].target == "{}"
    assert ex[2].target == '{"name":"lovely_day","intensity":10}'.replace("lovely_day", registry.tool("filter").choices(("name",))[0])


def test_batch_order_covers_every_example_once_and_groups_lengths():
    rng = random.Random(0)
    lengths = [rng.choice([20, 21, 90, 91, 200]) for _ in range(103)]
    data = Encoded(inputs=[[5] * n for n in lengths], labels=[[7] * 3 for _ in lengths])
    batches = batch_order(data, 10, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(103))
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(s > 2 for s in spreads) <= 4  # only batches straddling two buckets mix lengths
    assert batch_order(data, 10, random.Random(1)) == batches  # seeded


def test_lr_schedule():
    f = [lr_factor(s, 100, 0.1, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert max(f) == pytest.approx(1.0) and f[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))


def test_causal_encoding_masks_the_prompt(tiny_llama_dir, registry):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ex = [Example("filter", registry.prompt("filter", "hi", "llama"), '{"name":"none","intensity":0}')]
    enc = encode(ex, tok, "causal")
    prompt = tok(ex[0].prompt)["input_ids"]
    ids, labels = enc.inputs[0], enc.labels[0]
    assert ids[: len(prompt)] == prompt and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert tok.decode(labels[len(prompt) :], skip_special_tokens=True) == ex[0].target


@pytest.mark.slow
def test_short_run_lowers_the_loss(tiny_t5_dir, registry):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tiny_t5_dir)
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir)
    data = encode(_examples(registry), tok, "seq2seq")
    info = train(model, data, "seq2seq", TrainConfig(epochs=25, batch_size=8, lr=3e-3, warmup=0.1, threads=1),
                 progress=False)
    assert info.steps == 75 and info.examples == 24
    assert info.last_loss < 0.6 * info.first_loss
    assert info.loss_curve[-1] < info.loss_curve[0]


@pytest.mark.slow
def test_lora_trains_only_the_adapter(tiny_llama_dir, registry):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from vedit.students.models import LLAMA_LORA_TARGETS

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = add_lora(model, LLAMA_LORA_TARGETS, r=4, alpha=8, seed=0, kind="causal")
    ex = [Example(e.tool, registry.prompt(e.tool, "x", "llama"), e.target) for e in _examples(registry, 4)]
    info = train(peft_model, encode(ex, tok, "causal"), "causal", TrainConfig(epochs=2, batch_size=4, threads=1),
                 progress=False)
    assert 0 < info.trainable_params < info.total_params / 5
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero; training moved it
    base = peft_model.get_base_model().state_dict()
    for name, value in before.items():
        key = next(k for k in base if k.replace("base_layer.", "") == name)
        assert torch.equal(base[key], value), name
