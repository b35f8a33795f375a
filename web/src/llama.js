// The decoder-only (Llama) backend of vedit/decoding/decoder_only.py: one batched cache, explicit
// position ids and an attention mask over the whole cache, so rows can carry masked holes; every
// call feeds all active rows. Prompt-prefix cache: the KV of each tool prompt's fixed start is
// computed once at load (the prefixes come from the Python PromptBuilder, in web.json), and a batch
// starts from it, right-aligned in a left-padded past.

import { LAST_INDEX, int64, lastLogits, selectRows } from "./tensors.js";

export class LlamaModel {
  /** @param {any} ort @param {any} session @param {{padId: number, kvShape: Object<string, [number, number]>}} opts */
  constructor(ort, session, { padId, kvShape }) {
    this.ort = ort;
    this.session = session;
    this.padId = padId;
    this.pastNames = session.inputNames.filter((n) => n.startsWith("past_key_values."));
    this.presentNames = this.pastNames.map((n) => "present." + n.slice("past_key_values.".length));
    this.shape = kvShape; // past name -> [heads, head dim]
    /** @type {Map<string, {ids: number[], kv: Object<string, any>}>} */
    this.prefixes = new Map();
  }

  emptyPast(batch) {
    return Object.fromEntries(this.pastNames.map((n) => {
      const [h, d] = this.shape[n];
      return [n, new this.ort.Tensor("float32", new Float32Array(0), [batch, h, 0, d])];
    }));
  }

  async run(feeds, last) {
    if (this.session.inputNames.includes(LAST_INDEX)) feeds[LAST_INDEX] = int64(this.ort, last, [last.length]);
    return this.session.run(feeds);
  }

  /** compute and keep the KV cache of a prompt prefix shared by many requests */
  async addPrefix(ids) {
    const key = ids.join(",");
    if (!ids.length || this.prefixes.has(key)) return;
    const n = ids.length;
    const out = await this.run({
      input_ids: int64(this.ort, ids, [1, n]), attention_mask: int64(this.ort, ids.map(() => 1), [1, n]),
      position_ids: int64(this.ort, ids.map((_, i) => i), [1, n]), ...this.emptyPast(1),
    }, [n - 1]);
    this.prefixes.set(key, { ids, kv: Object.fromEntries(this.pastNames.map((p, i) => [p, out[this.presentNames[i]]])) });
  }

  /** the longest cached prefix of `row` that leaves at least one token to feed */
  prefixOf(row) {
    let best = null;
    for (const p of this.prefixes.values()) {
      if ((best ? best.ids.length : 0) < p.ids.length && p.ids.length < row.length && p.ids.every((t, i) => row[i] === t)) best = p;
    }
    return best;
  }

  async backend(prompts) {
    const b = new LlamaBackend(this, prompts.length);
    if (this.prefixes.size) b.startFromPrefixes(prompts.map((p) => this.prefixOf(p)));
    return b;
  }
}

class LlamaBackend {
  constructor(model, n) {
    this.m = model;
    this.slot = new Map([...Array(n).keys()].map((r) => [r, r])); // row -> batch index in the cache
    this.kv = null;
    this.mask = [...Array(n)].map(() => []); // per batch index: the cache's mask
    this.nextPos = new Array(n).fill(0);
    this.skip = new Array(n).fill(0); // prompt tokens already in the cache (prefix cache)
  }

  startFromPrefixes(prefixes) {
    const lens = prefixes.map((p) => (p ? p.ids.length : 0));
    const width = Math.max(...lens);
    if (!width) return;
    const n = prefixes.length, ort = this.m.ort;
    this.kv = Object.fromEntries(this.m.pastNames.map((name) => {
      const [h, d] = this.m.shape[name];
      const data = new Float32Array(n * h * width * d);
      prefixes.forEach((p, i) => {
        if (!p) return;
        const src = p.kv[name].data, len = p.ids.length;
        for (let k = 0; k < h; k++) data.set(src.subarray(k * len * d, (k + 1) * len * d), ((i * h + k) * width + width - len) * d);
      });
      return [name, new ort.Tensor("float32", data, [n, h, width, d])];
    }));
    this.mask = lens.map((len) => [...Array(width)].map((_, j) => (j >= width - len ? 1 : 0)));
    this.nextPos = [...lens];
    this.skip = [...lens];
  }

  schedule(active) {
    return [...active];
  }

  async feed(rows, tokens) {
    const ort = this.m.ort;
    if (rows.some((r) => this.skip[r])) { // the first call: the cached prefixes are not fed again
      tokens = tokens.map((t, i) => t.slice(this.skip[rows[i]]));
      for (const r of rows) this.skip[r] = 0;
    }
    this._compact(rows);
    const b = rows.length, width = Math.max(...tokens.map((t) => t.length));
    const ids = [], newMask = [], pos = [];
    let past, last;
    if (this.kv === null) { // prefill: left padding, real tokens right-aligned
      tokens.forEach((t) => {
        let seen = 0;
        for (let j = 0; j < width; j++) {
          const real = j >= width - t.length;
          ids.push(real ? t[j - (width - t.length)] : this.m.padId);
          newMask.push(real ? 1 : 0);
          if (real) seen++;
          pos.push(Math.max(seen - 1, 0));
        }
      });
      past = this.m.emptyPast(b);
      last = tokens.map(() => width - 1);
    } else {
      tokens.forEach((t, i) => {
        for (let j = 0; j < width; j++) {
          ids.push(j < t.length ? t[j] : this.m.padId);
          newMask.push(j < t.length ? 1 : 0);
          pos.push(this.nextPos[i] + j);
        }
      });
      past = this.kv;
      last = tokens.map((t) => t.length - 1);
    }
    const mask = this.mask.map((m, i) => m.concat(newMask.slice(i * width, (i + 1) * width)));
    const out = await this.m.run({
      input_ids: int64(ort, ids, [b, width]), attention_mask: int64(ort, mask.flat(), [b, mask[0].length]),
      position_ids: int64(ort, pos, [b, width]), ...past,
    }, last);
    this.kv = Object.fromEntries(this.m.pastNames.map((p, i) => [p, out[this.m.presentNames[i]]]));
    this.mask = mask;
    this.nextPos = this.nextPos.map((p, i) => p + tokens[i].length);
    return lastLogits(out.logits, last, this.m.session.inputNames.includes(LAST_INDEX));
  }

  /** drop released rows from the cache so that the batch order equals `rows` */
  _compact(rows) {
    const keep = rows.map((r) => this.slot.get(r));
    if (keep.length === this.mask.length && keep.every((k, i) => k === i)) return;
    this.mask = keep.map((k) => this.mask[k]);
    this.nextPos = keep.map((k) => this.nextPos[k]);
    if (this.kv !== null) {
      this.kv = Object.fromEntries(Object.entries(this.kv).map(([n, t]) => [n, selectRows(this.m.ort, t, keep)]));
    }
    this.slot = new Map(rows.map((r, i) => [r, i]));
  }

  release() {}
}
