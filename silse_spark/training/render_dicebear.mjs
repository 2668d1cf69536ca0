// Render DiceBear avatars to SVG files: node render_dicebear.mjs OUT_DIR PER_STYLE SEED_PREFIX
// Module resolution: DICEBEAR_MODULES is pointing at the node_modules holding @dicebear/*.
import { createRequire } from "node:module";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const require = createRequire(join(resolve(process.env.DICEBEAR_MODULES), "x.js"));
const { createAvatar } = require("@dicebear/core");
const collection = require("@dicebear/collection");

const [outDir, perStyleArg, prefix] = process.argv.slice(2);
const perStyle = Number.parseInt(perStyleArg, 10);
mkdirSync(outDir, { recursive: true });
let count = 0;
for (const [name, style] of Object.entries(collection)) {
  if (!style || typeof style.create !== "function") continue;
  for (let i = 0; i < perStyle; i += 1) {
    const seed = `${prefix}-${name}-${i}`;
    const svg = createAvatar(style, { seed, size: 128 }).toString();
    writeFileSync(join(outDir, `${name}__${i}.svg`), svg);
    count += 1;
  }
}
console.log(`rendered ${count} svg avatars`);
