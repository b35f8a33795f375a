"""A ``tokenizers.Tokenizer`` from a SentencePiece model file (``spiece.model`` / ``tokenizer.model``).

Why not transformers' converter: it parses the model with ``sentencepiece``'s bundled protobuf
gencode, which refuses the pinned protobuf runtime ("Detected incompatible Protobuf
Gencode/Runtime versions"), so a T5 folder with only ``spiece.model`` or a Llama folder with only
``tokenizer.model`` could not be loaded. The model proto is read here with transformers' own
gencode (which this runtime accepts) and rebuilt with the ``tokenizers`` library: Unigram models
as T5 does (precompiled normalization, ``Metaspace``), BPE models as Llama-2 does (``▁`` prefix,
byte fallback). Tests check the result encodes like ``sentencepiece`` itself.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from vedit.errors import ModelDirError

#: The SentencePiece model files a model folder may carry, in the order they are looked for.
SPM_FILES = ("spiece.model", "tokenizer.model")
_NORMAL, _UNKNOWN, _CONTROL, _USER, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def spm_file(folder: Path) -> Path | None:
    """The folder's SentencePiece model file, if it has one."""
    return next((folder / n for n in SPM_FILES if (folder / n).is_file()), None)


def _proto(data: bytes):
    try:
        from transformers.utils import sentencepiece_model_pb2_new as pb
    except Exception as exc:  # noqa: BLE001 (any import failure: say what to do)
        raise ModelDirError(f"cannot read SentencePiece models ({exc}); save the tokenizer as tokenizer.json "
                            "with a fast tokenizer's save_pretrained()") from None
    model = pb.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001
        raise ModelDirError(f"not a SentencePiece model ({exc})") from None
    if not model.pieces:
        raise ModelDirError("not a SentencePiece model (no pieces)")
    return model


def tokenizer_from_spm(data: bytes) -> Tokenizer:
    """Rebuild the SentencePiece model ``data`` as a fast tokenizer (control/unknown pieces are special)."""
    m = _proto(data)
    pieces = [(p.piece, p.score, p.type) for p in m.pieces]
    unk = next((i for i, p in enumerate(pieces) if p[2] == _UNKNOWN), 0)
    byte_fallback = any(p[2] == _BYTE for p in pieces)
    spec = m.normalizer_spec
    if m.trainer_spec.model_type == 1:  # UNIGRAM
        tok = Tokenizer(models.Unigram([(p, s) for p, s, _ in pieces], unk_id=unk, byte_fallback=byte_fallback))
        norm = []
        if spec.precompiled_charsmap:
            norm.append(normalizers.Precompiled(spec.precompiled_charsmap))
        norm += _squeeze(spec)
        tok.normalizer = normalizers.Sequence(norm) if norm else None
        scheme = "always" if spec.add_dummy_prefix else "never"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
        tok.decoder = decoders.Sequence(
            ([decoders.ByteFallback()] if byte_fallback else []) + [decoders.Metaspace(replacement="▁", prepend_scheme=scheme)]
        )
    elif m.trainer_spec.model_type == 2:  # BPE
        vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
        tok = Tokenizer(models.BPE(vocab, _merges(pieces, vocab), unk_token=pieces[unk][0], fuse_unk=True,
                                   byte_fallback=byte_fallback))
        norm = _squeeze(spec) + ([normalizers.Prepend("▁")] if spec.add_dummy_prefix else [])
        tok.normalizer = normalizers.Sequence(norm + [normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
            + ([decoders.Strip(" ", 1, 0)] if spec.add_dummy_prefix else [])
        )
    else:
        raise ModelDirError(f"SentencePiece model type {m.trainer_spec.model_type} is not supported (Unigram or BPE)")
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p, _, t in pieces
                            if t in (_CONTROL, _UNKNOWN)])
    tok.add_tokens([AddedToken(p, special=False, normalized=False) for p, _, t in pieces if t == _USER])
    return tok


def _squeeze(spec) -> list:
    """SentencePiece's ``remove_extra_whitespaces``: strip both ends, one space between words."""
    if not spec.remove_extra_whitespaces:
        return []
    return [normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(" {2,}"), " ")]


def _merges(pieces, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges recovered from the pieces: every split of a piece into two pieces, by the
    merged piece's rank, then its parts' ranks (how SentencePiece's BPE orders them)."""
    found = []
    for piece, (_, _, kind) in zip(vocab, pieces):
        if kind != _NORMAL:
            continue
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                found.append((vocab[piece], vocab[a], vocab[b], a, b))
    return [(a, b) for *_, a, b in sorted(found)]


def special_tokens(data: bytes) -> dict[str, str]:
    """The usual names (``unk``, ``eos``, ``bos``, ``pad``) of the model's special pieces that exist."""
    m = _proto(data)
    names = {p.piece for p in m.pieces}
    out = {"unk": next(p.piece for p in m.pieces if p.type == _UNKNOWN)} if any(p.type == _UNKNOWN for p in m.pieces) else {}
    for key, piece in (("eos", "</s>"), ("bos", "<s>"), ("pad", "<pad>")):
        if piece in names:
            out[key] = piece
    return out


__all__ = ["SPM_FILES", "spm_file", "special_tokens", "tokenizer_from_spm"]
