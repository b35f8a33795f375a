"""Plain PyTorch training loops for the demo students (seq2seq T5, causal Llama, LoRA on either).

Why not ``transformers.Trainer``: the demo must be seeded and bit-for-bit reproducible on two CPU
cores in minutes. A short explicit loop makes every source of variation visible: the data order
comes from one ``random.Random(seed)``, dropout is off, the thread count is fixed (a different
thread count changes float reductions and therefore the weights).

Batches are bucketed by length (prompts of one tool have nearly the same length), which removes
most padding; the order of the batches is shuffled every epoch.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vedit.students.corpus import Example

Kind = Literal["seq2seq", "causal"]
Optimizer = Literal["adamw", "adafactor"]
IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``epochs`` may be fractional (the run stops after that share of batches)."""

    epochs: float = 1.0
    batch_size: int = 32
    #: ``adafactor`` (scale-relative steps) for T5: its attention projections start ~50x smaller
    #: than its embeddings, and Adam's absolute steps at a useful learning rate blow them up
    optimizer: Optimizer = "adamw"
    lr: float = 2e-3
    warmup: float = 0.05
    #: learning rate at the end of the cosine decay, as a share of ``lr``
    final_lr: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    #: part of the recipe: the weights depend on it. One thread is also the fastest choice for
    #: these small matrices on a shared machine (an OpenMP thread waiting for a core stalls a step)
    threads: int = 1


@dataclass
class TrainInfo:
    """What ``train_info.json`` records about a run (and what tests check)."""

    seed: int
    steps: int
    epochs: float
    examples: int
    seconds: float
    first_loss: float
    last_loss: float
    trainable_params: int
    total_params: int
    #: loss per target token over each tenth of the run (the curve without every step);
    #: ``first_loss`` / ``last_loss`` are the same over the first / last (up to) 20 steps
    loss_curve: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Encoded:
    """Token ids of every example; ``labels`` uses -100 where no loss is taken."""

    inputs: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.inputs)


def encode(examples: Sequence[Example], tokenizer, kind: Kind) -> Encoded:
    """Tokenize once, up front.

    seq2seq: encoder input = prompt + ``</s>``, labels = target + ``</s>``.
    causal: input = ``<s>`` + prompt + target + ``</s>``, loss only on target + ``</s>`` (the
    prompt's tokens are exactly those the predictor feeds at inference, so training and
    generation see the same ids).
    """
    prompts = tokenizer([e.prompt for e in examples])["input_ids"]
    if kind == "seq2seq":
        targets = tokenizer([e.target for e in examples])["input_ids"]
        return Encoded(inputs=[list(p) for p in prompts], labels=[list(t) for t in targets])
    targets = tokenizer([e.target for e in examples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    inputs, labels = [], []
    for p, t in zip(prompts, targets):
        inputs.append(list(p) + list(t) + [eos])
        labels.append([IGNORE] * len(p) + list(t) + [eos])
    return Encoded(inputs=inputs, labels=labels)


def batch_order(data: Encoded, batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches: shuffle, bucket by (input, label) length, chunk, shuffle the chunks.

    The shuffle before the stable sort varies which examples share a batch from epoch to epoch;
    the bucketing keeps padding small.
    """
    idx = list(range(len(data)))
    rng.shuffle(idx)
    label_len = [sum(1 for t in lab if t != IGNORE) for lab in data.labels]
    idx.sort(key=lambda i: (len(data.inputs[i]) // 8, label_len[i] // 4))
    batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(data: Encoded, batch: Sequence[int], kind: Kind, pad_id: int) -> dict[str, Any]:
    """Right-padded tensors for one batch (training only; generation pads Llama on the left)."""
    import torch

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)

    inputs = [data.inputs[i] for i in batch]
    labels = [data.labels[i] for i in batch]
    input_ids = pad(inputs, pad_id)
    mask = pad([[1] * len(r) for r in inputs], 0)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": pad(labels, IGNORE)}


def token_loss(logits, labels, kind: Kind, norm: float):
    """Summed token cross-entropy divided by a constant ``norm``, not by the batch's token count.

    Why: batches are bucketed by target length, so a batch of ``{}`` targets has 2 tokens per
    example and a batch of full objects ~40. A per-batch mean would weigh the first token (the
    "use this tool?" decision) 20x more in the ``{}`` batches and teach the student to skip
    selective adjust. Dividing every batch by the same constant weighs every token alike.
    """
    import torch.nn.functional as F

    if kind == "causal":  # logits at position t predict the token at t + 1
        logits, labels = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum") / norm


def lr_factor(step: int, total: int, warmup: float, final: float) -> float:
    """Linear warm-up, then cosine decay from 1 to ``final``."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(model, data: Encoded, kind: Kind, cfg: TrainConfig, *, pad_id: int = 0,
          desc: str = "train", progress: bool = True) -> TrainInfo:
    """Train ``model`` (a transformers model or a PeftModel) in place; return what happened.

    Only parameters with ``requires_grad`` are optimised, so the same loop trains a full model
    or a LoRA adapter.
    """
    import torch
    from tqdm.auto import tqdm

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    targets = sum(sum(1 for t in lab if t != IGNORE) for lab in data.labels)
    norm = cfg.batch_size * targets / max(1, len(data))  # target tokens in an average batch
    total = max(1, math.ceil(cfg.epochs * per_epoch))
    plan: list[list[int]] = []
    while len(plan) < total:
        plan.extend(batch_order(data, cfg.batch_size, rng))
    plan = plan[:total]

    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg.warmup, cfg.final_lr))

    model.train()
    sums: list[float] = []  # summed token loss of each step
    counts: list[int] = []  # target tokens of each step
    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=not progress, mininterval=1.0,
               dynamic_ncols=True)
    ema = None
    try:
        for batch in plan:
            inputs = collate(data, batch, kind, pad_id)
            labels = inputs.pop("labels")
            if kind == "seq2seq":  # T5's decoder reads the labels shifted right
                inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=labels)
            logits = model(**inputs).logits
            loss = token_loss(logits, labels, kind, norm)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            n_tok = int((labels != IGNORE).sum())
            sums.append(float(loss.detach()) * norm)
            counts.append(n_tok)
            value = sums[-1] / max(1, n_tok)
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
        model.eval()
        torch.set_num_threads(threads_before)
    seconds = time.perf_counter() - start

    def per_token(a: int, b: int) -> float:
        return sum(sums[a:b]) / max(1, sum(counts[a:b]))

    n = len(sums)
    edge = max(1, min(20, n // 10))
    tenth = max(1, n // 10)
    curve = [per_token(i, i + tenth) for i in range(0, n, tenth)]
    return TrainInfo(
        seed=cfg.seed,
        steps=total,
        epochs=total / per_epoch,
        examples=len(data),
        seconds=round(seconds, 2),
        first_loss=per_token(0, edge),
        last_loss=per_token(n - edge, n),
        trainable_params=sum(p.numel() for p in params),
        total_params=sum(p.numel() for p in model.parameters()),
        loss_curve=[round(x, 4) for x in curve],
        config=asdict(cfg),
    )


def _optimizer(params: list, cfg: TrainConfig):
    import torch

    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=cfg.lr, scale_parameter=True, relative_step=False, warmup_init=False,
                         weight_decay=cfg.weight_decay)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )


def init_t5_head(model) -> None:
    """Rescale an untied T5 head to std ``d_model ** -0.5``.

    transformers initialises an untied T5 ``lm_head`` with std 1, so the first logits have std
    ~sqrt(d_model) (a loss near 30) and the first few hundred steps only shrink the head. With unit
    variance logits, a short run spends its steps on the task.
    """
    import torch

    if model.config.tie_word_embeddings:
        return
    with torch.no_grad():
        model.lm_head.weight.mul_(model.config.d_model ** -0.5 / max(float(model.lm_head.weight.std()), 1e-12))


def add_lora(model, targets: Sequence[str], *, r: int, alpha: int, seed: int, kind: Kind):
    """Wrap ``model`` with a fresh LoRA adapter (seeded init; base weights frozen)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(seed)
    task = TaskType.SEQ_2_SEQ_LM if kind == "seq2seq" else TaskType.CAUSAL_LM
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets), task_type=task)
    return get_peft_model(model, cfg)


__all__ = [
    "Encoded",
    "TrainConfig",
    "TrainInfo",
    "add_lora",
    "batch_order",
    "collate",
    "encode",
    "init_t5_head",
    "token_loss",
    "lr_factor",
    "train",
]
