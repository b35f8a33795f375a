"""A seeded synthetic stand-in for the paper's private teacher dataset.

It mirrors how the real data was collected (see PAPER.md) so that every stage downstream sees
data of the same shape and statistics:

1. Users ask for looks from :mod:`vedit.data.looks` in many wordings: plain ("golden hour"),
   templated ("golden hour vibes"), graded ("slightly golden hour"), combined ("Morocco but cold",
   values blended 60/40), re-cased and misspelt. Popular looks and plain wordings are requested
   more often (Zipf-like ``calls``), so the r_3 / r_5 subsets are meaningful.
2. Each request gets a teacher answer: the look's values plus a small per-look bias (the teacher's
   consistent "style" for that look, shared by all its paraphrases) plus a little per-answer
   jitter, rounded to multiples of 5 like GPT answers. Some answers are sloppier ("mild": larger
   noise) or wrong (one tool's decision flipped).
3. Every answer gets user exports (Poisson, higher for better answers and popular intents);
   answers with zero exports are dropped, and the answer with most exports becomes the ground
   truth. Popular intents therefore get cleaner labels, as in the paper's r_5 subset.

The mapping stays learnable on purpose: values are a deterministic function of the looks named in
the intent plus small noise, and the filter preset is the primary look's. Values are integers
clipped to the registry's ranges and canonical (built as :class:`~vedit.registry.ToolCall`).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vedit.data.looks import Look, LookLibrary, Target, build_value, load_looks, none_choice
from vedit.data.rows import SUBSETS, TruthRow, atomic_open, write_jsonl
from vedit.registry import Registry, Tool, ToolCall, default_registry

#: Share of intents that combine two looks ("X but Y").
COMBO_RATE = 0.25
#: Share of single-look intents worded as the bare alias (the rest use a template).
PLAIN_RATE = 0.35
MODIFIER_RATE = 0.2
TYPO_RATE = 0.07
#: Weight of the primary look when two looks are blended.
PRIMARY_WEIGHT = 0.6
#: Teacher values are multiples of this (GPT answers in round numbers).
STEP = 5
#: Answer kinds: (probability, export appeal).
ANSWER_KINDS = {"good": (0.80, 1.0), "mild": (0.14, 0.5), "wrong": (0.06, 0.2)}
#: Tail exponent of ``calls`` for the plainest, most popular intent; wordier or rarer ones decay faster.
CALLS_ALPHA = 0.7
CALLS_RARITY = 0.4
MAX_CALLS = 5000
MAX_OUTPUTS = 4


@dataclass(frozen=True)
class SynthDataset:
    train: list[TruthRow]
    test: list[TruthRow]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Request:
    """One generated intent and what it asks for."""

    text: str
    looks: tuple[int, ...]  # primary first
    scale: float
    commonness: float  # 1 for the plainest wording; smaller for wordier / rarer wordings


# ---------------------------------------------------------------- wording


def _case_variant(rng: random.Random, text: str) -> tuple[str, float]:
    r = rng.random()
    if r < 0.70:
        return text, 1.0
    if r < 0.85:
        return text[:1].upper() + text[1:], 0.8
    if r < 0.92:
        return text.title(), 0.7
    return text.upper(), 0.6


def _typo(rng: random.Random, text: str) -> str:
    """Drop, swap or double one letter of a word of 4+ letters (emoji and short words are kept)."""
    spots = [
        i
        for i in range(len(text) - 1)
        if text[i].isascii() and text[i].isalpha() and text[i + 1].isascii() and text[i + 1].isalpha()
    ]
    if len(spots) < 3:
        return text
    i = rng.choice(spots)
    op = rng.randrange(3)
    if op == 0:
        return text[:i] + text[i + 1 :]
    if op == 1:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + text[i] + text[i:]


def _alias(rng: random.Random, look: Look) -> tuple[str, float]:
    if len(look.aliases) == 1 or rng.random() < 0.5:
        return look.aliases[0], 1.0
    return rng.choice(look.aliases[1:]), 0.7


def _sample_request(
    rng: random.Random, lib: LookLibrary, weights: list[float]
) -> _Request:
    ph = lib.phrasing
    idx = range(len(lib.looks))
    a = rng.choices(idx, weights)[0]
    x, common = _alias(rng, lib.looks[a])
    scale = 1.0
    if rng.random() < MODIFIER_RATE:
        scale, words = rng.choice(ph.modifiers)
        x = f"{rng.choice(words)} {x}"
        common *= 0.6
    looks: tuple[int, ...] = (a,)
    if rng.random() < COMBO_RATE:
        b = a
        while b == a:
            b = rng.choices(idx, weights)[0]
        y, _ = _alias(rng, lib.looks[b])
        text = rng.choice(ph.combos).format(x=x, y=y)
        looks = (a, b)
        common *= 0.35
        if rng.random() < 0.3:
            text = rng.choice(ph.templates).format(x=text)
    elif rng.random() < PLAIN_RATE:
        text = x
    else:
        text = rng.choice(ph.templates).format(x=x)
        common *= 0.6 if text != x else 1.0
    text, c = _case_variant(rng, text)
    common *= c
    if rng.random() < TYPO_RATE:
        typo = _typo(rng, text)
        if typo != text:
            text, common = typo, common * 0.3
    return _Request(text=" ".join(text.split()), looks=looks, scale=scale, commonness=common)


# ---------------------------------------------------------------- values


def _blend(tool: Tool, a: Target, b: Target) -> Target:
    """Two looks in one request: the primary's preset; values mixed 60/40 when both use the tool."""
    if tool.categories:
        return a if a.used(tool) else b
    if a.used(tool) and b.used(tool):
        w = PRIMARY_WEIGHT
        return Target(tuple(w * x + (1 - w) * y for x, y in zip(a.values, b.values)))
    return a if a.used(tool) else b


def _scale(target: Target, s: float) -> Target:
    return Target(tuple(v * s for v in target.values), target.preset)


def _value_params(tool: Tool):
    return tool.slot_params


def _to_call(tool: Tool, values: list[float], preset: str | None) -> ToolCall:
    """Round to the teacher's step, clip to the registry ranges, canonical unused form."""
    ints = tuple(
        min(p.max, max(p.min, STEP * math.floor(v / STEP + 0.5)))
        for v, p in zip(values, _value_params(tool))
    )
    if tool.categories:
        return ToolCall.unused(tool) if preset == none_choice(tool) else ToolCall.of(tool, build_value(tool, ints, preset))
    return ToolCall.of(tool, build_value(tool, ints)) if any(ints) else ToolCall.unused(tool)


def _bias(seed: int, look: Look, tool: Tool) -> tuple[int, ...]:
    """The teacher's consistent offset for a look: same for every paraphrase of it."""
    rng = random.Random(f"{seed}/{look.name}/{tool.name}")
    n = len(_value_params(tool))
    return tuple(rng.choice((-STEP, 0, 0, STEP)) for _ in range(n))


def _answer(
    rng: random.Random,
    kind: str,
    tools: tuple[Tool, ...],
    targets: dict[str, Target],
    biases: dict[str, tuple[int, ...]],
    lib: LookLibrary,
) -> dict[str, ToolCall]:
    flip = rng.choice(tools) if kind == "wrong" else None
    out = {}
    for tool in tools:
        t = targets[tool.name]
        if tool is flip:
            out[tool.name] = _flipped(rng, tool, t, lib)
            continue
        values = []
        for v, b in zip(t.values, biases[tool.name]):
            if round(v) == 0:
                values.append(0.0)
                continue
            if kind == "good":
                noise = rng.choice((-STEP, STEP)) if rng.random() < 0.25 else 0
            else:
                noise = rng.choice((-3, -2, -1, 1, 2, 3)) * STEP
            values.append(v + b + noise)
        if kind == "mild" and not tool.categories and t.used(tool) and rng.random() < 0.3:
            values[rng.randrange(len(values))] += rng.choice((-2, 2)) * STEP
        out[tool.name] = _to_call(tool, values, t.preset)
    return out


def _flipped(rng: random.Random, tool: Tool, t: Target, lib: LookLibrary) -> ToolCall:
    """A wrong decision for one tool: drop it, use another look's values, or another preset."""
    if tool.categories:
        others = [p for p in tool.choices(tool.categories[0]) if p != t.preset]
        preset = rng.choice(others)
        return _to_call(tool, [50.0] * len(tool.slots), preset)
    if t.used(tool):
        return ToolCall.unused(tool)
    donors = [lk.targets[tool.name] for lk in lib.looks if lk.targets[tool.name].used(tool)]
    return _to_call(tool, list(rng.choice(donors).values), None)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _calls(rng: random.Random, commonness: float, popularity: float) -> int:
    """Zipf-like request count: P(calls >= k) = k ** -alpha, alpha larger for rarer intents."""
    rarity = -math.log(commonness * (0.3 + 0.7 * popularity))
    alpha = CALLS_ALPHA + CALLS_RARITY * rarity
    u = 1.0 - rng.random()  # (0, 1]
    return min(MAX_CALLS, int(u ** (-1.0 / alpha)))


# ---------------------------------------------------------------- dataset


def generate(
    seed: int = 0,
    n_intents: int = 9252,
    n_test: int = 1000,
    registry: Registry | None = None,
) -> SynthDataset:
    """Generate ``n_intents`` unique intents with ground truth, ``n_test`` of them held out."""
    if not 0 <= n_test < n_intents:
        raise ValueError(f"n_test must be in [0, n_intents); got n_test={n_test}, n_intents={n_intents}")
    registry = registry or default_registry()
    lib = load_looks(registry)
    tools = registry.tools
    rng = random.Random(seed)

    order = list(range(len(lib.looks)))
    rng.shuffle(order)
    rank = {look: r for r, look in enumerate(order)}
    weights = [1.0 / (rank[i] + 15) ** 0.6 for i in range(len(lib.looks))]
    popularity = [1.0 / math.sqrt(rank[i] + 1) for i in range(len(lib.looks))]
    biases: dict[tuple[int, str], tuple[int, ...]] = {}

    rows: list[TruthRow] = []
    row_looks: list[tuple[int, ...]] = []
    kinds: Counter[str] = Counter()
    seen: set[str] = set()
    dropped = outputs = 0
    attempts = 0
    while len(rows) < n_intents:
        attempts += 1
        if attempts > 50 * n_intents:
            raise ValueError(
                f"the look library cannot produce {n_intents} unique intents; use fewer"
            )
        req = _sample_request(rng, lib, weights)
        if req.text in seen:
            continue
        seen.add(req.text)
        primary = req.looks[0]
        targets = {}
        for tool in tools:
            t = lib.looks[primary].targets[tool.name]
            for other in req.looks[1:]:
                t = _blend(tool, t, lib.looks[other].targets[tool.name])
            targets[tool.name] = _scale(t, req.scale)
        bias = {}
        for tool in tools:
            key = (primary, tool.name)
            if key not in biases:
                biases[key] = _bias(seed, lib.looks[primary], tool)
            bias[tool.name] = biases[key]

        calls = max(1, _calls(rng, req.commonness, popularity[primary]))
        n_out = min(calls, MAX_OUTPUTS)
        names = list(ANSWER_KINDS)
        probs = [ANSWER_KINDS[k][0] for k in names]
        answers = []
        for _ in range(n_out):
            kind = rng.choices(names, probs)[0]
            exports = _poisson(rng, ANSWER_KINDS[kind][1] * calls / n_out)
            answers.append((exports, kind, _answer(rng, kind, tools, targets, bias, lib)))
        outputs += n_out
        best = max(answers, key=lambda a: a[0])  # first of the ties
        if best[0] == 0:
            dropped += 1
            continue
        kinds[best[1]] += 1
        rows.append(TruthRow(intent=req.text, calls=calls, calls_by_tool=best[2]))
        row_looks.append(req.looks)

    split = list(range(n_intents))
    rng.shuffle(split)
    test_idx, train_idx = split[:n_test], split[n_test:]
    train = [rows[i] for i in train_idx]
    test = [rows[i] for i in test_idx]
    train_looks = {lk for i in train_idx for lk in row_looks[i]}
    seen_share = (
        sum(all(lk in train_looks for lk in row_looks[i]) for i in test_idx) / n_test if n_test else 1.0
    )
    stats = {
        "seed": seed,
        "n_looks": len(lib.looks),
        "splits": {"train": split_stats(train, registry), "test": split_stats(test, registry)},
        "target_use_rates": lib.target_use_rates,
        "teacher": {
            "outputs": outputs,
            "intents_dropped_zero_exports": dropped,
            "ground_truth_kinds": dict(sorted(kinds.items())),
        },
        "test_intents_with_looks_seen_in_train": round(seen_share, 4),
    }
    return SynthDataset(train=train, test=test, stats=stats)


def split_stats(rows: list[TruthRow], registry: Registry | None = None) -> dict[str, Any]:
    """Size, subset sizes and tool-use counts / rates (``ToolCall.used``) of one split."""
    registry = registry or default_registry()
    n = len(rows)
    used = {t: sum(r.calls_by_tool[t].used for r in rows) for t in registry.tool_names}
    return {
        "n": n,
        "subsets": {name: sum(r.calls >= k for r in rows) for name, k in SUBSETS.items()},
        "used": used,
        "use_rates": {t: round(c / n, 4) if n else 0.0 for t, c in used.items()},
    }


def write_dataset(ds: SynthDataset, out_dir: str | Path) -> dict[str, Path]:
    """Write ``train.jsonl``, ``test.jsonl`` and ``stats.json``; each file atomically, stats last
    (its presence marks a complete dataset)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": write_jsonl(out / "train.jsonl", ds.train),
        "test": write_jsonl(out / "test.jsonl", ds.test),
    }
    stats_path = out / "stats.json"
    with atomic_open(stats_path) as f:
        f.write(json.dumps(ds.stats, indent=2, ensure_ascii=False) + "\n")
    paths["stats"] = stats_path
    return paths


__all__ = ["SynthDataset", "generate", "split_stats", "write_dataset"]
