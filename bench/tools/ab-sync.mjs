#!/usr/bin/env node
// Alternates one-shot full syncs of the data already in Redis, each into a fresh schema that is dropped after, for
// two or more variants, and prints each run's time, peak RSS and CPU (through cpu-sample.mjs): the machine's speed
// drifts by a tenth or more within an hour, so compare variants run in turn, never one run against another hour's.
// A variant is `label|ENV=VALUE ...|node flags|root`; every part after the label may be empty, and root (a checkout
// with its own `npm run build`, e.g. a `git worktree` of another commit) defaults to this one.
//
//   node bench/tools/ab-sync.mjs [--rounds 2] "bound|SYNC_HEAP_GROWTH_PERCENT=50" "v8|" "c5|SYNC_WRITE_CONCURRENCY=5"
//
// Needs REDIS_URL and DATABASE_URL (e.g. `set -a; source .data/bench/services.env; set +a`) and `npm run build`.
import { spawnSync } from "node:child_process"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "../..")
const args = process.argv.slice(2)
const roundsAt = args.indexOf("--rounds")
const rounds = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 2
const variants = args.filter((a, i) => !a.startsWith("--") && i !== roundsAt + 1).map((spec) => {
  const [label, env = "", flags = "", dir = root] = spec.split("|")
  const vars = Object.fromEntries(env.split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]))
  return { label, vars, flags: flags.split(/\s+/).filter(Boolean), dir: dir || root }
})
if (variants.length < 2 || !process.env.DATABASE_URL || !process.env.REDIS_URL) {
  console.error('usage: REDIS_URL=… DATABASE_URL=… node bench/tools/ab-sync.mjs [--rounds N] "label|ENV=V|flags|root" "label|…" …')
  process.exit(2)
}
const psql = (sql) => spawnSync("psql", [process.env.DATABASE_URL, "-tAqc", sql], { encoding: "utf8" })
for (let round = 1; round <= rounds; round++) {
  for (const v of variants) {
    const schema = `ab_${v.label.replace(/\W/g, "_")}_${Date.now()}`
    const run = spawnSync("node", [path.join(here, "cpu-sample.mjs"), "--", "node", ...v.flags, path.join(v.dir, "dist/main.js"), "sync", "--json"], {
      env: { ...process.env, ...v.vars, PG_SCHEMA: schema },
      encoding: "utf8"
    })
    psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    const lines = run.stdout.trim().split("\n")
    const cpu = lines.find((l) => l.startsWith("run: ")) ?? "(no CPU line)"
    let summary = "(no summary)"
    try {
      const s = JSON.parse(lines[lines.length - 1])
      summary = `${s.seconds.toFixed(1)} s, peak RSS ${s.peakRssMb} MB, ${s.messagesInserted.toLocaleString("en-US")} messages`
    } catch {
      summary = `failed: ${run.stderr.trim().split("\n").slice(-3).join(" | ")}`
    }
    console.log(`round ${round}  ${v.label.padEnd(12)} ${summary}; ${cpu.replace(/^run: /, "")}`)
  }
}
