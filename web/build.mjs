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
// two bundles of the same page: onnxruntime-web's WASM build (CPU), and its WebGPU build (WebGPU
// where the browser offers it, else the same WASM CPU kernels), for `vedit web build --webgpu`
for (const [out, webgpu] of [["vedit-web.js", false], ["vedit-web-webgpu.js", true]]) {
  await build({
    entryPoints: [path.join(here, "src", "page.js")],
    bundle: true,
    absWorkingDir: here, // where the alias resolves, whatever the caller's directory
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "linked",
    define: { __VEDIT_WEBGPU__: String(webgpu) },
    alias: webgpu ? { "onnxruntime-web/wasm": "onnxruntime-web/webgpu" } : {},
    outfile: path.join(dist, out),
    logLevel: "warning",
  });
}
const ortDist = path.join(here, "node_modules", "onnxruntime-web", "dist");
for (const f of ["ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs",
  "ort-wasm-simd-threaded.asyncify.wasm", "ort-wasm-simd-threaded.asyncify.mjs"]) {
  await copyFile(path.join(ortDist, f), path.join(dist, f));
}
for (const f of ["index.html", "sw.js"]) await copyFile(path.join(here, "static", f), path.join(dist, f));
console.log(`built ${dist}`);
