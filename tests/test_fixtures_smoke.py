def test_tiny_fixtures_load(tiny_t5_dir, tiny_llama_dir, tiny_llama_lora_dir, tiny_t5_lora_dir):
    from transformers import AutoTokenizer, LlamaForCausalLM, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tiny_t5_dir)
    assert tok.decode(tok('{"a":1}')["input_ids"], skip_special_tokens=True) == '{"a":1}'
    assert T5ForConditionalGeneration.from_pretrained(tiny_t5_dir).config.d_model == 64
    assert LlamaForCausalLM.from_pretrained(tiny_llama_dir).config.hidden_size == 64
    assert (tiny_llama_lora_dir / "adapter_config.json").exists()
    assert (tiny_t5_lora_dir / "adapter_model.safetensors").exists()
