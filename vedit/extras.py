"""Which optional extra a command needs, checked when the command starts, before any long work.

``pip install vedit`` is the edge runtime alone (onnxruntime, tokenizers, numpy, click, jsonschema):
``vedit predict --model EXPORT_DIR``, :mod:`vedit.decoding`, the in-process client and the Triton
model code. Everything else comes with an extra (setup.cfg ``extras_require``). A command that
needs one says so in one line instead of failing with an ImportError half-way through its work
(``vedit demo run`` used to fail only after its long training stages).

Only ``importlib.util.find_spec`` is used: nothing is imported, so the check costs milliseconds.
"""

from __future__ import annotations

from importlib.util import find_spec

from vedit.errors import MissingExtraError

#: extra -> top-level modules it provides (a module missing means the extra is not installed).
EXTRAS: dict[str, tuple[str, ...]] = {
    "export": ("torch", "transformers", "optimum", "onnx", "peft", "sentencepiece", "safetensors", "outlines_core"),
    "triton": ("tritonclient", "pytriton", "grpc"),
    "deploy": ("kubernetes_validate", "kserve", "yaml"),
    "bench": ("matplotlib",),
    "render": ("PIL", "skimage", "colour", "tifffile", "scipy"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}") from None
    return [m for m in modules if _missing(m)]


def _missing(module: str) -> bool:
    try:
        return find_spec(module) is None
    except (ImportError, ValueError):  # a broken parent package counts as missing
        return True


def require_extras(*extras: str, command: str | None = None) -> None:
    """Raise :class:`MissingExtraError` (one line: what to install) unless every extra is installed.

    ``command`` names the command in the message; by default the running click command's path.
    """
    lacking = [e for e in extras if missing_modules(e)]
    if not lacking:
        return
    if command is None:
        command = _click_command() or "this feature"
    modules = sorted({m for e in lacking for m in missing_modules(e)})
    spec = ",".join(lacking)
    noun = "extra" if len(lacking) == 1 else "extras"
    raise MissingExtraError(
        f"{command} needs the vedit[{spec}] {noun} (missing: {', '.join(modules)}); "
        f"install it with: pip install 'vedit[{spec}]'"
    )


def _click_command() -> str | None:
    import click

    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx is not None else None


__all__ = ["EXTRAS", "missing_modules", "require_extras"]
