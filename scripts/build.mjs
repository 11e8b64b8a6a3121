#!/usr/bin/env node
// `npm run build`: compiles src/ and migrations/ with tsc (tsconfig.build.json) into dist/, then bundles the
// program into dist/main.js, the entry point: `node dist/main.js start` is what the Docker image runs.
//
// Why a bundle: V8 keeps the source text of every module a program loads, and Effect's modules are mostly
// documentation comments. Run from the compiled tree, an idle daemon held 46 MB of heap and 160 MB resident;
// as this bundle (comments and whitespace gone, names kept for stack traces), 24 MB and 133 MB, and about
// 30 MB less resident under load. dist/main.js.map maps back to src/ (`node --enable-source-maps`).
//
//   npm run build [-- --out-dir DIR]
//
// --out-dir builds somewhere else (the compiled-daemon test builds under .data/ so that it never replaces a
// dist/ that is running). DIR must be inside the checkout: the compiled modules find node_modules and
// package.json ("type": "module") by walking up from it.
import { build } from "esbuild"
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
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
// src/main.js. The bundle holds it and every dependency but Node's own modules. The CommonJS dependencies (pg,
// ioredis) call require(), which an ES module does not have: the banner gives them Node's.
// ioredis finds its own version (sent as CLIENT SETINFO LIB-VER) by reading ../../package.json from __dirname,
// which a bundle does not have: it would report "error-fetching-version". The version is written in at build time.
const ioredisVersion = JSON.parse(
  readFileSync(createRequire(import.meta.url).resolve("ioredis/package.json"), "utf8")
).version
const ioredisPackageMeta = {
  name: "ioredis-package-meta",
  setup(build) {
    build.onLoad({ filter: /[\\/]ioredis[\\/]built[\\/]utils[\\/]index\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8")
      const declaration = "let cachedPackageMeta = null;"
      if (!source.includes(declaration)) throw new Error(`${args.path}: no "${declaration}" to set the version in`)
      return { contents: source.replace(declaration, `let cachedPackageMeta = { version: ${JSON.stringify(ioredisVersion)} };`), loader: "js" }
    })
  }
}

await build({
  entryPoints: [path.join(outDir, "src/main.js")],
  outfile: path.join(outDir, "main.js"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  logLevel: "warning",
  plugins: [ioredisPackageMeta],
  // require() for the CommonJS dependencies; __dirname for ioredis's error stacks (its only other use of it).
  banner: {
    js: "import { createRequire as __createRequire } from \"node:module\"; const require = __createRequire(import.meta.url); " +
      "import { fileURLToPath as __fileURLToPath } from \"node:url\"; const __dirname = __fileURLToPath(new URL(\".\", import.meta.url));"
  }
})
