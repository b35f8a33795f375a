// The export's compiled grammar (vedit/decoding/grammar.py), read from the JSON rendering that
// `vedit web build` writes from the same CompiledGrammar object: per tool, CSR tables (state s
// allows tokens[indptr[s]..indptr[s+1]], sorted, leading to next[...]; EOS leads to DONE).
import { decodeUtf8 } from "./text.js";

export const DONE = -1;

export class ToolAutomaton {
  /** @param {string} tool @param {{indptr: number[], tokens: number[], next: number[], final: number[]}} t */
  constructor(tool, t) {
    this.tool = tool;
    this.indptr = Int32Array.from(t.indptr);
    this.tokens = Int32Array.from(t.tokens);
    this.next = Int32Array.from(t.next);
    this.final = Uint8Array.from(t.final);
  }

  allowed(state) {
    return this.tokens.subarray(this.indptr[state], this.indptr[state + 1]);
  }

  /** the state after `token`, DONE after EOS, or null if refused */
  step(state, token) {
    let lo = this.indptr[state], hi = this.indptr[state + 1];
    while (lo < hi) { // binary search in the sorted row
      const mid = (lo + hi) >> 1;
      if (this.tokens[mid] < token) lo = mid + 1; else hi = mid;
    }
    return lo < this.indptr[state + 1] && this.tokens[lo] === token ? this.next[lo] : null;
  }
}

/** Per-row grammar state, the Matcher of grammar.py. */
export class Matcher {
  constructor(automaton) {
    this.a = automaton;
    this.state = 0;
    this.finished = false;
  }

  allowedTokens() {
    return this.finished ? this.a.tokens.subarray(0, 0) : this.a.allowed(this.state);
  }

  advance(token) {
    if (this.finished) return false;
    const n = this.a.step(this.state, token);
    if (n === null) return false;
    if (n === DONE) this.finished = true; else this.state = n;
    return true;
  }

  /** tokens the grammar forces from here (each state on the way allows one token); ends with EOS when complete */
  forcedTokens() {
    const out = [];
    if (this.finished) return out;
    const a = this.a;
    let s = this.state;
    while (a.indptr[s + 1] - a.indptr[s] === 1) {
      const k = a.indptr[s];
      out.push(a.tokens[k]);
      s = a.next[k];
      if (s === DONE) break;
    }
    return out;
  }

  isFinished() {
    return this.finished;
  }
}

export class CompiledGrammar {
  /** @param {{mode: string, eos_token_id: number, automata: Object<string, any>, token_bytes: Object<string, string>}} g */
  constructor(g) {
    this.mode = g.mode;
    this.eos = g.eos_token_id;
    /** @type {Map<string, ToolAutomaton>} */
    this.automata = new Map(Object.entries(g.automata).map(([name, t]) => [name, new ToolAutomaton(name, t)]));
    /** @type {Map<number, Uint8Array>} */
    this.tokenBytes = new Map(Object.entries(g.token_bytes).map(([i, hex]) => [Number(i), hexBytes(hex)]));
  }

  matcher(tool) {
    const a = this.automata.get(tool);
    if (!a) throw new Error(`no grammar for tool ${tool}; known: ${[...this.automata.keys()].join(", ")}`);
    return new Matcher(a);
  }

  /** the exact text of generated tokens (EOS writes nothing) */
  text(ids) {
    const parts = ids.filter((i) => i !== this.eos).map((i) => this.tokenBytes.get(i) || new Uint8Array(0));
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    return decodeUtf8(all);
  }
}

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
