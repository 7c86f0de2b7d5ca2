// Build the browser client into web/dist/ (served by the server at /static/).
// Reproducible: inputs are src/ and the locked npm packages; no network.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const OUT = "dist";
// Old phones: Chrome 64+, Firefox 68+, Safari 14.1+ (ES2017, no polyfills).
const TARGET = ["es2017", "chrome64", "firefox68", "safari14.1"];
// Budget for everything index.html loads, gzip-compressed, in bytes.
const BUDGET_GZIP_BYTES = 150 * 1024;

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });

await build({
  entryPoints: ["src/app.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: TARGET,
  legalComments: "linked",
  outfile: `${OUT}/app.js`,
  logLevel: "warning",
});
await build({
  entryPoints: ["src/app.css"],
  bundle: true,
  minify: true,
  target: TARGET,
  outfile: `${OUT}/app.css`,
  logLevel: "warning",
});

// Cache-busting: index.html names each asset with a short content hash.
const loaded = ["app.js", "app.css"];
let html = readFileSync("src/index.html", "utf8");
for (const name of loaded) {
  const hash = createHash("sha256").update(readFileSync(`${OUT}/${name}`)).digest("hex").slice(0, 10);
  html = html.replace(`/static/${name}"`, `/static/${name}?v=${hash}"`);
}
writeFileSync(`${OUT}/index.html`, html);

let total = 0;
for (const name of ["index.html", ...loaded]) {
  const raw = readFileSync(`${OUT}/${name}`);
  const gz = gzipSync(raw, { level: 9 }).length;
  total += gz;
  console.log(`${name.padEnd(12)} ${String(raw.length).padStart(7)} B raw ${String(gz).padStart(7)} B gzip`);
}
console.log(`first load   ${String(total).padStart(7)} B gzip (budget ${BUDGET_GZIP_BYTES})`);
if (total > BUDGET_GZIP_BYTES) {
  console.error("page weight over budget");
  process.exit(1);
}
