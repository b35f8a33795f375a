"""The repository builder's layout, refusals and atomicity (on a minimal export directory).

The builder reads only the manifest, the registry snapshot and file sizes; serving a real export
is tested in test_server.py.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from vedit.errors import ModelDirError, OutputError, TritonRepoError
from vedit.manifest import VERSION
from vedit.triton_repo import build_repository
from vedit.triton_repo import config as cfgmod
from vedit.triton_repo.cli import triton


@pytest.fixture
def export_dir(tmp_path, tiny_export) -> Path:
    """A copy of the tiny T5 export (the builder copies it whole into the repository)."""
    import shutil

    d = tmp_path / "exports" / "t5-fp32"
    shutil.copytree(tiny_export, d)
    return d


def _rewrite_manifest(export_dir: Path, **changes) -> None:
    m = json.loads((export_dir / "manifest.json").read_text())
    m.update(changes)
    (export_dir / "manifest.json").write_text(json.dumps(m))


def test_layout(export_dir, tmp_path, registry):
    repo = build_repository(export_dir, profile="cpu", out=tmp_path / "repo")
    model = repo / "vedit"
    assert sorted(p.name for p in repo.iterdir()) == ["vedit"]
    cfg = cfgmod.parse_config((model / "config.pbtxt").read_text())
    assert cfg.name == "vedit"
    template = resources.files("vedit.triton_repo").joinpath("triton_model.py").read_text()
    assert (model / "1" / "model.py").read_text() == template
    copied = sorted(str(p.relative_to(model / "1" / "export")) for p in (model / "1" / "export").rglob("*"))
    original = sorted(str(p.relative_to(export_dir)) for p in export_dir.rglob("*"))
    assert copied == original
    assert (model / "warmup" / "intent").read_bytes() == cfgmod.serialize_strings([cfgmod.WARMUP_INTENT])
    assert {k: v.string_value for k, v in cfg.parameters.items()}["vedit_family"] == "t5"
    # nothing but the repository next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "repo"]


def test_custom_name(export_dir, tmp_path):
    repo = build_repository(export_dir, out=tmp_path / "r", name="colour-tools")
    assert cfgmod.parse_config((repo / "colour-tools" / "config.pbtxt").read_text()).name == "colour-tools"


def test_existing_repository_is_refused_unless_forced(export_dir, tmp_path):
    repo = build_repository(export_dir, out=tmp_path / "repo")
    marker = repo / "vedit" / "stale"
    marker.write_text("x")
    with pytest.raises(TritonRepoError, match="--force"):
        build_repository(export_dir, out=repo)
    assert marker.exists()
    build_repository(export_dir, out=repo, force=True)
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "repo"]


@pytest.mark.parametrize(
    "profile, precision, message",
    [
        ("cpu", "fp16", "profile cpu serves fp32 or int8 or int4 exports, this export is fp16"),
        ("l4", "int8", "profile l4 serves fp16 or fp32 exports, this export is int8"),
    ],
)
def test_precision_must_suit_the_profile(export_dir, tmp_path, profile, precision, message):
    _rewrite_manifest(export_dir, precision=precision)
    with pytest.raises(TritonRepoError, match=message):
        build_repository(export_dir, profile=profile, out=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_not_an_export(tmp_path):
    with pytest.raises(ModelDirError, match="not found"):
        build_repository(tmp_path / "missing", out=tmp_path / "repo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="no manifest.json"):
        build_repository(tmp_path / "empty", out=tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_export_without_onnx(export_dir, tmp_path):
    (export_dir / "encoder_model.onnx").unlink()
    with pytest.raises(ModelDirError, match="missing encoder_model.onnx; the export is incomplete"):
        build_repository(export_dir, out=tmp_path / "repo")


def test_damaged_or_foreign_export_is_refused(export_dir, tmp_path):
    """An ONNX file replaced by zeros, or a manifest of another format/version, never reaches Triton."""
    onnx = export_dir / "decoder_model.onnx"
    onnx.write_bytes(b"\0" * 1000)
    with pytest.raises(ModelDirError, match="decoder_model.onnx: 1000 bytes, the manifest says"):
        build_repository(export_dir, out=tmp_path / "repo")
    for changes, message in (({"version": None}, f"not a vedit-export v{VERSION} manifest"),
                             ({"format": "other"}, f"not a vedit-export v{VERSION} manifest"),
                             ({"precision": "int3"}, "unknown precision 'int3'")):
        _rewrite_manifest(export_dir, **{"format": "vedit-export", "version": VERSION, "precision": "fp32", **changes})
        with pytest.raises(ModelDirError, match=message):
            build_repository(export_dir, out=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_failed_copy_leaves_nothing(export_dir, tmp_path, monkeypatch):
    import shutil

    def broken_copy(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", broken_copy)
    with pytest.raises(OutputError, match="no space left on device while writing"):
        build_repository(export_dir, out=tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"]


def test_cli_build_and_unknown_profile(export_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(triton, ["build", str(export_dir), "--profile", "tpu", "-o", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert res.output.strip() == "error: unknown profile 'tpu'; known profiles: l4, a100, cpu"
    res = runner.invoke(triton, ["build", str(export_dir), "--profile", "cpu", "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "vedit" / "config.pbtxt").is_file()
    res = runner.invoke(triton, ["build", str(export_dir), "-o", str(tmp_path / "r")])
    assert res.exit_code == 1 and "already exists; pass --force" in res.output


def test_draft_is_carried_and_read_by_the_model(export_dir, tmp_path, monkeypatch):
    """``vedit triton build --draft``: the config says so, and the model's ``initialize`` (run here as
    Triton runs it, with a stand-in for the stub's utils module) loads a drafting predictor whose
    answers are the plain runtime's."""
    import importlib.util
    import sys
    import types

    from google.protobuf import json_format

    from vedit.decoding import Predictor

    res = CliRunner().invoke(triton, ["build", str(export_dir), "--draft", "-o", str(tmp_path / "repo")])
    assert res.exit_code == 0, res.output
    model_dir = tmp_path / "repo" / "vedit"
    cfg = cfgmod.parse_config((model_dir / "config.pbtxt").read_text())
    assert cfg.parameters[cfgmod.PARAM_DRAFT].string_value == "true"

    pb = types.ModuleType("triton_python_backend_utils")
    pb.TritonModelException = type("TritonModelException", (Exception,), {})
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    spec = importlib.util.spec_from_file_location("vedit_served_model", model_dir / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    served = module.TritonPythonModel()
    served.initialize({"model_config": json_format.MessageToJson(cfg, preserving_proto_field_name=True),
                       "model_instance_kind": "CPU", "model_repository": str(model_dir), "model_version": "1"})
    assert served.predictor.drafter is not None
    intents = ["golden hour", "cold tone", "neon night"]
    want = [p.raw for p in Predictor.load(export_dir, threads=1).predict(intents)]
    assert [p.raw for p in served.predictor.predict(intents)] == want


def test_an_export_that_cannot_draft_fails_the_build(export_dir, tmp_path):
    """An export made before drafts builds without ``--draft``; with it, the build stops with the
    runtime's own one-line error and writes nothing."""
    from support import one_position_export

    old = one_position_export(export_dir, tmp_path / "old")
    runner = CliRunner()
    res = runner.invoke(triton, ["build", str(old), "--draft", "-o", str(tmp_path / "repo")])
    assert res.exit_code == 1
    (line,) = res.output.splitlines()
    assert line.startswith(f"error: {old.resolve()}: its decoders give logits at one position per row")
    assert "export it again with this vedit" in line
    assert not (tmp_path / "repo").exists()
    with pytest.raises(ModelDirError, match="one position per row"):
        build_repository(old, out=tmp_path / "repo", draft=True)
    assert not (tmp_path / "repo").exists()
    res = runner.invoke(triton, ["build", str(old), "--draft", "--no-jump-forward", "-o", str(tmp_path / "repo")])
    assert res.exit_code == 2 and "drop --no-jump-forward" in res.output
    with pytest.raises(TritonRepoError, match="jump-forward"):
        build_repository(export_dir, out=tmp_path / "repo", draft=True, jump_forward=False)
    res = runner.invoke(triton, ["build", str(old), "-o", str(tmp_path / "repo")])
    assert res.exit_code == 0, res.output
