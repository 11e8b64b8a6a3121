#!/usr/bin/env node
// Counts the machine instructions the writer's JavaScript side takes per session, deterministically: valgrind
// (callgrind) counts every instruction node executes, and `node --predictable` makes V8's compilation and garbage
// collection single-threaded and repeatable (without it the count varied by 12 % between runs of one script; with
// it, by 0.001 %). On this shared machine wall-clock and CPU time drift by ±10–15 % from run to run, which hides any
// change under about a tenth: this is the measure for changes smaller than that. It leaves out PostgreSQL, Redis, the
// pg and ioredis drivers and Effect's runtime (see instructions-workload.ts for what it runs).
//
//   node bench/tools/instructions.mjs [--mode first|append] [--sessions 400] [--messages 20] [--rounds 3]
//     [--upto hash|decode|decide|ledger|all] [--root DIR]...
//
// Each checkout (this one, or every --root DIR given, e.g. a `git worktree` of another commit) runs the workload twice
// under callgrind, on N and 2N of the same 2N prepared sessions; the difference, divided by N (and by the rounds in
// append mode), is the figure: node's start-up, the bundle's loading and the data's preparation cancel out. A
// checkout's src/ is bundled with esbuild into .data/instructions/ (removed after). Compare figures taken with the same
// options only: the compiler's warm-up does not cancel out at small N (first sync, at 50 sessions: 1.81 million
// instructions a session; at 100: 1.42 million). Under valgrind, SHA-256 runs OpenSSL's AVX2 code, not the SHA
// extensions this machine's CPU has: hashing weighs more here than it does in a real run. The count includes the
// garbage collector's work, which grows with everything the bundle loads: importing `SessionStore` (and with it
// Effect's SQL client) into the workload read 1.94 instead of 1.42 million a first-sync session. Keep the workload's
// imports to the pure core. Takes about a minute per checkout.
import { build } from "esbuild"
import { spawnSync } from "node:child_process"
import { mkdirSync, rmSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const self = path.resolve(here, "../..")
const args = process.argv.slice(2)
const value = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : fallback
}
const mode = value("mode", "first")
const sessions = Number(value("sessions", mode === "first" ? 400 : 200))
const messages = Number(value("messages", mode === "first" ? 20 : 40))
const rounds = Number(value("rounds", 3))
// append mode: how far each write goes (hash, decode, decide, ledger, all), for a breakdown by difference
const upto = value("upto", "all")
const roots = args.flatMap((a, i) => (args[i - 1] === "--root" ? [path.resolve(a)] : []))
if (roots.length === 0) roots.push(self)
if (!["first", "append"].includes(mode)) {
  console.error("usage: node bench/tools/instructions.mjs [--mode first|append] [--sessions N] [--messages M] [--rounds R] [--root DIR]...")
  process.exit(2)
}
if (spawnSync("valgrind", ["--version"]).status !== 0) {
  console.error("valgrind is not installed (Debian: apt-get install valgrind)")
  process.exit(1)
}

const outDir = path.join(self, ".data", "instructions")
mkdirSync(outDir, { recursive: true })

const count = (bundle, n) => {
  const run = spawnSync("valgrind", [
    "--tool=callgrind", "--smc-check=all-non-file", "--callgrind-out-file=/dev/null",
    process.execPath, "--predictable", bundle,
    ...(mode === "append" ? ["--append"] : []),
    "--sessions", String(n), "--prepare", String(2 * sessions), "--messages", String(messages), "--rounds", String(rounds),
    "--upto", upto
  ], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  const m = /Collected : (\d+)/.exec(run.stderr)
  if (run.status !== 0 || m === null) {
    console.error(run.stderr.split("\n").filter((l) => !l.startsWith("==")).join("\n"))
    throw new Error(`the workload failed under valgrind (exit ${run.status})`)
  }
  return Number(m[1])
}

const writes = mode === "first" ? sessions : sessions * rounds
console.log(
  `${mode === "first" ? "first sync" : "live append"}: ${messages} messages a session` +
    `${mode === "append" ? `, ${rounds} rounds of one appended message` : ""}; ${sessions} sessions measured (2 runs each)`
)
for (const root of roots) {
  const bundle = path.join(outDir, `${path.basename(root)}-${Date.now()}.mjs`)
  await build({
    entryPoints: [path.join(here, "instructions-workload.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: bundle,
    // The workload's imports of this checkout's src/ are resolved in the one measured.
    plugins: [{
      name: "root",
      setup: (b) =>
        b.onResolve({ filter: /^\.\.\/\.\.\/src\// }, (a) => ({
          path: path.join(root, a.path.slice("../../".length)).replace(/\.js$/, ".ts")
        }))
    }],
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    // A worktree without its own node_modules (`git worktree add`) finds the packages of this checkout.
    nodePaths: [path.join(self, "node_modules")],
    logLevel: "error"
  })
  let once, twice
  try {
    once = count(bundle, sessions)
    twice = count(bundle, 2 * sessions)
  } finally {
    rmSync(bundle, { force: true })
  }
  const per = (twice - once) / writes
  console.log(`${root}: ${Math.round(per).toLocaleString("en-US")} instructions per session write`)
}
