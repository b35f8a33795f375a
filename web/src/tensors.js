// Tensor helpers both backends use (onnxruntime-web tensors in host memory).

export const LAST_INDEX = "last_index";

/** an int64 tensor from numbers */
export function int64(ort, values, dims) {
  return new ort.Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

/** rows `rows` (batch indices, in this order) of a float32 (batch, ...) tensor */
export function selectRows(ort, t, rows) {
  const per = t.data.length / t.dims[0];
  const out = new Float32Array(rows.length * per);
  rows.forEach((r, i) => out.set(t.data.subarray(r * per, (r + 1) * per), i * per));
  return new ort.Tensor("float32", out, [rows.length, ...t.dims.slice(1)]);
}

/** (rows, vocab) logits: the graph's own last position (it takes last_index), else picked at `last` */
export function lastLogits(t, last, gathered) {
  const [rows, T, V] = t.dims;
  return [...Array(rows).keys()].map((i) => {
    const at = gathered ? 0 : last[i];
    return t.data.subarray((i * T + at) * V, (i * T + at + 1) * V);
  });
}
