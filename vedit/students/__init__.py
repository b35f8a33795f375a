"""The demo students: tokenizer, architectures, training, and the cached demo build.

- :mod:`vedit.students.tokenizer`: the lossless SentencePiece recipe shared by both families;
- :mod:`vedit.students.models`: T5 / Llama architectures built from a config (sizes are data);
- :mod:`vedit.students.corpus`: (prompt, target) examples from dataset rows;
- :mod:`vedit.students.train`: the seeded PyTorch training loop (full fine-tune or LoRA);
- :mod:`vedit.students.demo`: ``build()`` / ``evaluate()`` behind ``vedit demo``.

The PyTorch predictor that answers with a student lives in :mod:`vedit.reference`.
"""
