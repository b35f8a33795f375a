"""Helpers shared by several test packages (import as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

EXPORT_INTENTS = ["golden hour", "cold tone"]


def quick_export(model_dir: Path, out: Path, **kw):
    """Export through the real exporter, validating on two intents to keep tests quick."""
    from vedit.export import export_model

    return export_model(model_dir, out, intents=EXPORT_INTENTS, max_new_tokens=24, **kw)


def one_position_export(export: Path, out: Path) -> Path:
    """A copy of the T5 ``export`` as made before drafts: its decoders' ``logits`` declared
    (batch, 1, vocab), one position per row, with a manifest that stands as an export of its own."""
    import json
    import shutil

    import onnx

    shutil.copytree(export, out)
    decoders = ("decoder_model.onnx", "decoder_with_past_model.onnx")
    for name in decoders:
        model = onnx.load(str(out / name), load_external_data=False)
        dim = next(o for o in model.graph.output if o.name == "logits").type.tensor_type.shape.dim[1]
        dim.Clear()
        dim.dim_value = 1
        onnx.save(model, str(out / name))
    manifest = json.loads((out / "manifest.json").read_text())
    for name in decoders:
        manifest["sizes"][name] = (out / name).stat().st_size
        manifest.get("sha256", {}).pop(name, None)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def kserve_pod_spec(isvc: dict) -> dict:
    """The pod KServe makes of an InferenceService's predictor: its PodSpec fields, with the ``triton``
    entry as the container (checkov and the PSS checks know Pods, not InferenceServices)."""
    pred = dict(isvc["spec"]["predictor"])
    triton = {"name": "kserve-container", **pred.pop("triton")}
    triton.pop("protocolVersion", None)
    for key in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"):
        pred.pop(key, None)
    return {**pred, "containers": [triton]}


def without_keyword(schema, keyword: str):
    """``schema`` with every ``keyword`` removed (to check with plain jsonschema what it checks well)."""
    if isinstance(schema, dict):
        return {k: without_keyword(v, keyword) for k, v in schema.items() if k != keyword}
    if isinstance(schema, list):
        return [without_keyword(v, keyword) for v in schema]
    return schema
