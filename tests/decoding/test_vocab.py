"""Token bytes, reachability, and grammars over other kinds of tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from decoding_cases import accepted
from vedit.decoding.compile import build_grammar, compile_grammars
from vedit.decoding.vocab import load_tokenizer, token_bytes
from vedit.errors import GrammarError
from vedit.registry import default_registry


def test_every_token_writes_what_the_tokenizer_decodes(tokenizer_dir):
    info = load_tokenizer(tokenizer_dir)
    tok, table = info.tokenizer, token_bytes(info.tokenizer)
    zero = next(i for i, b in enumerate(table) if b == b"0")
    checked = 0
    for i, b in enumerate(table):
        if b is None:
            assert tok.id_to_token(i) in ("<pad>", "</s>", "<unk>", "<s>")
            continue
        if b[0] >= 0x80 and len(b) == 1:
            continue  # a lone UTF-8 continuation byte: checked through whole characters below
        assert tok.decode([zero, i], skip_special_tokens=False) == "0" + b.decode("utf-8"), tok.id_to_token(i)
        checked += 1
    assert checked > 100


def test_spiece_space_and_byte_tokens(tokenizer_dir):
    info = load_tokenizer(tokenizer_dir)
    tok, table = info.tokenizer, token_bytes(info.tokenizer)
    spaced = [i for i in range(len(table)) if "▁" in (tok.id_to_token(i) or "")]
    assert spaced and all(b" " in table[i] and "▁".encode() not in table[i] for i in spaced)
    assert table[tok.token_to_id("<0x7B>")] == b"{"
    assert table[tok.token_to_id("<0xF0>")] == b"\xf0"


@pytest.mark.parametrize("text", ["😈 Morocco", "é à ü", "東京の夜", "tab\there", "\x00\x07 ctrl", '{"a":-1}'])
def test_encodings_concatenate_to_the_text(tokenizer_dir, text):
    info = load_tokenizer(tokenizer_dir)
    table = token_bytes(info.tokenizer)
    ids = info.tokenizer.encode(text, add_special_tokens=False).ids
    assert b"".join(table[i] for i in ids) == (" " + text).encode("utf-8")  # the normalizer prepends "▁"


def _write_model_dir(d: Path, tok: Tokenizer, eos: int, pad: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    (d / "config.json").write_text(json.dumps({"eos_token_id": eos, "pad_token_id": pad}))
    default_registry().save(d / "registry.json")
    return d


def test_tokenizer_without_braces_is_refused_with_the_fix(tmp_path):
    """Like stock FlanT5: no "{" or "}" and no byte fallback."""
    chars = set()
    for t in default_registry().tools:
        for text in accepted(t):
            chars.update(text)
    chars -= {"{", "}"}
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -3.0) for c in sorted(chars - {" "})]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Metaspace()
    d = _write_model_dir(tmp_path / "nobraces", tok, eos=1, pad=0)
    with pytest.raises(GrammarError) as err:
        compile_grammars(d)
    msg = str(err.value)
    assert "'{'" in msg and "'}'" in msg and "byte fallback" in msg and "add" in msg
    assert not (d / "grammar").exists()


def test_byte_level_bpe_tokenizer_gets_a_grammar(tmp_path, registry):
    """A GPT-2-style tokenizer: byte-level tokens, merged digits -> the 'runs' tokenization mode."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [c for t in registry.tools for c in accepted(t)] + [registry.prompts("golden hour")[0]] * 3
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    d = _write_model_dir(tmp_path / "bpe", tok, eos=1, pad=0)
    table = token_bytes(tok)
    for i, b in enumerate(table):
        if b is not None and b.isascii():
            assert tok.decode([i]) == b.decode(), tok.id_to_token(i)
    info = load_tokenizer(d)
    grammar = build_grammar(registry, info)
    assert grammar.mode == "runs" and "digit" in grammar.meta["fallback_reason"]
    for t in registry.tools:
        for text in accepted(t):
            m = grammar.matcher(t.name)
            for i in info.tokenizer.encode(text, add_special_tokens=False).ids:
                assert m.advance(i), text
            assert m.advance(info.eos_token_id) and m.is_finished()
