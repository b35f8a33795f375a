// Constrained greedy decoding with jump-forward: vedit/decoding/loop.py, line for line. Every
// row has a Matcher; at a free step the best allowed token is taken (ties: the lowest id, as
// argmax over masked logits); after each token the forced run is appended and fed with it, so
// each decoder call is one model decision per row.

/** greedy choice among `allowed` (sorted ids): the first maximum
 * @param {Float32Array} logits @param {Int32Array} allowed */
export function pick(logits, allowed) {
  if (allowed.length === 1) return allowed[0];
  let best = allowed[0], bestValue = logits[best];
  for (let k = 1; k < allowed.length; k++) {
    const v = logits[allowed[k]];
    if (v > bestValue || (Number.isNaN(v) && !Number.isNaN(bestValue))) { best = allowed[k]; bestValue = v; }
    if (Number.isNaN(bestValue)) break; // numpy's argmax stops at the first NaN
  }
  return best;
}

/**
 * Decode every row to completion; prefixes[i] is what row i feeds before its output.
 * @param {{schedule(active: number[]): number[], feed(rows: number[], tokens: number[][]): Promise<Float32Array[]>, release(row: number): void}} backend
 * @param {import("./grammar.js").Matcher[]} matchers
 * @param {number[][]} prefixes
 * @param {{jumpForward?: boolean, bias?: (row: number, position: number, logits: Float32Array) => Float32Array}} [opts]
 * bias: the Python loop's `bias` (vedit/decoding/loop.py Bias): adjusts a row's logits at its free
 * steps (position = tokens the row has generated so far) before the grammar's choice; the tests
 * steer both runtimes onto the same other path with it.
 */
export async function decode(backend, matchers, prefixes, { jumpForward = true, bias = null } = {}) {
  const traces = matchers.map(() => ({ tokens: [], free: 0, forced: 0, calls: [] }));
  const pending = prefixes.map((p) => [...p]);
  let active = [];
  matchers.forEach((m, i) => {
    if (jumpForward) takeForced(m, traces[i], pending[i]);
    if (m.isFinished()) backend.release(i); else active.push(i);
  });
  let callId = 0;
  while (active.length) {
    const rows = backend.schedule(active);
    const logits = await backend.feed(rows, rows.map((r) => pending[r]));
    rows.forEach((r, k) => {
      const m = matchers[r], tr = traces[r];
      tr.calls.push(callId);
      const allowed = m.allowedTokens();
      const row = bias && allowed.length > 1 ? bias(r, tr.tokens.length, Float32Array.from(logits[k])) : logits[k];
      const tok = pick(row, allowed);
      if (allowed.length > 1) tr.free++; else tr.forced++;
      if (!m.advance(tok)) throw new Error(`grammar refused its own allowed token ${tok}`);
      tr.tokens.push(tok);
      pending[r] = [tok];
      if (jumpForward && !m.isFinished()) takeForced(m, tr, pending[r]);
    });
    callId++;
    const still = [];
    for (const r of active) {
      if (matchers[r].isFinished()) backend.release(r); else still.push(r);
    }
    active = still;
  }
  return traces;
}

function takeForced(m, tr, pending) {
  for (const t of m.forcedTokens()) {
    m.advance(t);
    tr.tokens.push(t);
    tr.forced++;
    if (!m.isFinished()) pending.push(t);
  }
}
