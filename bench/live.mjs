#!/usr/bin/env node
// Benchmark: the live daemon under load. Writes R updates/s the app's way (append a message to the session
// document, SETEX it, PUBLISH session_updated:{id}) for T seconds over K sessions, while `redis-pg-sync start`
// (compiled) runs, and reports the lag from each write to its message being visible in PostgreSQL (p50/p99/max),
// the daemon's peak RSS, and whether every message arrived.
//
//   node bench/live.mjs [--rate 5000] [--seconds 60] [--sessions 10000] [--drain 10] [--poll-ms 20] [--window 5000]
//
// Lag is each message's commit time (PostgreSQL's `track_commit_timestamp`, read once after the run) minus the time
// it was written: exact, and nothing polls PostgreSQL while the daemon works. The bench turns the setting on (a
// restart) in the servers it started itself; with servers given by REDIS_URL / DATABASE_URL and the setting off, it
// falls back to polling every --poll-ms for new messages, a load of its own, and each figure may be up to that plus
// one query late. A script that prints figures, not a test: the machine is shared, so read them with that in mind.
import { execFileSync, spawn } from "node:child_process"
import { readdirSync, readFileSync, statSync } from "node:fs"
import net from "node:net"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { createRequire } from "node:module"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const require = createRequire(path.join(root, "package.json"))
const { Redis } = require("ioredis")
const pg = require("pg")
const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : fallback
}
const rate = opt("rate", 5000), seconds = opt("seconds", 60), sessions = opt("sessions", 10000), drain = opt("drain", 10)
// The lag poll re-reads the last `window` seqs of messages every `poll-ms`: a message committed late (its seq drawn
// before another batch's commit) is still seen. Both cost PostgreSQL and this process CPU that the daemon shares.
const pollMs = opt("poll-ms", 20), pollWindow = opt("window", 5000)

const { start, status } = await import(path.join(root, "scripts/services.mjs"))
let { REDIS_URL: redisUrl, DATABASE_URL: databaseUrl } = process.env
const ownServers = !redisUrl || !databaseUrl
const benchDir = path.join(root, ".data/bench")
if (ownServers) ({ redisUrl, databaseUrl } = await start({ dir: benchDir }))

/** Turns on `track_commit_timestamp` in the bench's own PostgreSQL (a restart); true when it is on. */
const commitTimestamps = async () => {
  const probe = new pg.Client({ connectionString: databaseUrl })
  await probe.connect()
  const on = (await probe.query("SHOW track_commit_timestamp")).rows[0].track_commit_timestamp === "on"
  if (on || !ownServers) {
    await probe.end()
    return on
  }
  await probe.query("ALTER SYSTEM SET track_commit_timestamp = on")
  await probe.end()
  const { postgres } = await status({ dir: benchDir })
  const pgCtl = path.join(path.dirname(readFileSync(`/proc/${postgres.pid}/cmdline`, "latin1").split("\0")[0]), "pg_ctl")
  const restart = [pgCtl, "-D", postgres.dataDir, "restart", "-m", "fast", "-w"]
  const owner = statSync(postgres.dataDir).uid
  if (process.getuid?.() === 0 && owner !== 0) execFileSync("setpriv", [`--reuid=${owner}`, `--regid=${owner}`, "--clear-groups", ...restart], { stdio: "ignore" })
  else execFileSync(restart[0], restart.slice(1), { stdio: "ignore" })
  console.log("turned on track_commit_timestamp in the bench's PostgreSQL (restarted)")
  return true
}
const exact = await commitTimestamps()
// BENCH_NO_BUILD=1 measures dist/ as it is (e.g. patched by hand for an experiment).
if (process.env.BENCH_NO_BUILD) console.log("using dist/ as it is (BENCH_NO_BUILD)")
else {
  console.log("building dist/ ...")
  execFileSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" })
}

const schema = `live_${Date.now()}`
const prefix = `bench:live:${Date.now()}:`
const redis = new Redis(redisUrl)
const db = new pg.Client({ connectionString: databaseUrl })
await db.connect()

// K sessions with a few messages each, in the app's shape. Each document is kept serialised with `messages` last,
// so an append splices the new message's JSON in before the closing "]}": the same bytes the app would write,
// without re-serialising the whole document per update (this process shares the machine with the daemon).
const docs = new Map()
let pipe = redis.pipeline()
for (let i = 0; i < sessions; i++) {
  const id = `s${i}`
  const doc = { session_id: id, topic: "live bench", group_id: 1 + (i % 50), created_by: 1, created_at: new Date().toISOString(), messages: [] }
  for (let k = 0; k < 3; k++) doc.messages.push({ content: `seed ${k}`, sender_id: 1 + (k % 2), timestamp: new Date().toISOString() })
  const json = JSON.stringify(doc)
  docs.set(id, json)
  pipe.setex(prefix + id, 86400, json)
  if (pipe.length >= 1000) { await pipe.exec(); pipe = redis.pipeline() }
}
await pipe.exec()

const env = { ...process.env, REDIS_URL: redisUrl, DATABASE_URL: databaseUrl, PG_SCHEMA: schema, SYNC_KEY_PREFIX: prefix, SYNC_CHANNEL_PREFIX: `${prefix}updated:`, LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warning" }
// Run as the Docker image and `npm start` run it (the young generation's bound and one collector thread, see
// src/Heap.ts), with BENCH_DAEMON_NODE_ARGS after (a later flag wins: "--max-semi-space-size=16 --no-single-threaded-gc"
// for node's defaults).
const nodeArgs = ["--max-semi-space-size=8", "--single-threaded-gc", ...(process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean)]
const daemon = spawn("node", [...nodeArgs, path.join(root, "dist/main.js"), "start"], { env, stdio: ["ignore", "pipe", "pipe"] })
// However this script ends (an error, Ctrl-C), the daemon it started does not outlive it.
process.on("exit", () => daemon.exitCode === null && daemon.signalCode === null && daemon.kill("SIGKILL"))
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130))
let daemonLog = ""
daemon.stdout.on("data", (d) => (daemonLog += d))
daemon.stderr.on("data", (d) => (daemonLog += d))
/** CPU seconds the daemon has used (user + system), from /proc; NaN when unreadable. */
const daemonCpu = () => {
  try {
    const fields = readFileSync(`/proc/${daemon.pid}/stat`, "utf8").split(") ")[1].split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}
/**
 * Seconds the daemon's main (JavaScript) thread has run and has waited for a CPU while runnable, from
 * /proc/PID/task/PID/schedstat; NaN when unreadable. Both together near one core: the thread is saturated, whether
 * by its own work or by the machine's other processes (V8's helper threads, PostgreSQL, this writer).
 */
const mainThread = () => {
  try {
    const [running, waiting] = readFileSync(`/proc/${daemon.pid}/task/${daemon.pid}/schedstat`, "utf8").split(" ").map(Number)
    return { running: running / 1e9, waiting: waiting / 1e9 }
  } catch {
    return { running: NaN, waiting: NaN }
  }
}
const peakRss = () => {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.pid}/status`, "utf8"))[1]) / 1024
  } catch {
    return NaN
  }
}
/** CPU seconds used so far by every PostgreSQL and Redis process on the machine (user + system, from /proc). */
const othersCpu = () => {
  const total = { postgres: 0, redis: 0 }
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      const name = /\(([^)]*)\)/.exec(stat)[1]
      const kind = name.startsWith("postgres") ? "postgres" : name.startsWith("redis-server") ? "redis" : undefined
      if (kind === undefined) continue
      const fields = stat.split(") ")[1].split(" ")
      total[kind] += (Number(fields[11]) + Number(fields[12])) / 100
    } catch {
      // the process ended meanwhile
    }
  }
  return total
}
/**
 * The app's writes, sent as raw RESP on a connection of their own: a pipelined command costs ioredis tens of
 * microseconds of this process's CPU, which the daemon, PostgreSQL and Redis share on this machine (at 5,000
 * updates/s, ioredis took 0.45 of a core). The bytes Redis receives are the same. `send` resolves when Redis has
 * answered every command sent so far; an error reply fails the bench.
 */
const rawWriter = async (url) => {
  const u = new URL(url)
  if (u.protocol !== "redis:") throw new Error(`bench/live writes over plain TCP; REDIS_URL is ${u.protocol}//…`)
  const socket = net.connect({ host: u.hostname, port: Number(u.port || 6379) })
  socket.setNoDelay(true)
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  let awaited = 0
  let answered = 0
  let waiter
  let failure
  socket.on("data", (chunk) => {
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) answered++
    if (chunk[0] === 45 || chunk.includes("\r\n-")) failure ??= new Error(`Redis refused a write: ${chunk.toString().slice(0, 200)}`)
    if (waiter !== undefined && (answered >= awaited || failure)) waiter()
  })
  const encode = (args) => {
    let out = `*${args.length}\r\n`
    for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`
    return out
  }
  // Replies to these commands are single lines (+OK, :n, -error), so counting line ends counts replies.
  const send = (commands) => {
    awaited += commands.length
    socket.write(commands.map(encode).join(""))
    return new Promise((resolve, reject) => {
      const check = () => (failure ? reject(failure) : answered >= awaited ? resolve() : (waiter = check))
      waiter = undefined
      check()
    })
  }
  const preamble = []
  if (u.password) preamble.push(u.username ? ["AUTH", decodeURIComponent(u.username), decodeURIComponent(u.password)] : ["AUTH", decodeURIComponent(u.password)])
  if (u.pathname.length > 1) preamble.push(["SELECT", u.pathname.slice(1)])
  if (preamble.length > 0) await send(preamble)
  return { send, close: async () => socket.end() }
}
// Wait for the start-up sync: all K sessions in PostgreSQL.
const t0 = Date.now()
while (true) {
  await new Promise((r) => setTimeout(r, 200))
  const r = await db.query(`SELECT count(*)::int AS n FROM ${schema}.sessions`).catch(() => ({ rows: [{ n: 0 }] }))
  if (r.rows[0].n >= sessions) break
  if (Date.now() - t0 > 120_000) throw new Error(`daemon did not sync the ${sessions} seed sessions in 120 s:\n${daemonLog}`)
}
console.log(`daemon up, ${sessions} sessions synced in ${((Date.now() - t0) / 1000).toFixed(1)} s; writing ${rate}/s for ${seconds} s ...`)

const written = new Map() // message tag -> write time (ms)
const lags = []
const slices = [] // [ms since the first write, lag] per message (exact lag only)
const firstSeq = Number((await db.query(`SELECT COALESCE(max(seq), 0)::float8 AS s FROM ${schema}.sync_log`)).rows[0].s) + 1
let watermark = 0
let polling = !exact
const poll = (async () => {
  while (polling) {
    // By `id` (seq * 10,000 + index, the primary key): an index range scan. `seq` has no index of its own, and a
    // scan of the whole table every poll was a load of its own on PostgreSQL, growing with the table.
    const { rows } = await db.query(`SELECT content, seq::float8 AS seq FROM ${schema}.messages WHERE id >= $1::bigint * 10000 AND content LIKE 'lag %'`, [Math.max(0, watermark - pollWindow)])
    const now = Date.now()
    for (const r of rows) {
      if (r.seq > watermark) watermark = r.seq
      const at = written.get(r.content)
      if (at !== undefined) {
        lags.push(now - at)
        written.delete(r.content)
      }
    }
    await new Promise((r) => setTimeout(r, pollMs))
  }
})()

let n = 0
const tick = 10
const startedAt = Date.now()
const cpuAtStart = daemonCpu()
const mainAtStart = mainThread()
const othersAtStart = othersCpu()
const ownAtStart = process.cpuUsage()
const writer = await rawWriter(redisUrl)
while (Date.now() - startedAt < seconds * 1000) {
  const due = Math.floor(((Date.now() - startedAt) / 1000) * rate)
  const commands = []
  while (n < due) {
    const id = `s${Math.floor(Math.random() * sessions)}`
    const content = `lag ${n} ${Date.now()}`
    const message = JSON.stringify({ content, sender_id: 1 + (n % 2), timestamp: new Date().toISOString() })
    const json = docs.get(id).slice(0, -2) + "," + message + "]}"
    docs.set(id, json)
    commands.push(["SETEX", prefix + id, "86400", json], ["PUBLISH", `${prefix}updated:${id}`, id])
    written.set(content, Date.now())
    n++
  }
  // In slices: after a stall (the machine is shared) the commands due at once can be more than one string holds.
  for (let i = 0; i < commands.length; i += 4000) await writer.send(commands.slice(i, i + 4000))
  await new Promise((r) => setTimeout(r, tick))
}
await writer.close()
const writerCpu = process.cpuUsage(ownAtStart)
const writtenSecs = (Date.now() - startedAt) / 1000
console.log(`wrote ${n.toLocaleString()} updates in ${writtenSecs.toFixed(1)} s (${Math.round(n / writtenSecs).toLocaleString()}/s); draining up to ${drain} s ...`)
const drainStart = Date.now()
let lastCommit = 0
const arrivedCount = async () =>
  Number((await db.query(`SELECT count(*)::float8 AS n FROM ${schema}.messages WHERE id >= $1::bigint * 10000 AND content LIKE 'lag %'`, [firstSeq])).rows[0].n)
if (exact) {
  // Only now is PostgreSQL asked anything: how many arrived (every 100 ms, until all or --drain), then each one's commit time.
  while ((await arrivedCount()) < n && Date.now() - drainStart < drain * 1000) await new Promise((r) => setTimeout(r, 100))
  const { rows } = await db.query(
    `SELECT content, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 AS at FROM ${schema}.messages WHERE id >= $1::bigint * 10000 AND content LIKE 'lag %'`,
    [firstSeq]
  )
  for (const r of rows) {
    const at = written.get(r.content)
    if (at !== undefined) {
      lags.push(Number(r.at) - at)
      slices.push([at - startedAt, Number(r.at) - at])
      lastCommit = Math.max(lastCommit, Number(r.at))
      written.delete(r.content)
    }
  }
} else {
  while (written.size > 0 && Date.now() - drainStart < drain * 1000) await new Promise((r) => setTimeout(r, 50))
}
// Exact: from the end of the writes to the last commit. Polled: until the poll saw the last message.
const drained = exact ? Math.max(0, lastCommit - drainStart) / 1000 : (Date.now() - drainStart) / 1000
polling = false
await poll
const rss = peakRss()
const cpuUsed = daemonCpu() - cpuAtStart
const mainAtEnd = mainThread()
const othersUsed = othersCpu()
daemon.kill("SIGTERM")
const exitCode = await new Promise((r) => daemon.on("exit", (code) => r(code)))

lags.sort((a, b) => a - b)
const q = (p) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))]
console.log(`\n== live, ${rate}/s for ${seconds} s over ${sessions} sessions`)
console.log(`arrived: ${lags.length.toLocaleString()} of ${n.toLocaleString()} (${written.size} missing; the last arrived ${drained.toFixed(1)} s after the writes ended)`)
const ms = (x) => Math.round(x)
console.log(`lag ms (${exact ? "commit timestamps" : `polled every ${pollMs} ms`}): p50 ${ms(q(0.5))}, p99 ${ms(q(0.99))}, max ${ms(lags[lags.length - 1])}`)
if (slices.length > 0 && seconds >= 20) {
  // Where in the run the tail lies: the start (caches warming up), or spread over it (pauses, load).
  const width = seconds >= 60 ? 10_000 : 5_000
  const parts = []
  for (let from = 0; from < seconds * 1000; from += width) {
    const part = slices.filter(([t]) => t >= from && t < from + width).map(([, l]) => l).sort((a, b) => a - b)
    if (part.length > 0) parts.push(`${from / 1000}–${(from + width) / 1000} s ${ms(part[Math.floor(0.99 * part.length)])}`)
  }
  console.log(`p99 lag ms by time of write: ${parts.join(", ")}`)
}
console.log(`daemon peak RSS ${Math.round(rss)} MB; exit code after SIGTERM ${exitCode}`)
// Steadier than lag on a shared machine: what the daemon's own work costs, per update written.
console.log(`daemon CPU from the first write to the end of the drain: ${cpuUsed.toFixed(1)} s, ${Math.round((cpuUsed * 1e6) / n)} µs per update`)
const perCore = (cpu) => (cpu / ((Date.now() - startedAt) / 1000)).toFixed(2)
console.log(
  `CPU in cores over the run (writes and drain): daemon ${perCore(cpuUsed)}, PostgreSQL ${perCore(othersUsed.postgres - othersAtStart.postgres)}, ` +
    `Redis ${perCore(othersUsed.redis - othersAtStart.redis)}, this bench (the writer) ${((writerCpu.user + writerCpu.system) / 1e6 / writtenSecs).toFixed(2)} while writing`
)
console.log(
  `the daemon's main thread: ${perCore(mainAtEnd.running - mainAtStart.running)} of a core running, ` +
    `${perCore(mainAtEnd.waiting - mainAtStart.waiting)} waiting for a CPU (the rest of the process: ` +
    `${perCore(cpuUsed - (mainAtEnd.running - mainAtStart.running))})`
)
if (process.env.BENCH_SHOW_LOG) console.log(daemonLog.split("\n").filter((l) => l.includes(process.env.BENCH_SHOW_LOG)).join("\n"))
if (written.size > 0 || exitCode !== 0) console.log(`daemon log tail:\n${daemonLog.split("\n").slice(-15).join("\n")}`)
if (process.env.BENCH_KEEP_SCHEMA) console.log(`kept schema ${schema} (BENCH_KEEP_SCHEMA)`)
else await db.query(`DROP SCHEMA ${schema} CASCADE`)
for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 1000 })) if (keys.length > 0) await redis.del(...keys)
await db.end()
redis.disconnect()
