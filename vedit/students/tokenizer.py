"""A lossless SentencePiece tokenizer for the locally built students.

Why hand-built: the stock T5 vocabulary cannot write ``{`` or ``}``, and the fast T5 converter
silently drops byte fallback. This recipe (unigram, byte fallback, identity normalization, digits
split) round-trips JSON, whitespace and emoji exactly, so the grammar can reach every character.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Literal

import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, normalizers, processors

SPECIALS = {"pad": (0, "<pad>"), "eos": (1, "</s>"), "unk": (2, "<unk>"), "bos": (3, "<s>")}


def train_sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    """Train a unigram model on ``texts`` and return the serialized model proto."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        pad_id=SPECIALS["pad"][0],
        eos_id=SPECIALS["eos"][0],
        unk_id=SPECIALS["unk"][0],
        bos_id=SPECIALS["bos"][0],
        pad_piece=SPECIALS["pad"][1],
        eos_piece=SPECIALS["eos"][1],
        unk_piece=SPECIALS["unk"][1],
        bos_piece=SPECIALS["bos"][1],
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    return buf.getvalue()


def _fast_tokenizer(sp_model: bytes, family: Literal["t5", "llama"]) -> Tokenizer:
    sp = spm.SentencePieceProcessor(model_proto=sp_model)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=SPECIALS["unk"][0], byte_fallback=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    eos, bos = SPECIALS["eos"], SPECIALS["bos"]
    if family == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos[1]}", special_tokens=[(eos[1], eos[0])]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos[1]} $A", special_tokens=[(bos[1], bos[0])]
        )
    return tok


def build_hf_tokenizer(sp_model: bytes, family: Literal["t5", "llama"]):
    """Wrap the trained model as a transformers fast tokenizer for ``family``."""
    from transformers import PreTrainedTokenizerFast, T5TokenizerFast

    tok = _fast_tokenizer(sp_model, family)
    names = {k: v[1] for k, v in SPECIALS.items()}
    if family == "t5":
        return T5TokenizerFast(
            tokenizer_object=tok,
            pad_token=names["pad"],
            eos_token=names["eos"],
            unk_token=names["unk"],
            extra_ids=0,
            additional_special_tokens=[],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=names["pad"],
        eos_token=names["eos"],
        unk_token=names["unk"],
        bos_token=names["bos"],
        padding_side="left",
    )


def save_tokenizer(sp_model: bytes, family: Literal["t5", "llama"], out_dir: str | Path):
    """Save the HF tokenizer files (and the raw ``spiece.model`` for reference) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_hf_tokenizer(sp_model, family)
    tok.save_pretrained(str(out))
    (out / "spiece.model").write_bytes(sp_model)
    return tok
