"""The PyTorch rows run at PyTorch's fastest setting on the host, with the same answers as its default."""

from __future__ import annotations

import pytest

from vedit.bench import torch_settings
from vedit.bench.torch_settings import Switcher, best_setting
from vedit.decoding import load_grammar
from vedit.errors import SettingError
from vedit.reference import ReferencePredictor
from vedit.registry import load_registry
from vedit.workload.fastest import fastest


def _loaded(student, export, adapter=None):
    ref = ReferencePredictor.load(student, adapter, threads=1, registry=load_registry(export / "registry.json"))
    grammar = load_grammar(export)
    rows = ref.prompt_builder(grammar.max_tokens()).build("golden hour").ids
    return ref, grammar, rows


def _state(ref) -> tuple[str, str]:
    """The model's actual attention and the class of its linear layers (independent of the switcher)."""
    import torch
    import torch.utils.mkldnn

    base = ref.model.get_base_model() if hasattr(ref.model, "get_base_model") else ref.model
    kinds = {torch.nn.Linear: "Linear", torch.utils.mkldnn.MkldnnLinear: "MkldnnLinear"}
    layers = {kinds[type(m)] for m in base.modules() if type(m) in kinds}
    (layer,) = layers  # never a mix
    return base.config._attn_implementation, layer


def test_the_fastest_measured_setting_wins_and_every_setting_is_named(tiny_llama_dir, tiny_llama_lora_dir, llama_fp32):
    """A Llama student with its LoRA adapter (a PEFT wrapper): four settings; the timing is injected
    (ms per setting, read from the model's real state while it runs), so the winner is known."""
    ref, grammar, rows = _loaded(tiny_llama_dir, llama_fp32.out_dir, tiny_llama_lora_dir)
    expected, _ = ref.generate(rows, tools=ref.registry.tool_names, grammar=grammar, max_steps=6)
    ms = {("sdpa", "Linear"): 50.0, ("eager", "Linear"): 40.0, ("sdpa", "MkldnnLinear"): 30.0,
          ("eager", "MkldnnLinear"): 45.0}
    seen = []

    def clock(run):
        out = run()
        seen.append(_state(ref))
        return ms[seen[-1]], out

    setting, choice = best_setting(ref, rows, ref.registry.tool_names, grammar, trials=2, steps=6, clock=clock)
    assert setting.name == "sdpa attention + oneDNN linear" == choice.name
    assert _state(ref) == ("sdpa", "MkldnnLinear")  # left in the chosen setting
    assert sorted(set(seen)) == sorted(ms) and len(seen) == 4 * 3  # a warm-up and 2 trials each
    line = torch_settings.describe(choice, steps=6)
    assert line.startswith("setting sdpa attention + oneDNN linear, the fastest here of ")
    for (attention, layer), t in ms.items():
        assert f"{attention} attention + {'oneDNN' if layer == 'MkldnnLinear' else 'MKL'} linear {t:.1f} ms" in line
    assert "median of 2" in line and "6 decoder steps" in line
    # the chosen setting answers as the default did (real oneDNN kernels now)
    assert ref.generate(rows, tools=ref.registry.tool_names, grammar=grammar, max_steps=6)[0] == expected


def test_a_setting_whose_answers_differ_is_dropped(tiny_t5_dir, t5_fp32):
    """T5 has one attention, so its settings are the two linear layouts; oneDNN here answers one
    token differently (injected) and is dropped however fast, with the reason in the report line."""
    ref, grammar, rows = _loaded(tiny_t5_dir, t5_fp32.out_dir)

    def clock(run):
        out = run()
        if _state(ref)[1] == "MkldnnLinear":
            return 1.0, [row[:-1] + [row[-1] + 1] for row in out]
        return 100.0, out

    setting, choice = best_setting(ref, rows, ref.registry.tool_names, grammar, trials=1, steps=5, clock=clock)
    assert setting.name == "eager attention + MKL linear" and _state(ref) == ("eager", "Linear")
    assert list(choice.ms) == ["eager attention + MKL linear"]
    assert torch_settings.describe(choice, steps=5).endswith(
        "passed over: eager attention + oneDNN linear (its outputs differ from eager attention + MKL linear's)")


def test_fastest_passes_over_failures_and_differences_and_says_when_none_is_left():
    closed = []

    def trial(name):
        if name == "broken":
            raise RuntimeError("no kernel\nmore")
        return {"slow": 9.0, "wrong": 1.0, "fast": 3.0}[name], ("wrong answer" if name == "wrong" else "answer")

    choice = fastest(["slow", "broken", "wrong", "fast"], str, trial, trials=2, close=closed.append,
                     errors=(RuntimeError,))
    assert (choice.name, choice.value, choice.ms) == ("fast", "fast", {"slow": 9.0, "fast": 3.0})
    assert sorted(closed) == ["broken", "slow", "wrong"]
    assert choice.dropped == {"broken": "failed: RuntimeError: no kernel", "wrong": "its outputs differ from slow's"}
    assert choice.describe("kernel") == "kernel fast, the faster here of slow 9.0 ms, fast 3.0 ms per request (median of 2)"
    lone = fastest(["slow", "broken"], str, trial, trials=1, errors=(RuntimeError,))
    assert lone.describe("kernel") == "kernel slow, the only one that ran here: slow 9.0 ms per request (median of 1)"
    with pytest.raises(SettingError, match="no option could run: broken: failed: RuntimeError: no kernel"):
        fastest(["broken"], str, trial, errors=(RuntimeError,))


def test_the_pytorch_rows_name_their_setting_and_answer_as_transformers_defaults(tiny_t5_dir, t5_fp32):
    """Real timing, real kernels: the rows' info names the setting chosen and both tried, and the
    constrained row answers exactly as a predictor left at transformers' defaults."""
    from vedit.bench.latency import pytorch_paths

    export = t5_fp32.out_dir
    tuned = pytorch_paths(tiny_t5_dir, None, export, threads=1, trials=1)
    plain = pytorch_paths(tiny_t5_dir, None, export, threads=1, trials=0)
    for row in ("pytorch", "pytorch+grammar"):
        info = tuned[row].info
        assert "eager attention + MKL linear " in info and "eager attention + oneDNN linear " in info, info
        assert f"per trial request (first intent, grammar, {torch_settings.TRIAL_STEPS} decoder steps) (median of 1)" in info
        assert "no settings trial" in plain[row].info
    for intent in ("golden hour", "cold tone"):
        assert tuned["pytorch+grammar"](intent).texts == plain["pytorch+grammar"](intent).texts


def test_a_model_with_one_setting_is_not_tried(tiny_t5_dir, t5_fp32, monkeypatch):
    ref, grammar, rows = _loaded(tiny_t5_dir, t5_fp32.out_dir)
    monkeypatch.setattr("torch.backends.mkldnn.is_available", lambda: False)
    assert [s.name for s in Switcher(ref.model).settings()] == ["eager attention + MKL linear"]

    def clock(run):
        raise AssertionError("no trial expected")

    setting, choice = best_setting(ref, rows, ref.registry.tool_names, grammar, clock=clock)
    assert torch_settings.describe(choice) == "eager attention + MKL linear (the only setting that applies)"
