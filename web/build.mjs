// Build web/dist: the page's bundle (esbuild), onnxruntime-web's WASM files and the static files.
// `vedit web build` copies dist into every site. Run with `npm run build` (scripts/web.sh).
// A previous OUT_DIR is replaced.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(process.argv[2] || path.join(here, "dist")); // node build.mjs [OUT_DIR]
await rm(dist, { recursive: true, force: true });
await mkdir(dist);
await build({
  entryPoints: [path.join(here, "src", "page.js")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "linked",
  outfile: path.join(dist, "vedit-web.js"),
  logLevel: "warning",
});
const ortDist = path.join(here, "node_modules", "onnxruntime-web", "dist");
for (const f of ["ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs"]) {
  await copyFile(path.join(ortDist, f), path.join(dist, f));
}
for (const f of ["index.html", "sw.js"]) await copyFile(path.join(here, "static", f), path.join(dist, f));
console.log(`built ${dist}`);
