"""Helpers shared by several test packages (import as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

EXPORT_INTENTS = ["golden hour", "cold tone"]


def quick_export(model_dir: Path, out: Path, **kw):
    """Export through the real exporter, validating on two intents to keep tests quick."""
    from vedit.export import export_model

    return export_model(model_dir, out, intents=EXPORT_INTENTS, max_new_tokens=24, **kw)
