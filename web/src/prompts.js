// Prompt ids for a request, with the truncation rule of vedit/decoding/prompts.py: an intent whose
// prompts exceed the input limit is cut to its longest start (at a token end) for which all of its
// prompts fit; only if the template alone is too long are the ids cut. Lone surrogates become
// U+FFFD first, as Python's encode("utf-8", "surrogatepass").decode("utf-8", "replace") does.
import { scalarText } from "./text.js";

export class PromptBuilder {
  /** @param {{prompt: [string, string]}[]} tools the text before and after the intent, per tool
   * @param {import("./tokenizer.js").StudentTokenizer} tokenizer @param {number} limit */
  constructor(tools, tokenizer, limit) {
    this.tools = tools;
    this.tok = tokenizer;
    this.limit = limit;
  }

  ids(intent) {
    return this.tools.map((t) => this.tok.encode(t.prompt[0] + intent + t.prompt[1]));
  }

  fits(ids) {
    return Math.max(...ids.map((i) => i.length)) <= this.limit;
  }

  /** @returns {{intent: string, usedIntent: string, ids: number[][], truncated: boolean}} */
  build(original) {
    const intent = scalarText(original);
    let ids = this.ids(intent);
    if (this.fits(ids)) return { intent: original, usedIntent: intent, ids, truncated: false };
    const cps = Array.from(intent);
    const ends = this.tok.tokenEnds(intent);
    let lo = 0, hi = ends.length - 1, best = "";
    while (lo <= hi) { // the longest start (by token boundary) whose prompts fit
      const mid = (lo + hi) >> 1;
      const cand = cps.slice(0, ends[mid]).join("");
      if (this.fits(this.ids(cand))) { best = cand; lo = mid + 1; } else hi = mid - 1;
    }
    ids = this.ids(best);
    if (!this.fits(ids)) ids = ids.map((i) => i.slice(0, this.limit));
    return { intent: original, usedIntent: best, ids, truncated: Array.from(best).length < Array.from(original).length };
  }
}
