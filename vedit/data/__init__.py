"""The demo dataset: the JSONL row format and its validating loaders (:mod:`vedit.data.rows`),
the look library (:mod:`vedit.data.looks`) and the seeded synthetic teacher data
(:mod:`vedit.data.synth`) that stands in for the paper's private data."""

from vedit.data.rows import (
    SUBSETS,
    TruthRow,
    prediction_row,
    read_predictions,
    read_truth,
    write_jsonl,
)
from vedit.data.synth import SynthDataset, generate, write_dataset

__all__ = [
    "SUBSETS",
    "SynthDataset",
    "TruthRow",
    "generate",
    "prediction_row",
    "read_predictions",
    "read_truth",
    "write_dataset",
    "write_jsonl",
]
