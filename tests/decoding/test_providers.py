"""Providers and IO binding: a missing accelerator is an error (or an explicit, logged fallback), and the
IO-binding path that keeps the KV cache device-resident on CUDA gives exactly today's outputs. It runs
here on the CPU execution provider (the same code, with OrtValues in CPU memory)."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from vedit.decoding import Predictor
from vedit.decoding.session import CPU, CUDA, Session, check_providers, cuda_provider
from vedit.errors import ProviderError

INTENTS = ["golden hour", "Morocco", "welding mask", "cold tone", "😈", "", "neon night rain", "a b c d e f"]


def _outputs(predictor):
    return [(p.raw, p.stats.as_dict()) for p in predictor.predict(INTENTS)]


@pytest.mark.parametrize("jump_forward", [True, False])
@pytest.mark.parametrize("family", ["t5", "llama"])
def test_io_binding_gives_identical_outputs(request, family, jump_forward):
    export = request.getfixturevalue(f"{family}_export")
    plain = Predictor.load(export, threads=1, jump_forward=jump_forward, batch_size=3, io_binding=False, draft=False)
    bound = Predictor.load(export, threads=1, jump_forward=jump_forward, batch_size=3, io_binding=True, draft=False)
    assert _outputs(bound) == _outputs(plain)


def test_io_binding_keeps_the_cache_as_device_values(t5_export, monkeypatch):
    """Kept outputs come back as OrtValues, and most calls bind the previous call's cache without an upload."""
    predictor = Predictor.load(t5_export, threads=1, batch_size=8, io_binding=True, draft=False)
    session = predictor.model.decoder_with_past
    uploads, runs, bound_values = [], [], []
    real_upload, real_run = session.upload, session.run

    def upload(array):
        uploads.append(array.shape)
        return real_upload(array)

    def run(feeds, *, keep=(), last=None):
        runs.append(1)
        bound_values.append(sum(isinstance(v, ort.OrtValue) for k, v in feeds.items() if k.startswith("past_key_values.")))
        out = real_run(feeds, keep=keep, last=last)
        assert all(isinstance(out[n], ort.OrtValue) for n in keep)
        if session.gathers_last:  # the graph took each row's last position before the lm_head
            assert out["logits"].shape[:2] == (len(last), 1)
            np.testing.assert_array_equal(out["last_logits"], out["logits"][:, 0])
        else:  # the full logits stay on the device; only each row's last position comes back
            assert isinstance(out["logits"], ort.OrtValue)
            assert out["last_logits"].shape == (len(last), out["logits"].shape()[2])
        return out

    monkeypatch.setattr(session, "upload", upload)
    monkeypatch.setattr(session, "run", run)
    predictor.predict(["golden hour"])
    n_past = sum(1 for n in session.inputs if n.startswith("past_key_values."))
    assert runs and all(b == n_past for b in bound_values)  # every cache input is a device value
    self_names = len(predictor.model.self_names)
    # a fresh upload only when rows regroup: far fewer than one per cache tensor per call
    assert len(uploads) < len(runs) * self_names, (len(uploads), len(runs))


def test_cuda_requested_without_cuda_is_a_one_line_error(t5_export):
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA; the check is exercised where it does not")
    with pytest.raises(ProviderError) as exc:
        Predictor.load(t5_export, providers=[cuda_provider(0, gpu_mem_limit=2 << 30), CPU])
    message = str(exc.value)
    assert "\n" not in message
    assert "CUDAExecutionProvider requested but not active" in message and "allow_cpu_fallback" in message


def test_explicit_fallback_is_logged_not_hidden(t5_export, caplog):
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA")
    with caplog.at_level(logging.WARNING, logger="vedit.decoding"):
        p = Predictor.load(t5_export, providers=[CUDA, CPU], allow_cpu_fallback=True, threads=1)
    assert p.providers == [CPU]
    assert any("falling back to CPU" in r.getMessage() for r in caplog.records)
    assert p.predict(["golden hour"])[0].calls


def test_check_providers_compares_requested_with_active(tmp_path):
    f = tmp_path / "decoder.onnx"
    assert check_providers(f, [CUDA, CPU], [CUDA, CPU]) == []
    assert check_providers(f, [CPU], [CPU]) == []
    assert check_providers(f, [(CUDA, {"device_id": 1}), CPU], [CPU], allow_cpu_fallback=True) == [CUDA]
    with pytest.raises(ProviderError, match="decoder.onnx: CUDAExecutionProvider requested but not active"):
        check_providers(f, [(CUDA, {}), CPU], [CPU])


def test_cuda_provider_options():
    name, opts = cuda_provider(1, gpu_mem_limit=3 << 30, arena_extend_strategy="kSameAsRequested")
    assert name == CUDA and opts == {"device_id": 1, "gpu_mem_limit": 3 << 30, "arena_extend_strategy": "kSameAsRequested"}
    with pytest.raises(ValueError):
        cuda_provider(0, arena_extend_strategy="kSometimes")


def test_cpu_session_reports_its_device(t5_export):
    s = Session(t5_export / "encoder_model.onnx", providers=[CPU], threads=1)
    assert s.device == "cpu" and s.providers == [CPU] and not s.use_binding and s.fallback == []


def test_joined_rows_keep_the_cache_on_the_device(t5_export, monkeypatch):
    """Joined T5 rows: runs of different lengths and finished rows are rearranged where the cache is
    (the align graph), so no cache tensor is brought to the host or uploaded; outputs unchanged."""
    plain = Predictor.load(t5_export, threads=1, batch_size=3, io_binding=False, draft=False)
    bound = Predictor.load(t5_export, threads=1, batch_size=3, io_binding=True, draft=False)
    assert bound.model.join_rows
    session = bound.model.decoder_with_past
    moved = []
    monkeypatch.setattr(session, "upload", lambda a: moved.append(("upload", a.shape)))
    monkeypatch.setattr(session, "to_host", lambda v: moved.append(("to_host", None)))
    aligned = []
    real_aligner = bound.model.aligner

    def aligner(value):
        aligned.append(1)
        return real_aligner(value)

    monkeypatch.setattr(bound.model, "aligner", aligner)
    assert _outputs(bound) == _outputs(plain)
    assert aligned and not moved
