// Node entry: answer intents with a built site's model, through onnxruntime-web's WASM backend
// (the browser's engine). Usage: node web/src/node.mjs SITE_DIR [--stats] [--trace] [--time] [--prompts] < intents.json
// (a JSON list of strings); prints one JSON answer per line. Used by the identical-answers tests.
// An item may also be {"intent": "...", "steer": [[tool, position, token, add], ...]}: `add` is added to
// the logit of `token` in `tool`'s row at its free step `position` (the tests' bias, as Python's).
// --prompts prints each intent's prompt ids instead (one list per tool; the tests compare them with
// the Python PromptBuilder's).
import { readFile } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-web";
import { Student } from "./student.js";

const [site, ...flags] = process.argv.slice(2);
if (!site) {
  console.error("usage: node web/src/node.mjs SITE_DIR [--stats] [--trace] [--time] [--prompts] < intents.json");
  process.exit(2);
}
ort.env.wasm.numThreads = 1;
const dir = path.join(site, "model");
const student = await Student.load({
  ort,
  json: async (name) => JSON.parse(await readFile(path.join(dir, name), "utf8")),
  bytes: async (name) => new Uint8Array(await readFile(path.join(dir, name))),
});
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const intents = JSON.parse(Buffer.concat(chunks).toString("utf8"));
for (const item of intents) {
  const intent = typeof item === "string" ? item : item.intent;
  if (flags.includes("--prompts")) {
    process.stdout.write(JSON.stringify(student.prompts.build(intent).ids) + "\n");
    continue;
  }
  const t0 = performance.now();
  const answer = await student.predict(intent, {
    stats: flags.includes("--stats"), trace: flags.includes("--trace"), bias: steering(item.steer),
  });
  if (flags.includes("--time")) answer.ms = performance.now() - t0;
  process.stdout.write(JSON.stringify(answer) + "\n");
}

/** the bias of an item's "steer" list, or null */
function steering(steer) {
  if (!steer) return null;
  return (tool, position, logits) => {
    for (const [t, p, token, add] of steer) if (t === tool && p === position) logits[token] += add;
    return logits;
  };
}
