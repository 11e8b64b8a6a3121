#!/usr/bin/env node
// Benchmark: full sync of N sessions x M messages, against the reference pipeline measured in the same run.
//
//   node bench/full-sync.mjs [--sessions 100000] [--messages 20] [--rounds 1] [--skip-reference] [--keep]
//
// 1. Starts throwaway Redis + PostgreSQL under .data/bench (or uses REDIS_URL / DATABASE_URL when set).
// 2. Copies ../shared/bench (read-only) to .data/bench-ref and installs its dependencies once.
// 3. Loads N x M sessions in the app's format with the reference generator (gen.mjs, seed 42).
// 4. Runs the reference pipeline (pipeline.mjs, 3 batches in flight, no ledger) once over that data.
// 5. Runs `redis-pg-sync sync --json` into a fresh schema (first sync), then again over unchanged data.
// 6. Prints sessions/s, messages/s, the ratio to the reference, the second/first time ratio and peak RSS.
// 7. With --rounds N, runs the reference and a first sync (into another fresh schema) N-1 more times, alternately,
//    and prints each round's ratio and their median: the reference alone varies by a quarter between runs here.
// A script that prints figures, not a test: the machine is shared, so read ratios, not absolute times.
import { execFileSync, spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import path from "node:path"
import { option, root, setUp } from "./setup.mjs"

const args = process.argv.slice(2)
const opt = (name, fallback) => option(args, name, fallback)
const sessions = Number(opt("sessions", 100000))
const messages = Number(opt("messages", 20))
const skipReference = args.includes("--skip-reference")
const rounds = Number(opt("rounds", 1))

const { databaseUrl, env, refDir, resultsDir, refEnv } = await setUp()

console.log(`loading ${sessions.toLocaleString()} sessions x ${messages} messages into Redis ...`)
execFileSync("node", [path.join(refDir, "gen.mjs"), "--sessions", String(sessions), "--messages", String(messages), "--flush"], {
  env: refEnv,
  stdio: "inherit"
})

const runReference = () => {
  if (skipReference) return undefined
  console.log("reference pipeline (../shared/bench/pipeline.mjs, 3 in flight, no ledger) ...")
  execFileSync("node", [path.join(refDir, "pipeline.mjs"), "--sessions", String(sessions), "--messages", String(messages), "--runs", "1", "--resync", "false"], {
    env: refEnv,
    stdio: ["ignore", "inherit", "inherit"]
  })
  return JSON.parse(readFileSync(path.join(resultsDir, "pipeline-full-b5000-c3.json"), "utf8")).median
}
const reference = runReference()

const schema = `bench_${Date.now()}`
// Measure the compiled program, as it runs in production (the Docker image); tsx would add its own cost.
console.log("building dist/ ...")
execFileSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" })
const cli = path.join(root, "dist/main.js")
const runSync = (label, into = schema) => {
  console.log(`redis-pg-sync sync (${label}) ...`)
  const r = spawnSync("node", [cli, "sync", "--json"], { env: { ...env, PG_SCHEMA: into }, encoding: "utf8" })
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr)
    process.exit(1)
  }
  return JSON.parse(r.stdout.trim().split("\n").pop())
}
const first = runSync("first, empty PostgreSQL")
const second = runSync("second, unchanged data")
const more = []
for (let round = 2; round <= rounds; round++) {
  const ref = runReference()
  const into = `${schema}_r${round}`
  const again = runSync(`first, round ${round}`, into)
  execFileSync("psql", [databaseUrl, "-qc", `DROP SCHEMA ${into} CASCADE`], { stdio: "ignore" })
  more.push({ reference: ref, first: again })
}

const fmt = (x, d = 0) => Number(x).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d })
const totalMessages = sessions * messages
console.log(`\n== full sync, ${fmt(sessions)} sessions x ${messages} messages (${fmt(totalMessages)} messages)`)
console.log(`first sync:  ${fmt(first.seconds, 1)} s, ${fmt(first.scanned / first.seconds)} sessions/s, ` +
  `${fmt(first.messagesInserted / first.seconds)} messages/s, ${fmt(first.messagesInserted)} inserted, ` +
  `${fmt(first.events)} ledger events, peak RSS ${first.peakRssMb} MB`)
console.log(`second sync: ${fmt(second.seconds, 1)} s (${fmt((100 * second.seconds) / first.seconds, 1)} % of the first), ` +
  `${fmt(second.unchanged)} unchanged, ${fmt(second.events)} events, peak RSS ${second.peakRssMb} MB`)
if (reference) {
  const ours = first.messagesInserted / first.seconds
  console.log(`reference:   ${fmt(reference.secs, 1)} s, ${fmt(reference.messagesPerSec)} messages/s (no ledger)`)
  console.log(`ratio:       ${fmt((100 * ours) / reference.messagesPerSec, 1)} % of the reference's messages/s`)
}
if (more.length > 0) {
  const all = [{ reference, first }, ...more]
  all.forEach(({ reference: ref, first: f }, i) => {
    const ours = f.messagesInserted / f.seconds
    console.log(`round ${i + 1}:     ${fmt(f.seconds, 1)} s, ${fmt(ours)} messages/s` +
      (ref ? ` against ${fmt(ref.messagesPerSec)} (${fmt(ref.secs, 1)} s): ${fmt((100 * ours) / ref.messagesPerSec, 1)} %` : ""))
  })
  if (reference) {
    const ratios = all.map(({ reference: ref, first: f }) => (100 * f.messagesInserted / f.seconds) / ref.messagesPerSec).sort((a, b) => a - b)
    const mid = ratios.length / 2
    const median = ratios.length % 2 ? ratios[Math.floor(mid)] : (ratios[mid - 1] + ratios[mid]) / 2
    console.log(`median ratio over ${all.length} rounds: ${fmt(median, 1)} %`)
  }
}
if (first.messagesInserted !== totalMessages) console.log(`WARNING: inserted ${first.messagesInserted}, expected ${totalMessages}`)
if (!args.includes("--keep")) {
  execFileSync("psql", [databaseUrl, "-qc", `DROP SCHEMA ${schema} CASCADE`], { stdio: "inherit" })
}
