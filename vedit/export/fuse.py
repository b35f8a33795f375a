"""A fused ONNX graph for Llama students, written directly from the PyTorch weights.

optimum's Llama export is the traced PyTorch module: ~3,000 nodes (RMSNorm as Pow/ReduceMean/Sqrt,
RoPE as Slice/Neg/Concat, K/V repeated for grouped heads, a 4-D mask built from shape arithmetic);
onnxruntime's optimizers recover RMSNorm, SiLU and (the transformers optimizer) rotary and the skip
norms, never the attention. Per decoder step much of that is node overhead, not arithmetic.
onnxruntime-genai's builder writes the graph it wants instead; so does this module (~150 nodes):

- ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` (com.microsoft): RMSNorm,
  with the residual add fused into the next norm;
- one packed Q/K/V ``MatMul`` and one packed gate/up ``MatMul`` per layer;
- ``RotaryEmbedding`` (com.microsoft) on Q and K with the caller's ``position_ids``: vedit's rows carry
  holes, so a position is not a cache index;
- ONNX ``Attention`` (opset 23) with ``kv_num_heads`` (grouped KV heads are not repeated) and an
  additive mask built once per call from the 2-D ``attention_mask``: causal by cache index plus
  vedit's masked holes (left padding, right-padded runs, a prefix cache placed right-aligned).
  onnxruntime's ``GroupQueryAttention`` (genai's choice) is not used: on CPU it refuses a batch of
  more than one row when several tokens follow a past, which is every jump-forward call.

The interface is optimum's, name for name (``input_ids``, ``attention_mask`` over past and new
tokens, ``position_ids``, ``past_key_values.N.key/value`` -> ``logits``, ``present.N.key/value``,
KV as (batch, kv_heads, length, head_dim)), plus ``last_index`` (int64, one or ``k`` positions per row):
the final norm's output is gathered at those positions before the lm_head
(:mod:`vedit.export.last_position`), so ``logits`` is ``(batch, k, vocab)`` and the lm_head (hidden x
vocab) runs at the positions the loop needs (each row's last fed token; a draft's verified ones).
Masked keys get a large finite negative score, never -inf: a query row with every key masked (a
left pad in the prompt) then stays finite instead of writing NaN into the cache.

Only what vedit's students use is supported (:func:`unsupported_reason`); anything else keeps
optimum's graph. Needs onnxruntime with opset 23 (1.23 or newer).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vedit.decoding.session import LAST_INDEX
from vedit.export.last_position import POSITIONS, add_gather

log = logging.getLogger(__name__)

#: opset of the standard ops (``Attention`` with grouped KV heads is opset 23); contrib ops are ``com.microsoft`` 1.
OPSET = 23
MS = "com.microsoft"
#: What a masked key adds to its score: finite, so that an all-masked row cannot make NaN.
MASKED = float(np.finfo(np.float32).min)
#: Serialized size above which the tensors go to ``<file>_data`` (protobuf's limit is 2 GiB).
EXTERNAL_DATA_BYTES = 2**31 - 2**26


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot get the fused graph (``None``: it can)."""
    cfg = model.config
    if getattr(cfg, "model_type", None) != "llama":
        return f"model_type {getattr(cfg, 'model_type', None)!r} is not llama"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} (only silu)"
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "projection biases"
    rope = getattr(cfg, "rope_scaling", None) or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear", "llama3"):
        return f"rope_scaling {kind!r} (its frequencies depend on the sequence length)"
    return None


def _rope_cache(model) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin (max_positions, head_dim / 2) from the model's own inverse frequencies (so linear and
    llama3 scaling come for free) and its attention scaling, as transformers applies them."""
    rot = model.model.rotary_emb
    inv = rot.inv_freq.detach().double().cpu().numpy()
    pos = np.arange(model.config.max_position_embeddings, dtype=np.float64)
    freqs = np.outer(pos, inv)
    scale = float(getattr(rot, "attention_scaling", 1.0))
    return (np.cos(freqs) * scale).astype(np.float32), (np.sin(freqs) * scale).astype(np.float32)


class _Graph:
    """Nodes and initializers, named like the module they come from.

    With ``data`` (an open binary file), every tensor of 1 KiB or more is appended to it as it is
    made and the graph keeps only a reference (ONNX external data): a 1.1B-parameter model is then
    never held twice in memory (once by PyTorch, once as protobuf bytes).
    """

    def __init__(self, data=None, location: str = ""):
        self.nodes, self.inits = [], []
        self.data, self.location = data, location

    def init(self, name: str, array: np.ndarray) -> str:
        from onnx import TensorProto, numpy_helper

        array = np.ascontiguousarray(array)
        if self.data is None or array.nbytes < 1024:
            self.inits.append(numpy_helper.from_array(array, name))
            return name
        offset = self.data.seek(0, 2)
        pad = -offset % 4096  # aligned, as onnx's own writer does, so onnxruntime can map it
        self.data.write(b"\0" * pad)
        self.data.write(array.tobytes())
        t = TensorProto(name=name, data_type=numpy_helper.helper.np_dtype_to_tensor_dtype(array.dtype),
                        dims=array.shape, data_location=TensorProto.EXTERNAL)
        for key, value in (("location", self.location), ("offset", offset + pad), ("length", array.nbytes)):
            t.external_data.add(key=key, value=str(value))
        self.inits.append(t)
        return name

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, domain: str = "", **attrs) -> list[str]:
        from onnx import helper

        outs = [f"{name}/out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs


def _bias(g: "_Graph", total: str, seq: str) -> str:
    """(batch, 1, sequence, total) float: 0 where query i (at cache index total - sequence + i) may
    see key j (j <= its own index and ``attention_mask[b, j]`` set), :data:`MASKED` elsewhere."""
    from onnx import TensorProto

    one = g.init("/mask/one", np.array(1, np.int64))
    zero = g.init("/mask/zero_i", np.array(0, np.int64))
    t = g.node("Squeeze", [total], "/mask/t")[0]
    s = g.node("Squeeze", [seq], "/mask/s")[0]
    keys = g.node("Range", [zero, t, one], "/mask/keys")[0]  # (T,)
    first = g.node("Sub", [t, s], "/mask/past")[0]
    queries = g.node("Range", [first, t, one], "/mask/queries")[0]  # (S,): cache index of each query
    q2 = g.node("Unsqueeze", [queries, g.init("/mask/ax1", np.array([1], np.int64))], "/mask/q2")[0]  # (S, 1)
    causal = g.node("LessOrEqual", [keys, q2], "/mask/causal")[0]  # (S, T)
    keep = g.node("Cast", ["attention_mask"], "/mask/bool", to=TensorProto.BOOL)[0]
    keep4 = g.node("Unsqueeze", [keep, g.init("/mask/ax12", np.array([1, 2], np.int64))], "/mask/keep4")[0]
    both = g.node("And", [keep4, causal], "/mask/and")[0]  # (B, 1, S, T)
    return g.node("Where", [both, g.init("/mask/zero", np.array(0.0, np.float32)),
                            g.init("/mask/masked", np.array(MASKED, np.float32))], "/mask/bias")[0]


def _weight(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def build(model, graph: "_Graph | None" = None):
    """The fused ``onnx.ModelProto`` of a ``LlamaForCausalLM`` (fp32 weights); ``graph`` decides where
    the tensors go (default: inside the model)."""
    from onnx import TensorProto, helper

    reason = unsupported_reason(model)
    if reason:
        from vedit.errors import ExportError

        raise ExportError(f"no fused graph for this model: {reason}")
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    eps = float(cfg.rms_norm_eps)
    g = graph or _Graph()
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info("input_ids", i64, ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", i64, ["batch", "total"]),
              helper.make_tensor_value_info("position_ids", i64, ["batch", "sequence"])]
    inputs.append(helper.make_tensor_value_info(LAST_INDEX, i64, [POSITIONS]))
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch", POSITIONS, cfg.vocab_size])]
    for i in range(cfg.num_hidden_layers):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kv}", f32,
                                                        ["batch", kv_heads, "past", hd]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kv}", f32, ["batch", kv_heads, "total", hd]))

    # Shared by every layer: the additive mask (batch, 1, sequence, total).
    c = lambda name, v: g.init(name, np.array(v, dtype=np.int64))  # noqa: E731
    total = g.node("Shape", ["attention_mask"], "/mask/total", start=1, end=2)[0]  # [T]
    seq = g.node("Shape", ["input_ids"], "/mask/seq", start=1, end=2)[0]  # [S]
    bias = _bias(g, total, seq)
    cos, sin = _rope_cache(model)
    cos, sin = g.init("/rope/cos", cos), g.init("/rope/sin", sin)

    sd = model.state_dict()
    w = lambda key: _weight(sd[key])  # noqa: E731
    x = g.node("Gather", [g.init("model.embed_tokens.weight", w("model.embed_tokens.weight")), "input_ids"],
               "/model/embed_tokens")[0]
    residual, pending = x, None  # pending: the sublayer output not yet added to the residual
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        ln = g.init(f"{p}.input_layernorm.weight", w(f"{p}.input_layernorm.weight"))
        if pending is None:
            h = g.node("SimplifiedLayerNormalization", [residual, ln], f"/{p}/input_layernorm", axis=-1, epsilon=eps,
                       stash_type=1)[0]
        else:
            h, _, _, residual = g.node("SkipSimplifiedLayerNormalization", [pending, residual, ln],
                                       f"/{p}/input_layernorm", n_out=4, domain=MS, epsilon=eps)
        a = f"{p}.self_attn"
        wqkv = np.concatenate([w(f"{a}.q_proj.weight"), w(f"{a}.k_proj.weight"), w(f"{a}.v_proj.weight")]).T
        qkv = g.node("MatMul", [h, g.init(f"{a}.qkv_proj.weight", wqkv)], f"/{a}/qkv_proj")[0]
        q, k, v = g.node("Split", [qkv, c(f"/{a}/split", [heads * hd, kv_heads * hd, kv_heads * hd])], f"/{a}/split",
                         n_out=3, axis=-1)
        q = g.node("RotaryEmbedding", [q, "position_ids", cos, sin], f"/{a}/rotary_q", domain=MS,
                   num_heads=heads, interleaved=0)[0]
        k = g.node("RotaryEmbedding", [k, "position_ids", cos, sin], f"/{a}/rotary_k", domain=MS,
                   num_heads=kv_heads, interleaved=0)[0]
        past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        attn = g.node("Attention", [q, k, v, bias, *past], f"/{a}/attention", n_out=3, q_num_heads=heads,
                      kv_num_heads=kv_heads, scale=float(hd**-0.5), is_causal=0)[0]
        g.nodes[-1].output[1:3] = [f"present.{i}.key", f"present.{i}.value"]  # straight to the graph outputs
        o = g.node("MatMul", [attn, g.init(f"{a}.o_proj.weight", w(f"{a}.o_proj.weight").T)], f"/{a}/o_proj")[0]
        ln2 = g.init(f"{p}.post_attention_layernorm.weight", w(f"{p}.post_attention_layernorm.weight"))
        h, _, _, residual = g.node("SkipSimplifiedLayerNormalization", [o, residual, ln2],
                                   f"/{p}/post_attention_layernorm", n_out=4, domain=MS, epsilon=eps)
        m = f"{p}.mlp"
        wgu = np.concatenate([w(f"{m}.gate_proj.weight"), w(f"{m}.up_proj.weight")]).T
        gu = g.node("MatMul", [h, g.init(f"{m}.gate_up_proj.weight", wgu)], f"/{m}/gate_up_proj")[0]
        gate, up = g.node("Split", [gu, c(f"/{m}/split", [cfg.intermediate_size] * 2)], f"/{m}/split", n_out=2,
                          axis=-1)
        act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"/{m}/act/sigmoid")[0]], f"/{m}/act/silu")[0]
        pending = g.node("MatMul", [g.node("Mul", [act, up], f"/{m}/act/mul")[0],
                                    g.init(f"{m}.down_proj.weight", w(f"{m}.down_proj.weight").T)], f"/{m}/down_proj")[0]
    h = g.node("SkipSimplifiedLayerNormalization", [pending, residual, g.init("model.norm.weight", w("model.norm.weight"))],
               "/model/norm", n_out=1, domain=MS, epsilon=eps)[0]
    h = add_gather(g.nodes, g.inits, h)  # (batch, k, hidden): the fed positions whose logits are asked for
    head = sd["lm_head.weight"] if "lm_head.weight" in sd else sd["model.embed_tokens.weight"]
    g.node("MatMul", [h, g.init("lm_head.weight", _weight(head).T)], "/lm_head")
    g.nodes[-1].output[0] = "logits"

    # onnx's shape inference knows no contrib op, so tools that rely on it (the int8 quantizer) would
    # not know the activations' type: declare every activation outside the mask arithmetic as float.
    declared = {v.name for v in inputs + outputs}
    ints = ("/mask/", "/last_position/index/")
    floats = [helper.make_tensor_value_info(o, f32, None) for n in g.nodes if not n.name.startswith(ints)
              for o in n.output if o and o not in declared]
    graph = helper.make_graph(g.nodes, "vedit_fused_llama", inputs, outputs, initializer=g.inits, value_info=floats)
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
                                    producer_name="vedit.export.fuse")
    model_proto.ir_version = 9
    return model_proto


def export_fused(model, path: Path) -> None:
    """Build and write the fused graph of ``model`` to ``path``; when its weights would pass protobuf's
    2 GiB limit they are written to ``<name>_data`` beside it, one tensor at a time."""
    import onnx

    path = Path(path)
    log.info("writing the fused decoder graph (Attention, RotaryEmbedding, SkipSimplifiedLayerNorm)")
    large = sum(p.numel() for p in model.parameters()) * 4 > EXTERNAL_DATA_BYTES
    if not large:
        onnx.save(build(model), str(path))
        return
    data = path.with_name(path.name + "_data")
    with open(data, "wb") as f:
        proto = build(model, _Graph(f, data.name))
    onnx.save(proto, str(path))


def replace_with_fused(model, onnx_path: Path) -> bool:
    """Overwrite optimum's ``onnx_path`` (and its external data) with the fused graph of ``model``.

    Returns ``False``, leaving the file alone, when the model is not one the fused graph covers.
    """
    from vedit.export.onnx_common import external_data_files

    reason = unsupported_reason(model)
    if reason:
        log.info(f"keeping optimum's unfused graph: {reason}")
        return False
    onnx_path = Path(onnx_path)
    for name in external_data_files(onnx_path):
        (onnx_path.parent / name).unlink()
    export_fused(model, onnx_path)
    return True


__all__ = ["build", "export_fused", "replace_with_fused", "unsupported_reason"]
