#!/usr/bin/env node
// `npm run build`: compiles src/ and migrations/ with tsc (tsconfig.build.json) into dist/, then writes
// dist/main.js, the compiled entry point: `node dist/main.js start` is what the Docker image runs.
//
//   npm run build [-- --out-dir DIR]
//
// --out-dir builds somewhere else (the compiled-daemon test builds under .data/ so that it never replaces a
// dist/ that is running). DIR must be inside the checkout: the compiled modules find node_modules and
// package.json ("type": "module") by walking up from it.
import { spawnSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const args = process.argv.slice(2)
const at = args.indexOf("--out-dir")
if (args.length > 0 && (at !== 0 || args.length !== 2)) {
  console.error("usage: node scripts/build.mjs [--out-dir DIR]")
  process.exit(2)
}
const outDir = path.resolve(at === 0 ? args[1] : path.join(root, "dist"))

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const compiled = spawnSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json"), "--outDir", outDir], {
  stdio: "inherit"
})
if (compiled.status !== 0) process.exit(compiled.status ?? 1)

// tsc keeps the source layout (rootDir "." so that migrations/ sits beside src/), which puts the program at
// src/main.js; the entry point at the top of the output is this one line.
mkdirSync(outDir, { recursive: true })
writeFileSync(path.join(outDir, "main.js"), "// Written by scripts/build.mjs: the compiled entry point.\nimport \"./src/main.js\"\n")
