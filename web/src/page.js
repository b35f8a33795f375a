// The page: loads the site's student, answers ?intent=... on load and the text box as the user
// types. The answer JSON goes to #answer, its latency to #latency; <body data-state> says
// "loading", "ready" or "failed" and data-answered counts answers shown (what tests wait on).
import * as ort from "onnxruntime-web/wasm";
import { Student } from "./student.js";

/* global __VEDIT_WEBGPU__ */
/** this bundle is onnxruntime-web's WebGPU build (build.mjs defines it per bundle) */
const WEBGPU = typeof __VEDIT_WEBGPU__ !== "undefined" && __VEDIT_WEBGPU__;

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const base = new URL("./", location.href);

async function main() {
  document.body.dataset.state = "loading";
  document.body.dataset.answered = "0";
  ort.env.wasm.wasmPaths = base.href; // the site's own wasm files: nothing is fetched elsewhere
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  if ("serviceWorker" in navigator && location.protocol.startsWith("http")) {
    navigator.serviceWorker.register("./sw.js").catch((e) => console.warn("no offline cache:", e));
  }
  const fetchOk = async (name) => {
    const r = await fetch(new URL(`model/${name}`, base));
    if (!r.ok) throw new Error(`model/${name}: HTTP ${r.status}`);
    return r;
  };
  const providers = WEBGPU && "gpu" in navigator && (await navigator.gpu.requestAdapter().catch(() => null))
    ? ["webgpu", "wasm"] : ["wasm"];
  const t0 = performance.now();
  const student = await Student.load({
    ort,
    json: async (name) => (await fetchOk(name)).json(),
    bytes: async (name) => new Uint8Array(await (await fetchOk(name)).arrayBuffer()),
    // WebGPU where offered (onnxruntime-web falls back to the next provider when it cannot start)
    sessionOptions: { executionProviders: providers },
  });
  const loadMs = performance.now() - t0;
  document.body.dataset.state = "ready";
  $("status").textContent = `${student.meta.family} ${student.meta.precision} student loaded in ${loadMs.toFixed(0)} ms`;
  $("backend").textContent = `onnxruntime-web ${ort.env.versions?.web || ""} ${providers.join(" > ")}, ${ort.env.wasm.numThreads} thread(s)`;

  let latest = 0;
  const answer = async (intent) => {
    const ticket = ++latest;
    const t = performance.now();
    const out = await student.predict(intent);
    const ms = performance.now() - t;
    if (ticket !== latest) return; // the user typed on: show the newest answer only
    $("answer").textContent = show(out);
    $("latency").textContent = `${ms.toFixed(1)} ms`;
    document.body.dataset.ms = String(ms);
    document.body.dataset.answered = String(Number(document.body.dataset.answered) + 1);
  };
  self.vedit = { student, answer }; // for the console and the tests
  const box = /** @type {HTMLInputElement} */ ($("intent"));
  box.addEventListener("input", () => answer(box.value));
  const q = new URLSearchParams(location.search).get("intent");
  if (q !== null) {
    box.value = q;
    await answer(q);
  }
  document.body.dataset.sinceStart = String(performance.now());
}

/** The answer JSON, one line per key (a tool's call on one line, as `vedit predict` prints them). */
function show(answer) {
  const lines = Object.entries(answer).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return `{\n${lines.join(",\n")}\n}`;
}

main().catch((e) => {
  document.body.dataset.state = "failed";
  $("status").textContent = `error: ${e && e.message ? e.message : e}`;
  console.error(e);
});
