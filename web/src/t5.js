// The encoder-decoder (T5) backend of vedit/decoding/seq2seq.py, joined scheduler: every active row
// joins every decoder call, runs right-padded with the pad token, and after the call each row's
// cache is shifted so its real positions end at the last column, the holes in front masked in the
// next call (T5's relative position bias sees the same distances, so each row decodes as alone).
// Columns that are holes in every row are cut. The caches live in host memory (WASM).

import { LAST_INDEX, int64, lastLogits, selectRows } from "./tensors.js";

const SELF_MASK = "attention_mask";

export class T5Model {
  /** @param {any} ort onnxruntime-web @param {{encoder: any, decoder: any, decoderWithPast: any}} sessions */
  constructor(ort, sessions, { padId, startId }) {
    this.ort = ort;
    this.encoder = sessions.encoder;
    this.decoder = sessions.decoder;
    this.decoderWithPast = sessions.decoderWithPast;
    this.padId = padId;
    this.startId = startId;
    this.selfNames = this.decoder.outputNames.filter((n) => n.startsWith("present.") && n.includes(".decoder."));
    this.crossNames = this.decoder.outputNames.filter((n) => n.startsWith("present.") && n.includes(".encoder."));
    if (!this.decoderWithPast.inputNames.includes(SELF_MASK)) {
      throw new Error("the with-past decoder takes no decoder attention mask, so rows cannot join one call; "
        + "export the model again with this vedit");
    }
  }

  /** @param {number[][]} rows prompt ids per row */
  async backend(rows) {
    const b = new JoinedT5Backend(this, rows);
    await b.encode();
    return b;
  }
}

const past = (name) => "past_key_values." + name.slice("present.".length);

class JoinedT5Backend {
  constructor(model, rowIds) {
    this.m = model;
    const n = rowIds.length;
    const width = Math.max(...rowIds.map((r) => r.length));
    const ids = [], mask = [];
    for (const r of rowIds) {
      for (let j = 0; j < width; j++) { ids.push(j < r.length ? r[j] : model.padId); mask.push(j < r.length ? 1 : 0); }
    }
    this.encLen = width;
    this.encIds = ids;
    this.encMask = mask;
    this.allRows = [...Array(n).keys()];
    this.rows = this.allRows; // the rows the batched caches hold, in this order
    this.length = new Array(n).fill(0); // real self-attention cache length per row
    this.width = 0;
    this.selfPast = {};
    this.crossPast = {};
    this.calls = 0;
  }

  async encode() {
    const n = this.allRows.length, ort = this.m.ort;
    const out = await this.m.encoder.run({
      input_ids: int64(ort, this.encIds, [n, this.encLen]),
      attention_mask: int64(ort, this.encMask, [n, this.encLen]),
    });
    this.hidden = out.last_hidden_state;
  }

  schedule(active) {
    return [...active];
  }

  _maskRows(rows) {
    const out = [];
    for (const r of rows) for (let j = 0; j < this.encLen; j++) out.push(this.encMask[r * this.encLen + j]);
    return int64(this.m.ort, out, [rows.length, this.encLen]);
  }

  _hiddenRows(rows) {
    if (rows.length === this.allRows.length) return this.hidden;
    return selectRows(this.m.ort, this.hidden, rows);
  }

  /** @returns {Promise<Float32Array[]>} each row's logits after its last fed token */
  async feed(rows, tokens) {
    const ort = this.m.ort;
    if (this.width && !sameRows(rows, this.rows)) this._select(rows);
    const width = Math.max(...tokens.map((t) => t.length));
    const ids = [];
    for (const t of tokens) for (let j = 0; j < width; j++) ids.push(j < t.length ? t[j] : this.m.padId);
    const last = tokens.map((t) => t.length - 1);
    const feeds = { input_ids: int64(ort, ids, [rows.length, width]), encoder_attention_mask: this._maskRows(rows) };
    let session, out;
    if (!this.width) {
      session = this.m.decoder;
      feeds.encoder_hidden_states = this._hiddenRows(rows);
      if (session.inputNames.includes(LAST_INDEX)) feeds[LAST_INDEX] = int64(ort, last, [rows.length]);
      out = await session.run(feeds);
      this.crossPast = Object.fromEntries(this.m.crossNames.map((n) => [past(n), out[n]]));
    } else {
      session = this.m.decoderWithPast;
      if (session.inputNames.includes("encoder_hidden_states")) feeds.encoder_hidden_states = this._hiddenRows(rows);
      const total = this.width + width, mask = [];
      rows.forEach((r) => { for (let j = 0; j < total; j++) mask.push(j >= this.width - this.length[r] ? 1 : 0); });
      feeds[SELF_MASK] = int64(ort, mask, [rows.length, total]);
      Object.assign(feeds, this.selfPast, this.crossPast);
      if (session.inputNames.includes(LAST_INDEX)) feeds[LAST_INDEX] = int64(ort, last, [rows.length]);
      out = await session.run(feeds);
    }
    this.calls++;
    const ends = tokens.map((t) => this.width + t.length);
    rows.forEach((r, i) => { this.length[r] += tokens[i].length; });
    this.rows = [...rows];
    this.selfPast = this._align(Object.fromEntries(this.m.selfNames.map((n) => [past(n), out[n]])), ends, this.width + width);
    return lastLogits(out.logits, last, session.inputNames.includes(LAST_INDEX));
  }

  _align(values, ends, total) {
    const lengths = this.rows.map((r) => this.length[r]);
    this.width = Math.max(...lengths);
    if (this.width === total && ends.every((e) => e === total)) return values;
    const idx = [...this.rows.keys()];
    return Object.fromEntries(Object.entries(values).map(([n, v]) => [n, rearrange(this.m.ort, v, idx, ends, lengths, this.width)]));
  }

  /** keep only `rows` (the others finished) and cut the holes they all have */
  _select(rows) {
    const index = rows.map((r) => this.rows.indexOf(r));
    const lengths = rows.map((r) => this.length[r]);
    const width = Math.max(...lengths);
    this.selfPast = Object.fromEntries(Object.entries(this.selfPast).map(
      ([n, v]) => [n, rearrange(this.m.ort, v, index, rows.map(() => this.width), lengths, width)]));
    this.crossPast = Object.fromEntries(Object.entries(this.crossPast).map(([n, v]) => [n, selectRows(this.m.ort, v, index)]));
    this.rows = [...rows];
    this.width = width;
  }

  release(row) {
    this.length[row] = -1;
  }
}

function sameRows(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** (rows, heads, width, dim): row rows[i]'s positions ends[i]-lengths[i] .. ends[i] at the end; zeros in front */
function rearrange(ort, t, rows, ends, lengths, width) {
  const [, h, T, d] = t.dims;
  const out = new Float32Array(rows.length * h * width * d);
  rows.forEach((r, i) => {
    const n = lengths[i], start = ends[i] - n;
    for (let k = 0; k < h; k++) {
      const src = ((r * h + k) * T + start) * d, dst = ((i * h + k) * width + (width - n)) * d;
      out.set(t.data.subarray(src, src + n * d), dst);
    }
  });
  return new ort.Tensor("float32", out, [rows.length, h, width, d]);
}
