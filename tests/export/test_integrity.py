"""A sha256 per exported file, checked at every load (predict, Triton build, the served model).

The tampering is the one of issue 22: one weight matrix of the decoder negated in place, same size,
which the size check of the manifest let through (exit 0, different answers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import click
import onnx
import pytest
from click.testing import CliRunner

from vedit.clibase import VeditGroup
from vedit.decoding import Predictor
from vedit.errors import ExportIntegrityError, ModelDirError, TritonRepoError
from vedit.manifest import read_manifest
from vedit.predict_cli import predict
from vedit.triton_repo import build_repository
from vedit.triton_repo import builder as builder_module

pytestmark = pytest.mark.slow  # exports the tiny students once per session (seconds)

DECODER = "decoder_model.onnx"


@click.group(cls=VeditGroup)
def cli() -> None:
    pass


cli.add_command(predict)


def negate_largest_matrix(path: Path) -> str:
    """Flip the sign bit of every float of the largest fp32 initializer, in place: same size, same
    mtime; returns the initializer's name."""
    model = onnx.load(str(path), load_external_data=False)
    init = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.raw_data),
               key=lambda t: len(t.raw_data))
    data = bytearray(path.read_bytes())
    at = data.find(init.raw_data)
    assert at >= 0 and data.find(init.raw_data, at + 1) < 0
    for i in range(at + 3, at + len(init.raw_data), 4):  # little-endian float32: the sign is bit 7 of byte 3
        data[i] ^= 0x80
    st = path.stat()
    with open(path, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime an attacker would put back
    assert path.stat().st_size == st.st_size
    return init.name


@pytest.fixture
def export_copy(tmp_path, tiny_export) -> Path:
    d = tmp_path / "export"
    shutil.copytree(tiny_export, d)
    return d


def test_the_exporter_records_the_sha256_of_every_file(tiny_export):
    m = json.loads((tiny_export / "manifest.json").read_text())
    on_disk = {str(p.relative_to(tiny_export)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in tiny_export.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert m["sha256"] == on_disk
    assert {"encoder_model.onnx", DECODER, "registry.json", "tokenizer.json", "config.json"} <= set(on_disk)
    assert any(name.startswith("grammar/") for name in on_disk)
    assert set(m["sizes"]) == set(m["sha256"])


def test_a_negated_weight_matrix_is_refused_everywhere_with_one_line(export_copy, tmp_path):
    read_manifest(export_copy)  # accepted as exported (and hashed once by this process)
    negate_largest_matrix(export_copy / DECODER)
    with pytest.raises(ExportIntegrityError) as exc:
        read_manifest(export_copy)  # same size, mtime put back: the in-process memo must not hide it
    msg = str(exc.value)
    assert "\n" not in msg and str(export_copy / DECODER) in msg
    assert "changed after export" in msg and "export the model again" in msg
    with pytest.raises(ExportIntegrityError, match=DECODER):
        Predictor.load(export_copy)
    r = CliRunner().invoke(cli, ["predict", "--model", str(export_copy), "golden hour"])
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and r.output.startswith("error: ") and DECODER in r.output
    with pytest.raises(ExportIntegrityError, match=DECODER):
        build_repository(export_copy, out=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_the_tampered_file_really_answers_differently(export_copy, tiny_export):
    """The check is what stops it: without the hashes, the tampered export loads and answers."""
    import numpy as np
    import onnxruntime as ort

    name = negate_largest_matrix(export_copy / DECODER)
    weights = {}
    for d in (tiny_export, export_copy):
        model = onnx.load(str(d / DECODER))
        weights[d] = next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)
        ort.InferenceSession(str(d / DECODER), providers=["CPUExecutionProvider"])  # a valid graph either way
    assert np.array_equal(weights[export_copy], -weights[tiny_export]) and np.abs(weights[tiny_export]).max() > 0


def test_an_export_without_hashes_is_refused(export_copy):
    m = json.loads((export_copy / "manifest.json").read_text())
    del m["sha256"]
    (export_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportIntegrityError, match="no sha256 of the export's files .*export the model again"):
        read_manifest(export_copy)


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd"])
def test_hash_entries_cannot_name_files_outside_the_export(export_copy, name):
    m = json.loads((export_copy / "manifest.json").read_text())
    m["sha256"][name] = "0" * 64
    (export_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportIntegrityError, match="bad sha256 entry"):
        read_manifest(export_copy)


def test_a_listed_file_that_is_gone_is_an_incomplete_export(export_copy):
    (export_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelDirError, match="missing tokenizer.json; the export is incomplete"):
        read_manifest(export_copy)


def test_the_repository_copy_is_checked_too(export_copy, tmp_path, monkeypatch):
    """A file changed between the source's check and the copy (or by the copy) never reaches the repository."""
    real = shutil.copytree

    def copy_then_tamper(src, dst, *args, **kw):
        out = real(src, dst, *args, **kw)  # copytree recurses through the patched name: tamper at the top only
        if (Path(dst) / DECODER).exists():
            negate_largest_matrix(Path(dst) / DECODER)
        return out

    monkeypatch.setattr(builder_module.shutil, "copytree", copy_then_tamper)
    with pytest.raises(ExportIntegrityError, match=f"export/{DECODER}: sha256"):
        build_repository(export_copy, out=tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


@pytest.mark.triton
def test_the_served_model_refuses_a_tampered_copy(tiny_export, tmp_path):
    """The Triton model's initialize loads through read_manifest: a repository tampered after the
    build does not start (the reason in one error)."""
    from vedit.serving import TritonServer

    repo = build_repository(tiny_export, out=tmp_path / "repo")
    negate_largest_matrix(repo / "vedit" / "1" / "export" / DECODER)
    with pytest.raises(TritonRepoError) as exc:
        with TritonServer(repo):
            pass
    assert "vedit runtime cannot load" in str(exc.value)
    assert f"{DECODER}: sha256" in str(exc.value) and "changed after export" in str(exc.value)
