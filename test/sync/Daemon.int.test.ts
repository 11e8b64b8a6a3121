import { SqlClient } from "@effect/sql"
import { assert, describe, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Logger, Redacted, Schedule } from "effect"
import * as Database from "../../src/pg/Database.js"
import { PgError } from "../../src/pg/PgError.js"
import * as SessionStore from "../../src/pg/SessionStore.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as Daemon from "../../src/sync/Daemon.js"
import { ledger, messagesOf } from "../support/Data.js"
import { testDaemonOptions } from "../support/DaemonOptions.js"
import { makeTestEnv, serversLayer, TestEnvTag } from "../support/Servers.js"
import { urlAs } from "../support/Urls.js"
import * as TcpProxy from "../support/TcpProxy.js"

const msg = (content: string, sender: number, timestamp: string) => ({ content, sender_id: sender, timestamp })

/** Polls `effect` every 50 ms until `done` holds, failing after `within`. */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean, within: Duration.DurationInput = "10 seconds") =>
  effect.pipe(
    Effect.repeat({ until: done, schedule: Schedule.spaced("50 millis") }),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`condition not met within ${Duration.format(Duration.decode(within))}`) })
  )

const daemonOptions = ({ name, ...overrides }: Partial<Daemon.DaemonOptions> & { name: string }) =>
  Effect.map(TestEnvTag, (env) => testDaemonOptions(env, name, overrides))

/** The app's way: GET the document, append a message, SETEX it back, PUBLISH its id. */
const appendTheAppsWay = (id: string, message: object) =>
  Effect.gen(function*() {
    const { prefix } = yield* TestEnvTag
    const raw = yield* RedisClient.use("GET", (c) => c.get(prefix + id))
    const doc = raw === null ? { session_id: id, topic: "app", messages: [] as Array<object> } : JSON.parse(raw)
    doc.messages.push(message)
    yield* RedisClient.use("SETEX", (c) => c.setex(prefix + id, 86400, JSON.stringify(doc)))
    yield* RedisClient.use("PUBLISH", (c) => c.publish(`${prefix}updated:${id}`, id))
  })

const countOf = (id: string) => Effect.map(messagesOf(id), (rows) => rows.length)

describe("the live daemon on real Redis and PostgreSQL", () => {
  layer(serversLayer(makeTestEnv("daemon")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("a message appended the app's way (GET, append, SETEX, PUBLISH) reaches PostgreSQL", () =>
      Effect.scoped(Effect.gen(function*() {
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "app-way" }))
        // After the start-up sync: else it may be the one that finds the new session (source "startup").
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        yield* appendTheAppsWay("live-1", msg("hello", 1, "2025-06-01T10:00:00Z"))
        yield* eventually(countOf("live-1"), (n) => n === 1)
        yield* appendTheAppsWay("live-1", msg("how are you?", 2, "2025-06-01T10:00:01Z"))
        yield* eventually(countOf("live-1"), (n) => n === 2)
        const events = (yield* ledger).filter((e) => e.session_id === "live-1")
        assert.includeMembers(["keyspace", "channel"], events.map((e) => e.source))
      })))

    it.effect("a live batch retried after a connection error keeps where its sessions were heard of (the ledger's source)", () =>
      Effect.scoped(Effect.gen(function*() {
        const store = yield* SessionStore.SessionStore
        let failNext = false
        const flaky = SessionStore.SessionStore.of({
          ...store,
          apply: (observations, source) =>
            Effect.suspend(() => {
              if (!failNext) return store.apply(observations, source)
              failNext = false
              return Effect.fail(new PgError({ reason: "connection", message: "injected: connection reset" }))
            })
        })
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "retry-source", keyspaceNotifications: false })).pipe(
          Effect.provideService(SessionStore.SessionStore, flaky)
        )
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        failNext = true
        yield* appendTheAppsWay("retried-1", msg("after a blip", 1, "2025-06-01T10:00:00Z"))
        yield* eventually(countOf("retried-1"), (n) => n === 1)
        assert.isFalse(failNext, "the first write failed and was retried")
        const events = (yield* ledger).filter((e) => e.session_id === "retried-1")
        assert.deepStrictEqual(Array.from(new Set(events.map((e) => e.source))), ["channel"])
      })))

    it.effect("a start-up sync that fails on a non-connection error says so and is not retried", () =>
      Effect.scoped(Effect.gen(function*() {
        const store = yield* SessionStore.SessionStore
        let attempts = 0
        const refusing = SessionStore.SessionStore.of({
          ...store,
          isEmpty: Effect.suspend(() => {
            attempts++
            return Effect.fail(new PgError({ reason: "other", message: "injected: permission denied for table sessions" }))
          })
        })
        const logs: Array<string> = []
        const collect = Logger.make(({ logLevel, message }) => {
          logs.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
        })
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "startup-refused", keyspaceNotifications: false })).pipe(
          Effect.provideService(SessionStore.SessionStore, refusing),
          Effect.provide(Logger.replace(Logger.defaultLogger, collect))
        )
        yield* eventually(Effect.sync(() => logs), (l) => l.some((m) => m.includes("Start-up sync failed")))
        assert.include(logs.find((m) => m.includes("Start-up sync failed")), "ERROR Start-up sync failed, not retried")
        assert.include(logs.find((m) => m.includes("Start-up sync failed")), "permission denied for table sessions")
        assert.isFalse((yield* daemon.status).startupSyncDone)
        assert.strictEqual(attempts, 1)
      })))

    it.effect("with keyspace notifications off the channel path syncs", () =>
      Effect.scoped(Effect.gen(function*() {
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "channel-only", keyspaceNotifications: false }))
        assert.strictEqual((yield* daemon.status).captureMode, "channel+reconcile")
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        yield* appendTheAppsWay("chan-1", msg("via channel", 1, "2025-06-01T10:00:00Z"))
        yield* eventually(countOf("chan-1"), (n) => n === 1)
        const events = (yield* ledger).filter((e) => e.session_id === "chan-1")
        assert.deepStrictEqual(Array.from(new Set(events.map((e) => e.source))), ["channel"])
      })))

    it.effect("a live batch is written every SYNC_BATCH_BYTES of values, so large sessions never pile up in memory", () =>
      Effect.scoped(Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        const sql = yield* SqlClient.SqlClient
        const base = yield* daemonOptions({ name: "bytes" })
        const daemon = yield* Daemon.make({
          ...base,
          keyspaceNotifications: false,
          fullSync: { ...base.fullSync, batchBytes: 1 },
          pipeline: { ...base.pipeline, batchSize: 500, batchWindow: "300 millis" }
        })
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        const ids = Array.from({ length: 250 }, (_, i) => `bytes-${i}`)
        yield* RedisClient.use("SET+PUBLISH", async (c) => {
          const p = c.pipeline()
          for (const id of ids) p.set(prefix + id, JSON.stringify({ topic: "big", messages: [msg(id, 1, "2025-06-01T10:00:00Z")] }))
          for (const id of ids) p.publish(`${prefix}updated:${id}`, id)
          await p.exec()
        })
        const perTransaction = sql<{ n: number }>`
          SELECT count(DISTINCT session_id)::int AS n FROM sync_log WHERE session_id LIKE 'bytes-%' GROUP BY tx_id`
        yield* eventually(perTransaction, (rows) => rows.reduce((a, r) => a + r.n, 0) === 250)
        const counts = yield* perTransaction
        // Read 100 at a time (READ_SLICE), and a batch closes as soon as its values add up to a byte: every
        // session is written in a transaction of its own.
        assert.strictEqual(Math.max(...counts.map((r) => r.n)), 1)
        assert.strictEqual(counts.length, 250)
      })))

    it.effect("a pause stops the start-up sync (no new batch), which runs again once resumed and then completes", () =>
      Effect.scoped(Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        const sql = yield* SqlClient.SqlClient
        const n = 3000
        yield* RedisClient.use("SET", async (c) => {
          const p = c.pipeline()
          for (let i = 0; i < n; i++) {
            p.set(`${prefix}paused-start-${i}`, JSON.stringify({ topic: "t", messages: [msg(`m${i}`, 1, "2025-06-01T10:00:00Z")] }))
          }
          await p.exec()
        })
        const written = Effect.map(
          sql<{ n: number }>`
            SELECT count(DISTINCT session_id)::int AS n FROM sync_log
            WHERE session_id LIKE 'paused-start-%' AND source = 'startup'`,
          (rows) => rows[0]!.n
        )
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "paused-start", keyspaceNotifications: false }))
        yield* eventually(written, (k) => k > 0)
        yield* daemon.pipeline.pause
        // The batches in flight are written; then nothing more while paused, and the daemon is not ready.
        yield* eventually(Effect.zip(written, Effect.zipRight(Effect.sleep("300 millis"), written)), ([a, b]) => a === b)
        assert.isBelow(yield* written, n)
        assert.isFalse((yield* daemon.status).startupSyncDone)
        yield* daemon.pipeline.resume
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        assert.strictEqual(yield* written, n)
      })))

    it.effect("with notifications and channel both refused (capture mode reconcile), its own reconcile scans sync and find departures", () =>
      Effect.scoped(Effect.gen(function*() {
        const { prefix, redisUrl } = yield* TestEnvTag
        // A Redis user as a locked-down managed service gives: no CONFIG, no pub/sub channel at all.
        const user = `reconcile-only-${Date.now()}`
        yield* RedisClient.use("ACL SETUSER", (c) => c.acl("SETUSER", user, "on", ">pw", "~*", "resetchannels", "+@all", "-config"))
        yield* Effect.addFinalizer(() => RedisClient.use("ACL DELUSER", (c) => c.acl("DELUSER", user)).pipe(Effect.ignore))
        const locked = RedisClient.layer({ url: Redacted.make(urlAs(redisUrl, user, "pw")), host: "", port: 0, db: 0 })
        const options = yield* daemonOptions({ name: "reconcile-only" })
        const daemon = yield* Daemon.make({ ...options, pipeline: { ...options.pipeline, reconcileInterval: "1 second" } }).pipe(
          Effect.provide(locked)
        )
        assert.strictEqual((yield* daemon.status).captureMode, "reconcile")
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        yield* RedisClient.use("SET", (c) => c.set(prefix + "quiet-1", JSON.stringify({ topic: "quiet", messages: [msg("silent", 1, "2025-06-01T10:00:00Z")] })))
        yield* eventually(countOf("quiet-1"), (n) => n === 1)
        yield* RedisClient.use("DEL", (c) => c.del(prefix + "quiet-1"))
        yield* eventually(Effect.map(ledger, (l) => l.filter((e) => e.session_id === "quiet-1").map((e) => e.event_type)), (types) => types.includes("session_expired"))
      })))

    it.effect("the pre-expiry sweep writes a session whose TTL is nearly out, with no other signal of it", () =>
      Effect.scoped(Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        // No keyspace notifications, a channel nobody publishes on, no reconcile for an hour: only the sweep (every
        // half window) can find the key before Redis forgets it.
        const daemon = yield* Daemon.make(yield* daemonOptions({
          name: "sweep",
          keyspaceNotifications: false,
          channelPrefix: "nobody-publishes-here:",
          expirySweepWindow: "10 seconds"
        }))
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        yield* RedisClient.use("SET", (c) =>
          c.set(prefix + "expiring-1", JSON.stringify({ topic: "last words", messages: [msg("bye", 1, "2025-06-01T10:00:00Z")] }), "PX", 8000))
        yield* eventually(countOf("expiring-1"), (n) => n === 1, "8 seconds")
        const ttl = yield* RedisClient.use("PTTL", (c) => c.pttl(prefix + "expiring-1"))
        assert.isAbove(ttl, 0, "written before the key expired")
      })))

    it.effect("writes made while the subscriber is disconnected arrive after it reconnects", () =>
      Effect.scoped(Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        yield* Daemon.make(yield* daemonOptions({ name: "killed-sub" }))
        yield* appendTheAppsWay("kill-1", msg("before", 1, "2025-06-01T10:00:00Z"))
        yield* eventually(countOf("kill-1"), (n) => n === 1)
        const clients = yield* RedisClient.use("CLIENT LIST", (c) => c.client("LIST") as Promise<string>)
        const id = /id=(\d+) [^\n]*name=rps-test-killed-sub/.exec(clients)?.[1]
        assert.isDefined(id)
        yield* RedisClient.use("CLIENT KILL", (c) => c.call("CLIENT", "KILL", "ID", id!) as Promise<unknown>)
        // Written while the subscriber is gone: its events are lost, the reconcile after the reconnect finds them.
        yield* RedisClient.use("SET", (c) => c.set(prefix + "kill-2", JSON.stringify({ topic: "lost event", messages: [msg("written blind", 2, "2025-06-01T10:00:01Z")] })))
        yield* eventually(countOf("kill-2"), (n) => n === 1)
      })))

    it.effect("DEL and an expiring key become session_deleted and session_expired", () =>
      Effect.scoped(Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "gone" }))
        // After the start-up sync: its departure sweep, running meanwhile, would record del-1 as expired (it cannot
        // tell a DEL from an expiry), beside the session_deleted the keyspace event gives.
        yield* eventually(daemon.status, (s) => s.startupSyncDone)
        yield* appendTheAppsWay("del-1", msg("bye", 1, "2025-06-01T10:00:00Z"))
        yield* appendTheAppsWay("exp-1", msg("soon gone", 1, "2025-06-01T10:00:00Z"))
        yield* eventually(Effect.zipWith(countOf("del-1"), countOf("exp-1"), (a, b) => a + b), (n) => n === 2)
        yield* RedisClient.use("DEL", (c) => c.del(prefix + "del-1"))
        yield* RedisClient.use("PEXPIRE", (c) => c.pexpire(prefix + "exp-1", 300))
        const typesOf = (id: string) => Effect.map(ledger, (l) => l.filter((e) => e.session_id === id).map((e) => e.event_type))
        yield* eventually(typesOf("del-1"), (t) => t.includes("session_deleted"))
        yield* eventually(typesOf("exp-1"), (t) => t.includes("session_expired"))
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ redis_session_id: string; deleted: boolean; expired: boolean; n: number }>`
          SELECT redis_session_id, deleted_at IS NOT NULL AS deleted, expired_at IS NOT NULL AS expired, message_count AS n
          FROM sessions WHERE redis_session_id IN ('del-1', 'exp-1') ORDER BY 1`
        assert.deepStrictEqual(rows.map((r) => ({ ...r })), [
          { redis_session_id: "del-1", deleted: true, expired: false, n: 1 },
          { redis_session_id: "exp-1", deleted: false, expired: true, n: 1 }
        ])
      })))

    it.effect("PostgreSQL unreachable for 5 s mid-stream loses nothing; the daemon reads degraded meanwhile", () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestEnvTag
        const pg = new URL(env.databaseUrl)
        const proxy = yield* TcpProxy.make(pg.hostname, Number(pg.port))
        const viaProxy = new URL(env.databaseUrl)
        viaProxy.port = String(proxy.port)
        const store = yield* Layer.build(SessionStore.layer.pipe(Layer.provide(
          Database.layer({ url: Redacted.make(viaProxy.toString()), schema: env.schema, maxConnections: 4, connectTimeout: "1 second" })
        )))
        const daemon = yield* Daemon.make(yield* daemonOptions({ name: "pg-outage" })).pipe(
          Effect.provideService(SessionStore.SessionStore, store.unsafeMap.get(SessionStore.SessionStore.key))
        )
        yield* appendTheAppsWay("outage-1", msg("m0", 1, "2025-06-01T10:00:00Z"))
        yield* eventually(countOf("outage-1"), (n) => n === 1)
        yield* proxy.cut
        for (let i = 1; i <= 20; i++) {
          yield* appendTheAppsWay("outage-1", msg(`m${i}`, i % 2 + 1, `2025-06-01T10:00:${String(i).padStart(2, "0")}Z`))
          yield* Effect.sleep("250 millis")
        }
        assert.strictEqual((yield* daemon.status).pipeline.state, "degraded")
        yield* proxy.restore
        yield* eventually(countOf("outage-1"), (n) => n === 21, "20 seconds")
        const contents = (yield* messagesOf("outage-1")).map((r) => r.content)
        assert.deepStrictEqual(contents, Array.from({ length: 21 }, (_, i) => `m${i}`))
        yield* eventually(Effect.map(daemon.status, (s) => s.pipeline.state), (s) => s === "running")
      })))
  })
})
