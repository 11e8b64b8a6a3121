#!/usr/bin/env node
// Micro-benchmark of the live writer alone: the CPU of `SessionStore.apply` per session write, for batches of 500
// sessions that each gained one message (the app's way: the document rewritten with the message appended), on a
// real PostgreSQL, without Redis, the change signals or the pipeline around it. Each session is written every
// tenth batch, so its memo vouches for its keys and its appends take the decode shortcut, as in the live daemon.
//
//   npm run build && DATABASE_URL=postgres://… node bench/tools/apply.mjs [--messages 15] [--rounds 60] [--root DIR]
//
// --messages: messages per session before the first round (they grow by one a round of ten batches).
// --root: another checkout's compiled tree (`node scripts/build.mjs` there), for an A/B run against this one;
// alternate the two, since this machine's speed varies from hour to hour. Works in a schema of its own, dropped
// at the end. A script that prints figures, not a test.
import path from "node:path"
import { fileURLToPath } from "node:url"

const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : fallback
}
const root = path.resolve(opt("root", path.join(path.dirname(fileURLToPath(import.meta.url)), "../..")))
const messages = Number(opt("messages", 15))
const rounds = Number(opt("rounds", 60))
if (!process.env.DATABASE_URL) {
  console.error("DATABASE_URL is not set (e.g. `set -a; source .data/bench/services.env; set +a`)")
  process.exit(2)
}
const { Effect, Layer, Redacted } = await import(path.join(root, "node_modules/effect/dist/esm/index.js"))
const Database = await import(path.join(root, "dist/src/pg/Database.js"))
const Store = await import(path.join(root, "dist/src/pg/SessionStore.js"))
const { observe } = await import(path.join(root, "dist/src/sync/Observe.js"))
const pg = (await import(path.join(root, "node_modules/pg/lib/index.js"))).default

const schema = `apply_bench_${process.pid}`
const sessions = 5000
const batch = 500
const docs = []
for (let i = 0; i < sessions; i++) {
  const doc = { session_id: `s${i}`, topic: "apply bench", group_id: 1 + (i % 50), created_by: 1, created_at: new Date().toISOString(), messages: [] }
  for (let k = 0; k < messages; k++) doc.messages.push({ content: `seed ${k} ${Date.now()}`, sender_id: 1 + (k % 2), timestamp: new Date().toISOString() })
  docs.push(JSON.stringify(doc))
}
let n = 0
const append = (i) => {
  n++
  const message = JSON.stringify({ content: `update ${n} ${Date.now()}`, sender_id: 1 + (n % 2), timestamp: new Date().toISOString() })
  docs[i] = docs[i].slice(0, -2) + "," + message + "]}"
}
const observations = (from, to) => {
  const out = []
  for (let i = from; i < to; i++) out.push(observe({ sessionId: `s${i}`, value: Buffer.from(docs[i]), redisType: "string" }))
  return out
}
const database = Layer.effectDiscard(Database.migrate).pipe(
  Layer.provideMerge(Database.layer({ url: Redacted.make(process.env.DATABASE_URL), schema, maxConnections: 4 }))
)
const program = Effect.gen(function*() {
  const store = yield* Store.SessionStore
  for (let from = 0; from < sessions; from += batch) yield* store.apply(observations(from, from + batch), "startup")
  const cpuBefore = process.cpuUsage()
  const startedAt = Date.now()
  let from = 0
  for (let r = 0; r < rounds; r++) {
    for (let i = from; i < from + batch; i++) append(i)
    const result = yield* store.apply(observations(from, from + batch), "keyspace")
    if (result.messagesInserted !== batch) throw new Error(`a batch inserted ${result.messagesInserted} messages, not ${batch}`)
    from = (from + batch) % sessions
  }
  const cpu = process.cpuUsage(cpuBefore)
  const cpuMs = (cpu.user + cpu.system) / 1000
  console.log(
    `${rounds} batches of ${batch} (sessions of ${messages}–${messages + Math.ceil(rounds / 10)} messages), ${root}: ` +
      `wall ${((Date.now() - startedAt) / rounds).toFixed(1)} ms a batch, CPU ${(cpuMs / rounds).toFixed(1)} ms a batch, ` +
      `${((cpuMs * 1000) / rounds / batch).toFixed(0)} µs per session write`
  )
}).pipe(Effect.provide(Store.layer.pipe(Layer.provideMerge(database))))
try {
  await Effect.runPromise(program)
} finally {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL })
  await client.connect()
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await client.end()
}
