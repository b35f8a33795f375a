"""Helpers shared by several test packages (import as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

EXPORT_INTENTS = ["golden hour", "cold tone"]


def quick_export(model_dir: Path, out: Path, **kw):
    """Export through the real exporter, validating on two intents to keep tests quick."""
    from vedit.export import export_model

    return export_model(model_dir, out, intents=EXPORT_INTENTS, max_new_tokens=24, **kw)


def without_keyword(schema, keyword: str):
    """``schema`` with every ``keyword`` removed (to check with plain jsonschema what it checks well)."""
    if isinstance(schema, dict):
        return {k: without_keyword(v, keyword) for k, v in schema.items() if k != keyword}
    if isinstance(schema, list):
        return [without_keyword(v, keyword) for v in schema]
    return schema
