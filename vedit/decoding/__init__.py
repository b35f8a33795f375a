"""Constrained decoding: tool-call grammars compiled once per tokenizer, served on onnxruntime.

Compile side (export time): :func:`compile_grammars` (registry + tokenizer -> ``EXPORT_DIR/grammar``).
Serve side: :class:`Predictor` (ONNX sessions + grammar, jump-forward greedy decoding),
:class:`CompiledGrammar` / :class:`Matcher` (per-sequence grammar state). The PyTorch
side of the same grammar is ``vedit.reference.GrammarLogitsProcessor`` (tools layer: it needs torch).
"""

from vedit.decoding.grammar import GRAMMAR_DIR, CompiledGrammar, Matcher, ToolAutomaton, load_grammar
from vedit.decoding.predictor import DecodeStats, Prediction, Predictor


def compile_grammars(export_dir, **kwargs):
    """See :func:`vedit.decoding.compile.compile_grammars` (imported lazily: serving never compiles)."""
    from vedit.decoding.compile import compile_grammars as _compile

    return _compile(export_dir, **kwargs)


__all__ = [
    "GRAMMAR_DIR",
    "CompiledGrammar",
    "DecodeStats",
    "Matcher",
    "Prediction",
    "Predictor",
    "ToolAutomaton",
    "compile_grammars",
    "load_grammar",
]
