import { SqlClient } from "@effect/sql"
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { assertConsistent, del, dumpTables, ledger, ledgerSettled, messagesOf, put } from "../support/Data.js"
import { makeTestEnv, TestEnvTag } from "../support/Servers.js"
import { apiLayer, call, eventually, sampleOf } from "./Harness.js"

const msg = (content: string, sender: number, second: number) => ({
  content,
  sender_id: sender,
  timestamp: `2025-06-01T10:00:${String(second).padStart(2, "0")}Z`
})
const session = (topic: string, n = 2) => ({
  topic,
  group_id: 1,
  messages: Array.from({ length: n }, (_, i) => msg(`${topic} #${i}`, (i % 2) + 1, i))
})

const status = Effect.map(call("GET", "/api/v1/sync/status"), (r) => r.json as Record<string, any>)

/** `actual` has these fields with these values (others are not looked at). */
const assertFields = (actual: Record<string, unknown>, expected: Record<string, unknown>) =>
  assert.deepStrictEqual(Object.fromEntries(Object.keys(expected).map((k) => [k, actual[k]])), expected)
const metrics = Effect.map(call("GET", "/metrics"), (r) => r.text)
const publish = (id: string) =>
  Effect.flatMap(TestEnvTag, ({ prefix }) => RedisClient.use("PUBLISH", (c) => c.publish(`${prefix}updated:${id}`, id)))

/**
 * One scenario on one daemon: each test goes on from the state the ones before it left (sessions written,
 * rejected, deleted), and asserts exact counts of it. Run the file, not one of its tests alone.
 */
describe("HTTP API without a token, on a real daemon, Redis and PostgreSQL", () => {
  layer(apiLayer(makeTestEnv("http")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("GET /health, /ready and /api/v1/sync/status answer once the start-up sync is done", () =>
      Effect.gen(function*() {
        const s = yield* eventually(status, (s) => s.startup_sync_done === true)
        const health = yield* call("GET", "/health")
        assert.strictEqual(health.status, 200)
        assert.strictEqual(health.json.status, "ok")
        const ready = yield* call("GET", "/ready")
        assert.strictEqual(ready.status, 200)
        assert.deepStrictEqual(ready.json.checks, {
          redis: { ok: true, detail: "PONG" },
          postgresql: { ok: true, detail: "reachable" },
          migrations: { ok: true, detail: "all applied" }
        })
        assertFields(s, {
          sync_enabled: true,
          redis_connected: true,
          service_status: "running",
          postgres_connected: true,
          capture_mode: "channel+reconcile",
          pending_keys: 0,
          lag_seconds: 0,
          manual_sync_running: false
        })
        // The ledger's head, whatever ran before (nothing, when this runs first: then no commit yet either).
        const head = (yield* ledger).at(-1)?.seq ?? 0
        assert.strictEqual(s.ledger_seq, head)
        if (head === 0) assert.isNull(s.last_commit_at)
      }))

    it.effect("POST /api/v1/sync/session/{id}: 200 synced, 200 already in sync, 404 not in Redis, 422 rejected, 400 bad id", () =>
      Effect.gen(function*() {
        // The start-up sync would otherwise find "one" first.
        yield* eventually(status, (s) => s.startup_sync_done === true)
        yield* put("one", session("one"))
        const first = yield* call("POST", "/api/v1/sync/session/one")
        assert.strictEqual(first.status, 200)
        assertFields(first.json, { session_id: "one", changed: true, messages_inserted: 2, ledger_events: 2 })
        assert.match(first.json.message, /^Successfully synced session one/)
        const again = yield* call("POST", "/api/v1/sync/session/one")
        assertFields(again.json, { changed: false, ledger_events: 0, messages_inserted: 0 })
        assert.strictEqual((yield* messagesOf("one")).length, 2)

        const missing = yield* call("POST", "/api/v1/sync/session/nobody")
        assert.strictEqual(missing.status, 404)
        assert.strictEqual(missing.json._tag, "SessionNotFound")
        assert.match(missing.json.message, /session nobody not found in Redis \(no key test:http:[0-9a-f]+:nobody\)/)

        yield* put("broken", "{not json")
        const rejected = yield* call("POST", "/api/v1/sync/session/broken")
        assert.strictEqual(rejected.status, 422)
        assert.strictEqual(rejected.json._tag, "SessionRejected")
        assert.strictEqual(rejected.json.session_id, "broken")
        assert.match(rejected.json.reason, /JSON/)
        assert.notInclude(rejected.text, "    at ")

        const odd = "a b:ü/ç"
        yield* put(odd, session("odd", 1))
        const oddReply = yield* call("POST", `/api/v1/sync/session/${encodeURIComponent(odd)}`)
        assert.strictEqual(oddReply.status, 200)
        assert.strictEqual(oddReply.json.session_id, odd)

        const long = yield* call("POST", `/api/v1/sync/session/${"x".repeat(257)}`)
        assert.strictEqual(long.status, 400)
        assert.strictEqual(long.json._tag, "HttpApiDecodeError")
        assert.strictEqual(long.json.issues[0].message, "session_id must be 1 to 256 characters, none of them a control character")
        const control = yield* call("POST", "/api/v1/sync/session/a%01b")
        assert.strictEqual(control.status, 400)
        for (const bad of ["%ZZ", "%E0%A4%A", "%ED%A0%80"]) {
          const reply = yield* call("POST", `/api/v1/sync/session/${bad}`)
          assert.strictEqual(reply.status, 400, bad)
          assert.strictEqual(reply.json.message, `the path /api/v1/sync/session/${bad} is not valid percent-encoded UTF-8`)
        }
        assert.strictEqual((yield* call("POST", "/api/v1/sync/nowhere")).status, 404)
      }))

    it.effect("POST /api/v1/sync/manual syncs everything and reports it; metrics move", () =>
      Effect.gen(function*() {
        // Whatever earlier tests left in Redis is synced first (or stands rejected): unchanged below.
        const settled = (yield* call("POST", "/api/v1/sync/manual")).json
        const before = yield* metrics
        for (let i = 0; i < 5; i++) yield* put(`m-${i}`, session(`m-${i}`, 3))
        yield* put("m-bad", "[1,2]")
        const reply = yield* call("POST", "/api/v1/sync/manual")
        assert.strictEqual(reply.status, 200)
        const r = reply.json
        assertFields(r, { joined: false, sessions_changed: 5, sessions_rejected: 1, messages_inserted: 15 })
        const scanned = settled.sessions_scanned + 6
        assert.strictEqual(r.sessions_scanned, scanned)
        assert.strictEqual(r.sessions_unchanged, settled.sessions_scanned)
        assert.isAbove(r.ledger_seq, 0)
        assert.isAtLeast(r.duration_seconds, 0)
        assert.match(r.message, new RegExp(`^Manual sync completed: ${scanned} sessions scanned, 5 changed, 1 rejected, 15 messages inserted`))

        const after = yield* metrics
        const delta = (name: string, labels: Record<string, string> = {}) =>
          sampleOf(after, name, labels) - sampleOf(before, name, labels)
        assert.strictEqual(delta("redis_pg_sync_messages_inserted_total", { source: "api" }), 15)
        assert.strictEqual(delta("redis_pg_sync_sessions_synced_total", { source: "api" }), 5)
        assert.strictEqual(delta("redis_pg_sync_rejections_total", { source: "api" }), 1)
        assert.strictEqual(delta("redis_pg_sync_ledger_events_total", { type: "session_upserted", source: "api" }), 5)
        assert.isAtLeast(delta("redis_pg_sync_batch_sessions_count"), 1)
        assert.isAtLeast(delta("redis_pg_sync_commit_duration_seconds_count"), 1)
        const s = yield* status
        assert.strictEqual(sampleOf(after, "redis_pg_sync_ledger_seq"), s.ledger_seq)
        assert.strictEqual(sampleOf(after, "redis_pg_sync_up", { component: "postgresql" }), 1)
        assert.isNotNull(s.last_commit_at)
        // The status counts every source; the metric has one series per source.
        const perSource = ["api", "keyspace", "channel", "reconcile", "startup"].map((source) =>
          sampleOf(after, "redis_pg_sync_messages_inserted_total", { source }))
        assert.strictEqual(s.counters.messages_inserted, perSource.reduce((a, b) => a + b, 0))
      }))

    it.effect("GET /metrics is Prometheus text with the seed's metrics", () =>
      Effect.gen(function*() {
        const reply = yield* call("GET", "/metrics")
        assert.strictEqual(reply.status, 200)
        assert.strictEqual(reply.contentType, "text/plain; version=0.0.4; charset=utf-8")
        for (
          const family of [
            "redis_pg_sync_events_received_total counter",
            "redis_pg_sync_sessions_synced_total counter",
            "redis_pg_sync_messages_inserted_total counter",
            "redis_pg_sync_rejections_total counter",
            "redis_pg_sync_batch_sessions histogram",
            "redis_pg_sync_commit_duration_seconds histogram",
            "redis_pg_sync_pending_keys gauge",
            "redis_pg_sync_ledger_seq gauge",
            "redis_pg_sync_current_lag_seconds gauge"
          ]
        ) assert.include(reply.text, `# TYPE ${family}\n`)
        assert.match(reply.text, /redis_pg_sync_batch_sessions_bucket\{le="\+Inf"\} \d+/)
      }))

    it.effect("two manual syncs at once: the second joins the first, every message is written once", () =>
      Effect.gen(function*() {
        // Else the start-up sync may still be running and write some of these sessions itself.
        yield* eventually(status, (s) => s.startup_sync_done === true)
        yield* Effect.forEach(Array.from({ length: 1500 }, (_, i) => i), (i) => put(`c-${i}`, session(`c-${i}`, 2)), {
          concurrency: 50,
          discard: true
        })
        const [a, b] = yield* Effect.all([
          call("POST", "/api/v1/sync/manual"),
          Effect.zipRight(Effect.sleep("20 millis"), call("POST", "/api/v1/sync/manual"))
        ], { concurrency: 2 })
        assert.strictEqual(a.status, 200)
        assert.strictEqual(b.status, 200)
        assert.deepStrictEqual([a.json.joined, b.json.joined], [false, true])
        const { joined: _a, message: _ma, ...ra } = a.json
        const { joined: _b, message: _mb, ...rb } = b.json
        assert.deepStrictEqual(ra, rb)
        assert.strictEqual(a.json.sessions_changed, 1500)
        assert.strictEqual(a.json.messages_inserted, 3000)
        const c = yield* assertConsistent
        assert.strictEqual(c.sessionsWithWrongCount, 0)
        assert.strictEqual(c.messageRows, c.ledgerMessages)
      }))

    it.effect("pause: writes stop (manual and session syncs get 409), changes keep being marked; resume writes them", () =>
      Effect.gen(function*() {
        const paused = yield* call("POST", "/api/v1/sync/pause")
        assert.strictEqual(paused.status, 200)
        assertFields(paused.json, { sync_enabled: false, service_status: "paused" })
        assert.strictEqual((yield* call("POST", "/api/v1/sync/pause")).json.message, "Sync was already paused")
        const manual = yield* call("POST", "/api/v1/sync/manual")
        assert.strictEqual(manual.status, 409)
        assert.strictEqual(manual.json._tag, "Conflict")
        assert.match(manual.json.message, /POST \/api\/v1\/sync\/resume/)
        assert.strictEqual((yield* call("POST", "/api/v1/sync/session/one")).status, 409)

        const lagsBefore = sampleOf(yield* metrics, "redis_pg_sync_sync_lag_seconds_count")
        // A message said now (the lag histogram leaves out timestamps more than a day old).
        yield* put("live-1", { topic: "live-1", messages: [{ content: "now", sender_id: 1, timestamp: new Date().toISOString() }] })
        yield* publish("live-1")
        const s = yield* eventually(status, (s) => s.pending_keys === 1)
        assertFields(s, { service_status: "paused", sync_enabled: false })
        assert.strictEqual(s.counters.events_received.channel, 1)
        yield* Effect.sleep("200 millis")
        assert.strictEqual((yield* messagesOf("live-1")).length, 0)
        // The lag is how long the oldest change not written yet has waited: this one, since it was marked.
        assert.isAtLeast((yield* status).lag_seconds, 0.2)
        assert.strictEqual(sampleOf(yield* metrics, "redis_pg_sync_events_received_total", { source: "channel" }), 1)

        const resumed = yield* call("POST", "/api/v1/sync/resume")
        assertFields(resumed.json, { sync_enabled: true })
        yield* eventually(Effect.map(messagesOf("live-1"), (m) => m.length), (n) => n === 1)
        const after = yield* eventually(status, (s) => s.pending_keys === 0 && s.service_status === "running")
        assert.strictEqual(after.lag_seconds, 0)
        const events = (yield* ledger).filter((e) => e.session_id === "live-1")
        assert.deepStrictEqual(Array.from(new Set(events.map((e) => e.source))), ["channel"])
        // Its lag, from the message's own time to the commit, is in the histogram.
        assert.strictEqual(sampleOf(yield* metrics, "redis_pg_sync_sync_lag_seconds_count"), lagsBefore + 1)
      }))

    it.effect("GET /api/v1/sync/rejections lists reasons; retry: 422 while unchanged, 200 once fixed, 404 without a rejection", () =>
      Effect.gen(function*() {
        yield* put("rj-broken", "{not json")
        yield* put("rj-bad", "[1,2]")
        yield* put("rj-fine", session("rj-fine", 1))
        yield* call("POST", "/api/v1/sync/manual")
        const list = yield* call("GET", "/api/v1/sync/rejections?limit=1000")
        assert.strictEqual(list.status, 200)
        const ids: Array<string> = list.json.rejections.map((r: any) => r.session_id)
        assert.strictEqual(list.json.total, ids.length)
        assert.deepStrictEqual(ids.filter((id) => id.startsWith("rj-")), ["rj-bad", "rj-broken"])
        const broken = list.json.rejections[ids.indexOf("rj-broken")]
        assertFields(broken, { excerpt: "{not json", length: 9 })
        assert.match(broken.reason, /JSON/)
        const first = yield* call("GET", "/api/v1/sync/rejections?limit=1")
        assert.deepStrictEqual([first.json.rejections.map((r: any) => r.session_id), first.json.next_after], [[ids[0]], ids[0]])
        const paged = yield* call("GET", "/api/v1/sync/rejections?limit=1&after=rj-bad")
        assert.deepStrictEqual(paged.json.rejections.map((r: any) => r.session_id), ["rj-broken"])
        assert.strictEqual(paged.json.next_after, ids.at(-1) === "rj-broken" ? null : "rj-broken")

        const unchanged = yield* call("POST", "/api/v1/sync/rejections/rj-broken/retry")
        assert.strictEqual(unchanged.status, 422)
        assert.match(unchanged.json.message, /still rejected/)
        yield* put("rj-broken", session("rj-broken", 1))
        const fixed = yield* call("POST", "/api/v1/sync/rejections/rj-broken/retry")
        assert.strictEqual(fixed.status, 200)
        assert.match(fixed.json.message, /rejection is cleared/)
        assert.strictEqual((yield* call("GET", "/api/v1/sync/rejections")).json.total, ids.length - 1)
        const none = yield* call("POST", "/api/v1/sync/rejections/rj-fine/retry")
        assert.strictEqual(none.status, 404)
        assert.strictEqual(none.json._tag, "NotFound")
        yield* del("rj-bad")
        const gone = yield* call("POST", "/api/v1/sync/rejections/rj-bad/retry")
        assert.strictEqual(gone.status, 404)
        assert.strictEqual(gone.json._tag, "SessionNotFound")
      }))

    it.effect("GET /api/v1/sync/sessions/compare names what drifted", () =>
      Effect.gen(function*() {
        yield* put("cmp-same", session("cmp-same"))
        yield* put("cmp-changed", session("cmp-changed"))
        yield* put("cmp-gone", session("cmp-gone"))
        // Everything in Redis synced (or standing rejected): what follows is the only drift.
        yield* call("POST", "/api/v1/sync/manual")
        const compare = (limit: number) =>
          Effect.map(call("GET", `/api/v1/sync/sessions/compare?limit=${limit}`), (r) => {
            assert.strictEqual(r.status, 200)
            return r.json
          })
        const base = yield* compare(1000)
        assert.isFalse(base.has_drift)
        yield* put("cmp-new", session("cmp-new"))
        yield* put("cmp-changed", session("cmp-changed", 3))
        yield* del("cmp-gone")
        const c = yield* compare(1000)
        assert.deepStrictEqual(c.missing_in_postgresql, { count: 1, session_ids: ["cmp-new"] })
        assert.deepStrictEqual(c.stale, { count: 1, session_ids: ["cmp-changed"] })
        assert.deepStrictEqual(c.rejected, base.rejected)
        assert.deepStrictEqual(c.only_in_postgresql.session_ids, [...base.only_in_postgresql.session_ids, "cmp-gone"].sort())
        assert.deepStrictEqual(c.departed_unrecorded, { count: 1, session_ids: ["cmp-gone"] })
        assert.strictEqual(c.in_sync.count, base.in_sync.count - 2)
        assert.strictEqual(c.redis_sessions_count, base.redis_sessions_count)
        assert.strictEqual(c.postgresql_sessions_count, base.postgresql_sessions_count)
        assert.isTrue(c.has_drift)
        // `limit` bounds every list; the first ten ids SCAN returned are listed whatever it is.
        const few = yield* compare(1)
        assert.strictEqual(few.in_sync.count, c.in_sync.count)
        assert.strictEqual(few.in_sync.session_ids.length, 1)
        assert.strictEqual(few.redis_session_ids.length, Math.min(10, c.redis_sessions_count))
        const bad = yield* call("GET", "/api/v1/sync/sessions/compare?limit=5000")
        assert.strictEqual(bad.status, 400)
        assert.strictEqual(bad.json.issues[0].message, "limit must be a whole number from 0 to 1000")
      }))

    it.effect("GET /api/v1/sync/log pages through the ledger: after/limit, has_more, every row once", () =>
      Effect.gen(function*() {
        // At least six rows, whatever ran before.
        for (let i = 0; i < 3; i++) yield* put(`log-${i}`, session(`log-${i}`))
        yield* call("POST", "/api/v1/sync/manual")
        const all = yield* ledger
        yield* ledgerSettled
        const first = yield* call("GET", "/api/v1/sync/log?limit=5")
        assert.strictEqual(first.status, 200)
        assert.strictEqual(first.json.events.length, 5)
        assert.isTrue(first.json.has_more)
        assert.deepStrictEqual(Object.keys(first.json.events[0]).sort(), [
          "event_type", "payload", "recorded_at", "seq", "session_id", "snapshot_hash", "source", "tx_id"
        ])
        const seen: Array<number> = first.json.events.map((e: any) => e.seq)
        let after = first.json.next_after
        while (true) {
          const page = yield* call("GET", `/api/v1/sync/log?after=${after}&limit=1000`)
          assert.strictEqual(page.status, 200)
          seen.push(...page.json.events.map((e: any) => e.seq))
          after = page.json.next_after
          if (!page.json.has_more) break
        }
        assert.deepStrictEqual(seen.slice().sort((a, b) => a - b), all.map((e) => e.seq))
        const end = yield* call("GET", `/api/v1/sync/log?after=${after}`)
        assert.deepStrictEqual([end.json.events, end.json.next_after, end.json.has_more], [[], after, false])

        const unknown = yield* call("GET", "/api/v1/sync/log?after=99999999")
        assert.strictEqual(unknown.status, 404)
        assert.match(unknown.json.message, /no ledger row with seq 99999999/)
        for (const q of ["limit=0", "limit=1001", "limit=abc", "after=-1", "after=1.5"]) {
          const bad = yield* call("GET", `/api/v1/sync/log?${q}`)
          assert.strictEqual(bad.status, 400, q)
          assert.strictEqual(bad.json._tag, "HttpApiDecodeError", q)
        }
      }))

    it.effect("GET /api/v1/sync/log never steps over a row committed late (seq drawn before another commit)", () =>
      Effect.gen(function*() {
        const env = yield* TestEnvTag
        const sql = yield* SqlClient.SqlClient
        yield* ledgerSettled
        let after = 0
        while (true) {
          const page = yield* call("GET", `/api/v1/sync/log?after=${after}&limit=1000`)
          if (page.json.events.length === 0) break
          after = page.json.next_after
        }
        // A slow writer: draws its seq, then commits only after a later writer did.
        const slow = new Pg.Client({ connectionString: env.databaseUrl, options: `-c search_path=${env.schema}` })
        yield* Effect.promise(() => slow.connect())
        yield* Effect.addFinalizer(() => Effect.promise(() => slow.end()))
        yield* Effect.promise(() => slow.query("BEGIN"))
        const { rows } = yield* Effect.promise(() =>
          slow.query("SELECT nextval(pg_get_serial_sequence('sync_log', 'seq'))::int AS seq, pg_current_xact_id()")
        )
        const lateSeq: number = rows[0].seq
        yield* put("fast", session("fast", 1))
        const fast = yield* call("POST", "/api/v1/sync/session/fast")
        assert.isAbove(fast.json.ledger_seq, lateSeq)
        const naive = yield* sql<{ seq: number }>`SELECT seq::int AS seq FROM sync_log WHERE seq > ${after}`
        assert.isAbove(naive.length, 0, "a naive seq > after reader sees the fast rows already")
        const during = yield* call("GET", `/api/v1/sync/log?after=${after}`)
        assert.deepStrictEqual(during.json.events, [], "the gap-safe reader waits for the slow writer")
        yield* Effect.promise(() =>
          slow.query(
            "INSERT INTO sync_log (seq, session_id, event_type, payload, source) VALUES ($1, 'slow', 'session_deleted', '{\"v\":1}', 'api')",
            [lateSeq]
          )
        )
        yield* Effect.promise(() => slow.query("COMMIT"))
        yield* ledgerSettled
        const later = yield* call("GET", `/api/v1/sync/log?after=${after}`)
        const seqs: Array<number> = later.json.events.map((e: any) => e.seq)
        assert.strictEqual(seqs[0], lateSeq)
        assert.includeMembers(seqs, naive.map((r) => r.seq))
      }).pipe(Effect.scoped))

    it.effect("POST /api/v1/sync/rebuild: 202, progress and result in the status, 409 while one runs, tables unchanged", () =>
      Effect.gen(function*() {
        const { schema } = yield* TestEnvTag
        yield* put("rebuilt-1", session("rebuilt-1", 3))
        assert.strictEqual((yield* call("POST", "/api/v1/sync/session/rebuilt-1")).status, 200)
        const before = yield* dumpTables
        const accepted = yield* call("POST", "/api/v1/sync/rebuild")
        const again = yield* call("POST", "/api/v1/sync/rebuild")
        assert.strictEqual(accepted.status, 202)
        assert.match(accepted.json.message, /^Rebuild started/)
        assert.strictEqual(accepted.json.rebuild.started_at.length, 24)
        // The second call comes while the first runs (or, on a fast machine, after it finished: then it is a new one).
        assert.include([409, 202], again.status)
        if (again.status === 409) assert.match(again.json.message, /already running/)
        const done = yield* eventually(status, (s) => s.rebuild !== null && !s.rebuild.running, "30 seconds")
        assertFields(done.rebuild, { phase: "done", error: null, eta_seconds: null })
        assert.isAtLeast(done.rebuild.events_replayed, 2)
        assert.deepStrictEqual(done.rebuild.result.changes, [])
        assert.strictEqual(done.rebuild.result.last_seq, done.ledger_seq)
        assert.deepStrictEqual(yield* dumpTables, before)
        const leftovers = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${`${schema}_rebuild`}`)
        assert.strictEqual(leftovers[0]!.n, 0, "the shadow schema is gone")
        // Another process holds the schema's rebuild lock: 409, and the status still shows the rebuild that ran.
        const holder = new Pg.Client({ connectionString: (yield* TestEnvTag).databaseUrl })
        yield* Effect.promise(() => holder.connect())
        yield* Effect.promise(() => holder.query("SELECT pg_advisory_lock($1, hashtext($2))", [0x72707372, schema]))
        const refused = yield* call("POST", "/api/v1/sync/rebuild")
        yield* Effect.promise(() => holder.end())
        assert.strictEqual(refused.status, 409)
        assert.match(refused.json.message, /already running \(another process or replica\)/)
        const kept = (yield* status).rebuild
        assertFields(kept, { phase: "done", error: null })
        assert.deepStrictEqual(kept.result, done.rebuild.result)
        // Writes go on into the swapped-in tables.
        yield* put("rebuilt-1", session("rebuilt-1", 4))
        assert.strictEqual((yield* call("POST", "/api/v1/sync/session/rebuilt-1")).json.messages_inserted, 1)
        yield* assertConsistent
      }))

    it.effect("unknown paths and methods get a JSON 404; /openapi.json and /docs are served", () =>
      Effect.gen(function*() {
        const nope = yield* call("GET", "/api/v1/nope")
        assert.strictEqual(nope.status, 404)
        assert.deepStrictEqual(nope.json, {
          _tag: "NotFound",
          message: "no endpoint GET /api/v1/nope; the endpoints are listed at /docs and /openapi.json"
        })
        assert.strictEqual((yield* call("GET", "/api/v1/sync/manual")).status, 404)
        const openapi = yield* call("GET", "/openapi.json")
        assert.strictEqual(openapi.status, 200)
        assert.strictEqual(openapi.json.openapi, "3.1.0")
        assert.includeMembers(Object.keys(openapi.json.paths), [
          "/api/v1/sync/manual", "/api/v1/sync/status", "/api/v1/sync/session/{session_id}",
          "/api/v1/sync/sessions/compare", "/api/v1/sync/pause", "/api/v1/sync/resume", "/api/v1/sync/log",
          "/api/v1/sync/rejections", "/api/v1/sync/rejections/{session_id}/retry", "/api/v1/sync/rebuild", "/health", "/ready", "/metrics"
        ])
        const docs = yield* call("GET", "/docs")
        assert.strictEqual(docs.status, 200)
        assert.match(docs.contentType, /text\/html/)
      }))
  })
})

describe("HTTP API with SYNC_API_TOKEN", () => {
  layer(apiLayer(makeTestEnv("http_auth"), "s3cret-token"), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("protected endpoints answer 401 without the token or with a wrong one, and work with it", () =>
      Effect.gen(function*() {
        const bare = yield* call("POST", "/api/v1/sync/pause")
        assert.strictEqual(bare.status, 401)
        assert.deepStrictEqual(bare.json, {
          _tag: "Unauthorized",
          message: "this endpoint requires the header Authorization: Bearer <SYNC_API_TOKEN>"
        })
        const wrong = yield* call("POST", "/api/v1/sync/pause", { token: "guess" })
        assert.strictEqual(wrong.status, 401)
        assert.strictEqual(wrong.json.message, "the bearer token does not match SYNC_API_TOKEN")
        for (const [method, path] of [
          ["POST", "/api/v1/sync/manual"], ["POST", "/api/v1/sync/session/x"], ["POST", "/api/v1/sync/resume"],
          ["GET", "/api/v1/sync/log"], ["GET", "/api/v1/sync/rejections"], ["GET", "/api/v1/sync/sessions/compare"],
          ["POST", "/api/v1/sync/rejections/x/retry"], ["POST", "/api/v1/sync/rebuild"]
        ] as const) {
          assert.strictEqual((yield* call(method, path)).status, 401, `${method} ${path}`)
        }
        const ok = yield* call("POST", "/api/v1/sync/pause", { token: "s3cret-token" })
        assert.strictEqual(ok.status, 200)
        assert.strictEqual((yield* call("POST", "/api/v1/sync/resume", { token: "s3cret-token" })).status, 200)
        assert.strictEqual((yield* call("POST", "/api/v1/sync/session/x", { token: "s3cret-token" })).status, 404)
        assert.strictEqual((yield* call("GET", "/api/v1/sync/log", { token: "s3cret-token" })).status, 200)
      }))

    it.effect("status, health, ready, metrics, docs and the OpenAPI document stay open", () =>
      Effect.gen(function*() {
        for (const path of ["/api/v1/sync/status", "/health", "/ready", "/metrics", "/docs", "/openapi.json"]) {
          assert.strictEqual((yield* call("GET", path)).status, 200, path)
        }
        const openapi = (yield* call("GET", "/openapi.json")).json
        assert.deepStrictEqual(openapi.paths["/api/v1/sync/manual"].post.security, [{ bearer: [] }])
      }))
  })
})
