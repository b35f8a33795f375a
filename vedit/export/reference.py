"""PyTorch reference inputs and logits, shared by the merge check and the export validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A short piece of tool JSON whose first tokens feed the decoders in the checks (multi-token calls).
PROBE_TEXT = '{"name": "none", "intensity": 0}'


@dataclass
class Batch:
    """Tokenised prompts: ``input_ids`` / ``attention_mask`` as int64 numpy arrays."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    def torch(self):
        import torch

        return torch.from_numpy(self.input_ids), torch.from_numpy(self.attention_mask)


def ensure_pad_token(tokenizer) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token


def encode(tokenizer, prompts: list[str], family: str) -> Batch:
    """Right padding for T5 (encoder mask), left padding for Llama (generation appends on the right)."""
    ensure_pad_token(tokenizer)
    enc = tokenizer(prompts, padding=True, padding_side="left" if family == "llama" else "right",
                    return_tensors="np")
    return Batch(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64))


def probe_tokens(tokenizer, k: int) -> list[int]:
    """``k`` token ids from :data:`PROBE_TEXT` (no special tokens), padded with small ids if short."""
    ids = list(tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"])[:k]
    filler = 4
    while len(ids) < k:
        ids.append(filler)
        filler += 1
    return ids


def llama_position_ids(attention_mask: np.ndarray, past: int = 0) -> np.ndarray:
    """Positions as HF computes them for left-padded rows (pads get position 1, ignored anyway)."""
    pos = attention_mask.cumsum(-1) - 1
    pos = np.where(attention_mask == 0, 1, pos)
    return pos[:, past:].astype(np.int64)


def forward_logits(model, tokenizer, batch: Batch, family: str, n_probe: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Logits of one forward pass and the (rows, positions) mask where they are meaningful.

    T5: the decoder sees ``[start] + probe`` for every row. Llama: the prompt itself (pads excluded).
    """
    import torch

    ids, mask = batch.torch()
    with torch.no_grad():
        if family == "t5":
            start = model.config.decoder_start_token_id
            dec = torch.tensor([[start] + probe_tokens(tokenizer, n_probe)] * ids.shape[0])
            logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
            valid = np.ones(logits.shape[:2], dtype=bool)
        else:
            pos = torch.from_numpy(llama_position_ids(batch.attention_mask))
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            valid = batch.attention_mask.astype(bool)
    return logits.float().numpy(), valid
