"""vedit: deploy tool-calling student LLMs (export, constrained decoding, Triton, bench)."""

import os as _os

# Nothing is ever downloaded at run time: every model is built locally.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
