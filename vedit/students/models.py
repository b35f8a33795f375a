"""Student architectures, built from a config (never downloaded).

Sizes are data: ``tiny`` for tests, ``demo`` for the trained demo students, ``base`` for the
latency models of a real size (random weights; only their shape matters): flan-t5-base for T5,
TinyLlama-1.1B for Llama.
"""

from __future__ import annotations

from typing import Literal

T5_SIZES: dict[str, dict] = {
    "tiny": dict(d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2),
    # trained by `vedit demo build`: 2+2 layers of 128 learn the synthetic task (overall ~0.8) in
    # minutes on two cores; 256 wide with 3+3 layers costs ~4x the time per step
    "demo": dict(d_model=128, d_ff=256, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2),
    # flan-t5-base: d_model 768, d_ff 2048, 12+12 layers, gated-gelu, untied head
    "base": dict(d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
}

LLAMA_SIZES: dict[str, dict] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    # trained by `vedit demo build` (briefly: the Llama demo only has to be real enough to merge)
    "demo": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2),
    # TinyLlama-1.1B: hidden 2048, 22 layers, intermediate 5632, 32 heads, 4 KV heads (vocab 32000
    # is the caller's), 2048 positions
    "base": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, max_position_embeddings=2048),
}

#: LoRA targets for the Llama demo student (attention and MLP projections).
LLAMA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
T5_LORA_TARGETS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")


def new_t5(vocab_size: int, size: Literal["tiny", "demo", "base"] = "demo", *, seed: int = 0):
    """A randomly initialised FlanT5-style model (gated-gelu, untied embeddings)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=vocab_size,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        **T5_SIZES[size],
    )
    return T5ForConditionalGeneration(cfg).eval()


def new_llama(vocab_size: int, size: Literal["tiny", "demo", "base"] = "demo", *, seed: int = 0):
    """A randomly initialised Llama-architecture decoder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    shape = {"max_position_embeddings": 1024, **LLAMA_SIZES[size]}
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=3,
        tie_word_embeddings=False,
        **shape,
    )
    return LlamaForCausalLM(cfg).eval()
