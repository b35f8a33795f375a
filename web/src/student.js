// The embedded predictor (vedit/decoding/predictor.py) for a site written by `vedit web build`:
// web.json (the export's compiled grammar, tools, prompt parts, limits, all rendered by Python from
// the export), tokenizer.json and the ONNX files. predict(intent) returns what
// `vedit predict --json` prints: {"intent": ..., "<tool>": {...}, ...}, or {"intent", "error"}
// for an intent the intent rule refuses (vedit/intents.py), as the in-process client refuses it.
import { CompiledGrammar } from "./grammar.js";
import { intentProblem } from "./intents.js";
import { LlamaModel } from "./llama.js";
import { decode } from "./loop.js";
import { PromptBuilder } from "./prompts.js";
import { T5Model } from "./t5.js";
import { pyStrip } from "./text.js";
import { StudentTokenizer } from "./tokenizer.js";

export const WEB_FORMAT = "vedit-web";
export const WEB_VERSION = 2;

/**
 * @typedef {{ort: any, json(name: string): Promise<any>, bytes(name: string): Promise<Uint8Array>,
 *   sessionOptions?: any}} Source  files of the site's model folder, and onnxruntime-web
 */

export class Student {
  /** @param {Source} src */
  static async load(src) {
    const meta = await src.json("web.json");
    if (meta.format !== WEB_FORMAT || meta.version !== WEB_VERSION) {
      throw new Error(`web.json is ${meta.format} v${meta.version}, this runtime reads ${WEB_FORMAT} v${WEB_VERSION}; rebuild the site with vedit web build`);
    }
    if (meta.family !== "t5" && meta.family !== "llama") {
      throw new Error(`the web runtime serves T5 and Llama students; this export is ${meta.family}`);
    }
    const tokenizer = new StudentTokenizer(await src.json("tokenizer.json"), await src.json("tokenizer_config.json"));
    const open = async (name) => src.ort.InferenceSession.create(await src.bytes(name), src.sessionOptions || {});
    let model;
    if (meta.family === "t5") {
      const [encoder, decoder, decoderWithPast] = await Promise.all(
        [meta.files.encoder, meta.files.decoder, meta.files.decoder_with_past].map(open));
      model = new T5Model(src.ort, { encoder, decoder, decoderWithPast },
        { padId: meta.pad_token_id, startId: meta.decoder_start_token_id });
    } else {
      model = new LlamaModel(src.ort, await open(meta.files.decoder), { padId: meta.pad_token_id, kvShape: meta.kv_shape });
      for (const ids of meta.prefixes) await model.addPrefix(ids); // as Predictor.load does
    }
    return new Student(meta, tokenizer, model);
  }

  constructor(meta, tokenizer, model) {
    this.meta = meta;
    this.grammar = new CompiledGrammar(meta.grammar);
    this.tools = meta.tools;
    this.prompts = new PromptBuilder(meta.tools, tokenizer, meta.max_input_tokens);
    this.model = model;
    this._queue = Promise.resolve();
  }

  /** One intent's answer; requests run one at a time (the sessions are not re-entrant).
   * `stats` adds the decoding cost (as `vedit predict --json --stats`), `trace` each tool's tokens;
   * `bias(tool, position, logits)` adjusts a tool row's logits at its free steps (Predictor.predict's
   * `bias` for one request; used by the tests to steer both runtimes).
   * @param {string} intent
   * @param {{stats?: boolean, trace?: boolean, bias?: (tool: string, position: number, logits: Float32Array) => Float32Array}} [opts] */
  predict(intent, opts = {}) {
    const run = this._queue.then(() => this._predict(intent, opts));
    this._queue = run.catch(() => {});
    return run;
  }

  async _predict(intent, { stats = false, trace = false, bias = null } = {}) {
    const problem = intentProblem(intent, this.meta.max_intent_bytes);
    if (problem) return { intent, error: problem };
    const built = this.prompts.build(intent);
    const matchers = this.tools.map((t) => this.grammar.matcher(t.name));
    const backend = await this.model.backend(built.ids);
    const prefixes = this.meta.family === "t5" ? built.ids.map(() => [this.meta.decoder_start_token_id]) : built.ids;
    const rowBias = bias ? (row, position, logits) => bias(this.tools[row].name, position, logits) : null;
    const traces = await decode(backend, matchers, prefixes, { bias: rowBias });
    /** @type {any} */
    const out = { intent };
    this.tools.forEach((t, k) => { out[t.name] = asValue(t, this.grammar.text(traces[k].tokens)); });
    if (stats) {
      out.stats = {
        decoder_calls: new Set(traces.flatMap((tr) => tr.calls)).size,
        free_tokens: traces.reduce((n, tr) => n + tr.free, 0),
        forced_tokens: traces.reduce((n, tr) => n + tr.forced, 0),
        truncated: built.truncated,
      };
    }
    if (trace) out.trace = Object.fromEntries(this.tools.map((t, k) => [t.name, traces[k].tokens]));
    return out;
  }
}

/** A tool's generated text as its JSON value (ToolCall.as_value: the grammar writes canonical JSON,
 * keys in schema order, so parsing keeps that order for any tools file). */
export function asValue(tool, text) {
  let s = pyStrip(text);
  if (s.toLowerCase().startsWith("parameters:")) s = pyStrip(s.slice("parameters:".length));
  return JSON.parse(s);
}
