#!/usr/bin/env node
// Benchmark: rebuild of the projection from the ledger made by N sessions x M messages, against the raw
// `unnest … ON CONFLICT` ingest of the same N x M message rows (../shared/bench/pg-ingest.mjs) in the same run.
//
//   node bench/rebuild.mjs [--sessions 100000] [--messages 20] [--skip-reference] [--skip-verify] [--keep]
//        [--reuse-ledger] [--schema bench_rebuild] [--ref-batches 5000] [--ref-conc 1] [--ref-runs 1]
//        [--sample-ms 200]
//
// 1. Starts throwaway Redis + PostgreSQL under .data/bench (or uses REDIS_URL / DATABASE_URL when set), copies
//    ../shared/bench (read-only) to .data/bench-ref and installs its dependencies once (as bench/full-sync.mjs).
// 2. Compiles the program into .data/bench-rebuild-dist (not dist/: others may be running or rebuilding that)
//    and measures the compiled program, as it runs in production.
// 3. Builds the ledger: loads N x M sessions with the reference generator (gen.mjs, seed 42), drops the schema
//    (--schema, default bench_rebuild) and runs `redis-pg-sync sync --json` into it. --reuse-ledger skips this
//    step when the schema already holds a ledger of N x M messages (a rebuild leaves the ledger as it was).
//    Then, outside any clock: VACUUM ANALYZE of the schema's tables and a CHECKPOINT (pg-ingest checkpoints
//    before each of its runs too), so that neither autovacuum nor the sync's dirty buffers land in the rebuild.
// 4. Runs `redis-pg-sync rebuild --json` (replay into {schema}_rebuild, verify, swap), then `verify --json`
//    (--skip-verify skips it). Peak RSS and CPU time of the program come from process.resourceUsage(), read at
//    its exit by a preloaded module (--import). Meanwhile pg_stat_activity is sampled every --sample-ms: the
//    time the program's connections spend per kind of statement (and what they wait on) says where time goes.
// 5. Runs pg-ingest.mjs --methods unnest over the same N x M rows: batch --ref-batches (default 5000, the middle
//    of pg-ingest's own default list 1000,5000,10000), --ref-conc connections (default 1, pg-ingest's default),
//    --ref-runs runs (default 1; pg-ingest's default is 3). Rows are generated before its clock starts.
// 6. Prints rows/s of both, the ratio (issue 5's target: rebuild >= 75 % of the unnest ingest's rows/s), the
//    time writers were locked out, peak RSS, and a summary table. Drops the schema and pg-ingest's
//    bench_messages table unless --keep.
// A script that prints figures, not a test: the machine is shared, so read ratios, not absolute times.
import { execFileSync, spawn } from "node:child_process"
import { existsSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import os from "node:os"
import path from "node:path"
import { option, root, setUp } from "./setup.mjs"

const args = process.argv.slice(2)
const opt = (name, fallback) => option(args, name, fallback)
const sessions = Number(opt("sessions", 100000))
const messages = Number(opt("messages", 20))
const schema = opt("schema", "bench_rebuild")
const refBatches = String(opt("ref-batches", "5000")).split(",").map(Number)
const refConc = Number(opt("ref-conc", 1))
const refRuns = Number(opt("ref-runs", 1))
const sampleMs = Number(opt("sample-ms", 200))
const skipReference = args.includes("--skip-reference")
const skipVerify = args.includes("--skip-verify")
const keep = args.includes("--keep")
const reuseLedger = args.includes("--reuse-ledger")
if (!/^[a-z_][a-z0-9_]{0,40}$/.test(schema)) throw new Error(`--schema must be a plain lower-case name, got ${schema}`)

const { databaseUrl, env, refDir, resultsDir, refEnv } = await setUp()
// node-postgres from the reference's install: for the bench's own queries and the pg_stat_activity sampler.
const pg = createRequire(path.join(refDir, "package.json"))("pg")
const db = new pg.Client({ connectionString: databaseUrl })
await db.connect()
const q = async (text, params) => (await db.query(text, params)).rows

const fmt = (x, d = 0) => Number(x).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d })
const totalMessages = sessions * messages

// -- the program, compiled -------------------------------------------------------------------------------------------
const distDir = path.join(root, ".data/bench-rebuild-dist")
console.log("building the program into .data/bench-rebuild-dist ...")
rmSync(distDir, { recursive: true, force: true })
execFileSync("node", [path.join(root, "scripts/build.mjs"), "--out-dir", distDir], { cwd: root, stdio: "inherit" })
const cli = path.join(distDir, "main.js")
const appEnv = { ...env, PG_SCHEMA: schema }

// Preloaded into the program: at its exit, its own resource usage (peak RSS, CPU) into the file the env names.
const RUSAGE_PRELOAD = "data:text/javascript," + encodeURIComponent(
  `import { writeFileSync } from "node:fs"
   const file = process.env.BENCH_RUSAGE_FILE
   if (file) process.on("exit", () => { const u = process.resourceUsage()
     writeFileSync(file, JSON.stringify({ maxRssKb: u.maxRSS, userMs: u.userCPUTime / 1000, systemMs: u.systemCPUTime / 1000 })) })`
)

// -- where the time goes: pg_stat_activity, sampled ------------------------------------------------------------------
const classify = (query, state) => {
  if (state === "idle in transaction") return "(idle in transaction: waiting for the program)"
  const s = query.replace(/\s+/g, " ").trim()
  const rules = [
    [/jsonb_set\(payload, '\{messages\}'/, "read a page of events (readEvents)"],
    [/count\(\*\)::text AS events/, "count events (countEvents)"],
    [/^WITH ins AS \( INSERT INTO messages/, "apply: insert messages + update sessions"],
    [/^INSERT INTO sessions/, "apply: upsert sessions"],
    [/^UPDATE sessions/, "apply: session stamps"],
    [/^INSERT INTO (users|groups|group_participants)/, "apply: users / groups / participants"],
    [/^UPDATE projection_state/, "apply: projection_state"],
    [/search_path/, "apply: set search_path"],
    [/AS miscounted/, "check the projection (checkProjection)"],
    [/FULL JOIN/, "compare projections: rows that differ"],
    [/md5\(ROW\(/, "compare projections: checksums"],
    [/^(COMMIT|BEGIN|SET|START|SAVEPOINT|RELEASE)/i, `${s.split(" ")[0].toUpperCase()}`],
    [/^LOCK TABLE/, "swap: LOCK TABLE"],
    [/SET SCHEMA|^DROP TABLE|^CREATE SCHEMA|^DROP SCHEMA/, "DDL (create / drop / swap)"],
    [/pg_current_snapshot|pg_try_advisory_lock|pg_advisory_unlock|current_schema\(\)/, "snapshot / locks / schema"],
    [/max\(seq\)::text AS seq/, "swap: ledger head"]
  ]
  for (const [re, label] of rules) if (re.test(s)) return label
  return s.slice(0, 60)
}

/** Samples the other client connections of the database until stopped; returns per-label figures. */
const startSampler = async () => {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  const t0 = performance.now()
  const labels = new Map() // label -> { samples, first, last, waits: Map }
  const backendTicks = new Map() // pid -> utime+stime (clock ticks), last seen
  let running = true
  let samples = 0
  const readTicks = (pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return Number(f[11]) + Number(f[12])
    } catch {
      return undefined
    }
  }
  const loop = (async () => {
    while (running) {
      const t = (performance.now() - t0) / 1000
      const { rows } = await client.query(
        `SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()`
      )
      samples++
      for (const r of rows) {
        const ticks = readTicks(r.pid)
        if (ticks !== undefined) backendTicks.set(r.pid, ticks)
        if (r.state === "idle") continue
        const label = classify(r.query ?? "", r.state)
        const e = labels.get(label) ?? { samples: 0, first: t, last: t, waits: new Map() }
        e.samples++
        e.last = t
        const w = r.state === "idle in transaction" ? "-" : r.wait_event_type ? `${r.wait_event_type}:${r.wait_event}` : "CPU"
        e.waits.set(w, (e.waits.get(w) ?? 0) + 1)
        labels.set(label, e)
      }
      await new Promise((resolve) => setTimeout(resolve, sampleMs))
    }
  })()
  return async () => {
    running = false
    await loop
    await client.end()
    const secs = (performance.now() - t0) / 1000
    const tick = 100 // USER_HZ on Linux
    const pgCpuSecs = [...backendTicks.values()].reduce((a, b) => a + b, 0) / tick
    return { secs, samples, labels, pgCpuSecs, backends: backendTicks.size }
  }
}

const printSamples = (title, s) => {
  const dt = s.secs / Math.max(s.samples, 1)
  console.log(`  where ${title}'s connections spent their time (pg_stat_activity, ${s.samples} samples every ~${fmt(dt * 1000)} ms;` +
    ` connection-seconds, so two busy connections count twice;`)
  console.log(`  times from the process's start, which comes ~${fmt(s.startupSecs ?? 0, 1)} s before the program's own clock):`)
  const rows = [...s.labels.entries()].sort((a, b) => a[1].first - b[1].first)
  for (const [label, e] of rows) {
    const waits = [...e.waits.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([w, n]) => `${w} ${fmt((100 * n) / e.samples)}%`).join(", ")
    console.log(`    ${fmt(e.samples * dt, 1).padStart(7)} s  ${label.padEnd(48)} from ${fmt(e.first, 1)} s to ${fmt(e.last, 1)} s  [${waits}]`)
  }
  if (s.backends > 0) console.log(`    PostgreSQL backends' CPU: ${fmt(s.pgCpuSecs, 1)} s over ${s.backends} connection(s) (/proc)`)
}

/** CPU of the whole machine over an interval (cores busy, steal), from /proc/stat. */
const machineMeter = () => {
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number)
    return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), idle: f[3] + f[4], steal: f[7] || 0 }
  }
  const a = read()
  return () => {
    const b = read()
    const dt = b.total - a.total
    const n = os.cpus().length
    return { busyCores: (1 - (b.idle - a.idle) / dt) * n, stealCores: ((b.steal - a.steal) / dt) * n }
  }
}

/** Runs the program with `cliArgs`, sampling pg_stat_activity meanwhile; returns its last stdout line as JSON. */
const runProgram = async (label, cliArgs, { okExit = [0] } = {}) => {
  console.log(`redis-pg-sync ${cliArgs.join(" ")} (${label}) ...`)
  const rusageFile = path.join(root, `.data/bench-rebuild-rusage-${process.pid}.json`)
  rmSync(rusageFile, { force: true })
  const stop = await startSampler()
  const meter = machineMeter()
  const t0 = performance.now()
  const child = spawn("node", [`--import=${RUSAGE_PRELOAD}`, cli, ...cliArgs], {
    env: { ...appEnv, BENCH_RUSAGE_FILE: rusageFile },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d) => (stdout += d))
  child.stderr.on("data", (d) => (stderr += d))
  const code = await new Promise((resolve) => child.on("close", resolve))
  const wallSecs = (performance.now() - t0) / 1000
  const machine = meter()
  const sampled = await stop()
  if (!okExit.includes(code)) {
    console.error(`redis-pg-sync ${cliArgs.join(" ")} exited with ${code}\n${stdout}\n${stderr}`)
    process.exit(1)
  }
  const rusage = existsSync(rusageFile) ? JSON.parse(readFileSync(rusageFile, "utf8")) : null
  rmSync(rusageFile, { force: true })
  const result = JSON.parse(stdout.trim().split("\n").pop())
  // Roughly: the process's time before the program's own clock (durationMillis or seconds) started.
  const own = typeof result.durationMillis === "number" ? result.durationMillis / 1000 : result.seconds
  if (typeof own === "number") sampled.startupSecs = wallSecs - own
  return { result, wallSecs, rusage, machine, sampled }
}

// -- 1. the ledger ---------------------------------------------------------------------------------------------------
const ledgerHolds = async () => {
  const [t] = await q("SELECT to_regclass($1) AS t", [`${schema}.sync_log`])
  if (t.t === null) return null
  const [r] = await q(
    `SELECT count(*)::int AS events,
            COALESCE(sum(CASE WHEN event_type = 'messages_appended' THEN jsonb_array_length(payload->'messages') ELSE 0 END), 0)::bigint AS messages
     FROM ${schema}.sync_log`
  )
  return { events: r.events, messages: Number(r.messages) }
}
let syncFigures = null
let held = reuseLedger ? await ledgerHolds() : null
if (held && held.messages === totalMessages) {
  console.log(`reusing the ledger in schema ${schema}: ${fmt(held.events)} events, ${fmt(held.messages)} messages`)
} else {
  if (reuseLedger) console.log(`schema ${schema} holds no ledger of ${fmt(totalMessages)} messages: building it`)
  console.log(`loading ${sessions.toLocaleString()} sessions x ${messages} messages into Redis ...`)
  execFileSync("node", [path.join(refDir, "gen.mjs"), "--sessions", String(sessions), "--messages", String(messages), "--flush"], {
    env: refEnv,
    stdio: "inherit"
  })
  for (const s of [schema, `${schema}_rebuild`, `${schema}_previous`]) await q(`DROP SCHEMA IF EXISTS ${s} CASCADE`)
  const sync = await runProgram("builds the ledger, not timed against anything", ["sync", "--json"])
  syncFigures = sync.result
  console.log(`  sync: ${fmt(sync.result.seconds, 1)} s, ${fmt(sync.result.messagesInserted)} messages, ${fmt(sync.result.events)} ledger events`)
  held = await ledgerHolds()
}
const eventTypes = await q(`SELECT event_type, count(*)::int AS n FROM ${schema}.sync_log GROUP BY 1 ORDER BY 2 DESC`)
const [sizes] = await q(
  `SELECT pg_total_relation_size($1::regclass) AS ledger, pg_total_relation_size($2::regclass) AS messages`,
  [`${schema}.sync_log`, `${schema}.messages`]
)
console.log(`ledger: ${fmt(held.events)} events (${eventTypes.map((e) => `${e.event_type} ${fmt(e.n)}`).join(", ")}), ` +
  `${fmt(held.messages)} messages; sync_log ${fmt(Number(sizes.ledger) / 1e6)} MB, messages table ${fmt(Number(sizes.messages) / 1e6)} MB`)
console.log(`VACUUM ANALYZE of schema ${schema}, CHECKPOINT (not timed) ...`)
for (const { t } of await q(`SELECT tablename AS t FROM pg_tables WHERE schemaname = $1`, [schema])) await q(`VACUUM ANALYZE ${schema}.${t}`)
await q("CHECKPOINT")

// -- 2. rebuild, then verify -----------------------------------------------------------------------------------------
const rebuild = await runProgram("timed", ["rebuild", "--json", ...(args.includes("--diff") ? ["--diff"] : [])])
const rb = rebuild.result
const rbSecs = rb.durationMillis / 1000
const rbRows = rb.messagesInserted / rbSecs
const rbEvents = rb.eventsReplayed / rbSecs
console.log(`  rebuild: ${fmt(rbSecs, 1)} s (process ${fmt(rebuild.wallSecs, 1)} s), ${fmt(rb.eventsReplayed)} events, ` +
  `${fmt(rb.messagesInserted)} messages, swapped ${rb.swapped}, ${rb.tailEvents} events under the lock, locked ${fmt(rb.lockedMillis)} ms`)
if (rb.diff !== null) {
  const changed = rb.diff.filter((d) => !d.same)
  console.log(`  diff against the tables it replaced: ${changed.length === 0 ? "identical" : JSON.stringify(changed)}`)
} else {
  const changed = rb.rows.filter((r) => r.before !== r.after)
  console.log(`  row counts against the tables it replaced (no --diff): ${changed.length === 0 ? "the same" : JSON.stringify(changed)}`)
}
printSamples("rebuild", rebuild.sampled)

let ver = null
if (!skipVerify) {
  ver = await runProgram("timed", ["verify", "--json"], { okExit: [0, 1] })
  console.log(`  verify: ${fmt(ver.result.durationMillis / 1000, 1)} s, same ${ver.result.same}` +
    (ver.result.problems.length > 0 ? `, problems: ${ver.result.problems.join("; ")}` : ""))
  printSamples("verify", ver.sampled)
}

// -- 3. the reference ------------------------------------------------------------------------------------------------
const references = []
if (!skipReference) {
  console.log(`reference: pg-ingest.mjs --methods unnest --batches ${refBatches.join(",")} --conc ${refConc} --runs ${refRuns} ...`)
  execFileSync("node", [
    path.join(refDir, "pg-ingest.mjs"), "--sessions", String(sessions), "--messages", String(messages),
    "--methods", "unnest", "--batches", refBatches.join(","), "--conc", String(refConc), "--runs", String(refRuns)
  ], { env: refEnv, stdio: ["ignore", "inherit", "inherit"] })
  for (const b of refBatches) {
    const rec = JSON.parse(readFileSync(path.join(resultsDir, `pg-unnest-b${b}-c${refConc}-key_text.json`), "utf8"))
    references.push({ batch: b, ...rec.median })
  }
}

// -- 4. summary ------------------------------------------------------------------------------------------------------
const mb = (kb) => (kb ? `${fmt(kb / 1024)} MB` : "n/a")
const cpu = (r) => (r ? `${fmt((r.userMs + r.systemMs) / 1000, 1)} s` : "n/a")
console.log(`\n== rebuild of the ledger of ${fmt(sessions)} sessions x ${messages} messages (${fmt(totalMessages)} messages, ${fmt(held.events)} events)`)
console.log(`machine: ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}, node ${process.version}`)
const table = [["", "seconds", "rows/s", "events/s", "peak RSS", "program CPU", "PG CPU", "machine busy"]]
if (syncFigures) {
  table.push(["sync (builds the ledger)", fmt(syncFigures.seconds, 1), fmt(syncFigures.messagesInserted / syncFigures.seconds),
    fmt(syncFigures.events / syncFigures.seconds), syncFigures.peakRssMb ? `${syncFigures.peakRssMb} MB` : "n/a", "", "", ""])
}
table.push(["rebuild (replay+verify+swap)", fmt(rbSecs, 1), fmt(rbRows), fmt(rbEvents), mb(rebuild.rusage?.maxRssKb),
  cpu(rebuild.rusage), `${fmt(rebuild.sampled.pgCpuSecs, 1)} s`, `${fmt(rebuild.machine.busyCores, 2)} cores`])
if (ver) {
  const vs = ver.result.durationMillis / 1000
  table.push(["verify", fmt(vs, 1), fmt(held.messages / vs), fmt(ver.result.eventsReplayed / vs), mb(ver.rusage?.maxRssKb),
    cpu(ver.rusage), `${fmt(ver.sampled.pgCpuSecs, 1)} s`, `${fmt(ver.machine.busyCores, 2)} cores`])
}
for (const r of references) {
  table.push([`unnest ingest b${r.batch} c${refConc}`, fmt(r.secs, 1), fmt(r.rowsPerSec), "", "", `${fmt(r.nodeCores * r.secs, 1)} s`, "",
    `${fmt(r.machineBusyCores, 2)} cores`])
}
const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)))
for (const row of table) console.log("  " + row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "))
console.log(`lock: writers waited ${fmt(rb.lockedMillis)} ms for the swap (${rb.tailEvents} events replayed under the lock)`)
for (const r of references) {
  console.log(`ratio: rebuild ${fmt(rbRows)} rows/s = ${fmt((100 * rbRows) / r.rowsPerSec, 1)} % of the unnest ingest's ` +
    `${fmt(r.rowsPerSec)} rows/s (batch ${r.batch}, ${refConc} connection(s), median of ${refRuns} run(s)); target >= 75 %`)
}
if (rb.messagesInserted !== totalMessages) console.log(`WARNING: the rebuild inserted ${rb.messagesInserted}, expected ${totalMessages}`)
if (ver && !ver.result.same) console.log("WARNING: verify found the live tables differ from a replay of the ledger")

if (!keep) {
  await q(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await q("DROP TABLE IF EXISTS bench_messages")
}
await db.end()
