"""T5 (encoder-decoder) to ONNX: encoder, first-step decoder and a multi-token decoder with past.

optimum traces the with-past decoder with ONE new token and names the logits' sequence axis "1";
T5's causal-mask code then takes a Python branch for length 1 at trace time. Constrained decoding
feeds runs of forced tokens in one call, so :class:`MultiTokenT5OnnxConfig` traces the with-past
decoder with several new tokens and declares the decoder sequence axis of ``input_ids`` and
``logits`` dynamic.

The with-past decoder also takes the decoder self-attention mask (ONNX input ``attention_mask``,
``(batch, past + new)``; optimum's name for ``decoder_attention_mask`` in a decoder file), which
optimum leaves out for T5. With it, rows whose caches have different lengths share one call: the
runtime keeps each row's real tokens right-aligned in a common cache and masks the holes in front
(see :mod:`vedit.decoding.seq2seq`). The first-step decoder needs none (every row starts empty).
Other input/output names stay optimum's standard ones.

Both decoders then get ``last_index`` (int64 ``(batch,)``, :mod:`vedit.export.last_position`): the
lm_head runs on each row's last fed position only and ``logits`` is ``(batch, 1, vocab)``.
"""

from __future__ import annotations

from pathlib import Path

from optimum.exporters.onnx.base import ConfigBehavior
from optimum.exporters.onnx.model_configs import T5OnnxConfig

from vedit.export.last_position import gather_last_in_file
from vedit.export.onnx_common import DEFAULT_OPSET, io_names, move_onnx, optimum_export

TASK = "text2text-generation-with-past"
#: role in the manifest -> file name (optimum's names, which the runtime expects)
FILES = {
    "encoder": "encoder_model.onnx",
    "decoder": "decoder_model.onnx",
    "decoder_with_past": "decoder_with_past_model.onnx",
}


class MultiTokenT5OnnxConfig(T5OnnxConfig):
    """T5 config whose with-past decoder accepts several new tokens per call."""

    #: new tokens in the dummy input of the with-past decoder (any value > 1 keeps the axis generic)
    TRACE_NEW_TOKENS = 3
    #: the dummy decoder mask covers past + new tokens (optimum pads it after generating it)
    PAD_ATTENTION_MASK_TO_PAST = True

    @property
    def inputs(self):
        inputs = super().inputs
        if self._behavior is ConfigBehavior.DECODER and self.use_past_in_inputs:
            inputs["decoder_attention_mask"] = {0: "batch_size", 1: "past_decoder_sequence_length + decoder_sequence_length"}
        return inputs

    def overwrite_shape_and_generate_input(self, dummy_input_gen, input_name, framework, input_shapes):
        if self.use_past_in_inputs and input_name in ("decoder_input_ids", "decoder_attention_mask"):
            saved = dummy_input_gen.sequence_length
            dummy_input_gen.sequence_length = self.TRACE_NEW_TOKENS
            try:
                return dummy_input_gen.generate(
                    input_name, framework=framework, int_dtype=self.int_dtype, float_dtype=self.float_dtype
                )
            finally:
                dummy_input_gen.sequence_length = saved
        return super().overwrite_shape_and_generate_input(dummy_input_gen, input_name, framework, input_shapes)

    @property
    def outputs(self):
        outputs = super().outputs
        if self.use_past_in_inputs and "logits" in outputs:
            outputs["logits"] = {0: "batch_size", 1: "decoder_sequence_length"}
        return outputs


def onnx_configs(config) -> dict:
    """The ``custom_onnx_configs`` for optimum: one per exported file."""
    base = MultiTokenT5OnnxConfig(config, task="text2text-generation", use_past=True)
    return {
        "encoder_model": base.with_behavior("encoder"),
        "decoder_model": base.with_behavior("decoder", use_past=True, use_past_in_inputs=False),
        "decoder_with_past_model": base.with_behavior("decoder", use_past=True, use_past_in_inputs=True),
    }


def export_t5(model, staging: Path, out: Path, *, opset: int = DEFAULT_OPSET) -> tuple[dict, dict, list[str]]:
    """Export ``model`` (fp32) via ``staging``; move the ONNX files and configs into ``out``.

    Returns ``(files, io, written)``: role -> file name, file name -> input/output names, and every
    file name written into ``out`` (external data included).
    """
    optimum_export(model, staging, task=TASK, opset=opset, custom_onnx_configs=onnx_configs(model.config))
    for role in ("decoder", "decoder_with_past"):
        gather_last_in_file(staging / FILES[role])
    written: list[str] = []
    for name in FILES.values():
        written += move_onnx(staging, out, name)
    return dict(FILES), {name: io_names(out / name) for name in FILES.values()}, written
