// tokenizer.json through @huggingface/tokenizers, with what that library leaves out for vedit's
// students: Unigram byte fallback (a piece the vocabulary lacks becomes its UTF-8 bytes as
// <0xNN> tokens, as the Rust tokenizers crate does) and the token end offsets that the prompt
// truncation rule of vedit/decoding/prompts.py cuts intents at.
import { Tokenizer } from "@huggingface/tokenizers";

const ENC = new TextEncoder();
const SPACE = "\u2581";

export class StudentTokenizer {
  /** @param {any} tokenizerJson @param {any} tokenizerConfig */
  constructor(tokenizerJson, tokenizerConfig) {
    const model = tokenizerJson.model || {};
    if (model.type !== "Unigram") {
      throw new Error(`the web runtime reads Unigram tokenizers (vedit's student recipe); this one is ${model.type}`);
    }
    this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    /** @type {Map<string, number>} */
    this.vocab = new Map(model.vocab.map(([piece], i) => [piece, i]));
    for (const a of tokenizerJson.added_tokens || []) this.vocab.set(a.content, a.id);
    this.unkId = model.unk_id;
    this.byteFallback = Boolean(model.byte_fallback);
    this.special = new Set((tokenizerJson.added_tokens || []).filter((a) => a.special).map((a) => a.id));
    const norm = JSON.stringify(tokenizerJson.normalizer || null);
    // the offsets below assume vedit's normalizer: Prepend("▁") then Replace(" ", "▁")
    this.prepends = norm.includes('"Prepend"');
  }

  /** @returns {{ids: number[], pieces: (string|null)[]}} pieces: the text each token covers (null: special) */
  _encode(text, addSpecial) {
    const e = this.tok.encode(text, { add_special_tokens: addSpecial });
    const ids = [], pieces = [];
    e.ids.forEach((id, k) => {
      const piece = e.tokens[k];
      if (this.special.has(id) && this.vocab.get(piece) === id) {
        ids.push(id); pieces.push(null); return;
      }
      if (this.byteFallback && id === this.unkId && !this.vocab.has(piece)) {
        const bytes = Array.from(ENC.encode(piece));
        const byteIds = bytes.map((b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
        if (byteIds.every((i) => i !== undefined)) {
          // every byte token but the last gets "": the characters end with the last one
          byteIds.forEach((i, j) => { ids.push(/** @type {number} */ (i)); pieces.push(j === bytes.length - 1 ? piece : ""); });
          return;
        }
      }
      ids.push(id); pieces.push(piece);
    });
    return { ids, pieces };
  }

  /** ids with the post-processor's special tokens (EOS for T5, BOS for Llama) */
  encode(text) {
    return this._encode(text, true).ids;
  }

  /**
   * The end positions (in code points of `text`, > 0, sorted, unique) of the tokens of `text`
   * alone: what Python's `sorted({end for _, end in encode(text).offsets if end > 0})` gives.
   * @param {string} text @returns {number[]}
   */
  tokenEnds(text) {
    const { ids, pieces } = this._encode(text, false);
    const ends = new Set();
    let pos = 0; // in code points of `text`
    let segment = true; // at the start of a text segment (added tokens split the text; the
    // normalizer then prepends its ▁ to each non-empty segment, a ▁ that stands for no character)
    let segStart = 0;
    pieces.forEach((piece, k) => {
      if (piece === "") return; // a byte-fallback token before its character's last byte
      if (piece === null) { // a special token written in the text itself ("</s>")
        pos += Array.from(this.tok.decode([ids[k]], { skip_special_tokens: false })).length;
        ends.add(pos);
        segment = true;
        segStart = pos;
        return;
      }
      let n = Array.from(piece).length;
      if (segment && this.prepends && piece.startsWith(SPACE)) n -= 1;
      segment = false;
      pos += n;
      const end = Math.max(pos, segStart + 1); // the prepended ▁ maps to the segment's first character
      if (end > 0) ends.add(end);
    });
    return [...ends].sort((a, b) => a - b);
  }
}
