import { SqlClient } from "@effect/sql"
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Ref, Schedule } from "effect"
import Pg from "pg"
import type { Observation } from "../../src/core/Decide.js"
import type { GoneKind } from "../../src/core/Events.js"
import { decodeSnapshot } from "../../src/core/Snapshot.js"
import * as SessionStore from "../../src/pg/SessionStore.js"
import { SessionSource } from "../../src/redis/SessionSource.js"
import { observe } from "../../src/sync/Observe.js"
import * as Replay from "../../src/pg/Replay.js"
import * as Rebuild from "../../src/sync/Rebuild.js"
import { writeBatch } from "../../src/sync/Writer.js"
import { del, dumpTables, dumpTablesOf, put } from "../support/Data.js"
import { makeTestEnv, serversLayer, TestEnvTag, testWriteOptions } from "../support/Servers.js"

/** mulberry32: a small seeded PRNG, so that a failing history can be replayed. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface Msg {
  readonly content: string
  readonly sender_id: number
  readonly timestamp: string
}
interface Model {
  messages: Array<Msg>
  topic: string
  group: number
  inRedis: boolean
  broken: boolean
}

/**
 * A random chat history written the way the daemon writes it: sessions created, appended to, trimmed (the
 * oldest messages gone from the snapshot), re-sent unchanged, renamed, given a value that cannot be a session
 * and repaired, deleted, expired, evicted and created again; changes flushed in batches of random size, as the
 * live pipeline coalesces them.
 */
const history = (seed: number, steps: number, sessions: number) =>
  Effect.gen(function*() {
    const random = prng(seed)
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
    const model = new Map<string, Model>()
    const dirty = new Set<string>()
    const gone = new Map<string, GoneKind>()
    let clock = Date.parse("2025-06-01T10:00:00Z")
    const message = (): Msg => {
      clock += 1000 * (1 + Math.floor(random() * 30))
      // Short, repetitive contents and few senders: the same "ok" from the same sender is said again and again.
      return { content: pick(["ok", "yes", "no", "ok", "hello", `note ${Math.floor(random() * 5)}`]), sender_id: 1 + Math.floor(random() * 4), timestamp: new Date(clock).toISOString() }
    }
    const doc = (m: Model) => ({ topic: m.topic, group_id: m.group, messages: m.messages })
    const write = (id: string, m: Model) =>
      Effect.gen(function*() {
        m.inRedis = true
        gone.delete(id)
        dirty.add(id)
        yield* put(id, m.broken ? "{not json" : doc(m))
      })
    const flush = Effect.gen(function*() {
      const source = yield* SessionSource
      const ids = Array.from(dirty)
      dirty.clear()
      const raws = yield* source.read(ids)
      const observations: Array<Observation> = raws.flatMap((raw) => {
        const o = raw === undefined ? null : observe(raw)
        return o === null ? [] : [o]
      })
      for (const [sessionId, kind] of gone) observations.push({ _tag: "Gone", sessionId, kind })
      gone.clear()
      if (observations.length > 0) yield* writeBatch(observations, "keyspace", testWriteOptions)
    })
    let untilFlush = 1
    for (let step = 0; step < steps; step++) {
      const id = `s${Math.floor(random() * sessions)}`
      const m = model.get(id)
      if (m === undefined || !m.inRedis) {
        const fresh: Model = m ?? { messages: [], topic: `topic ${id}`, group: 1 + Math.floor(random() * 3), inRedis: false, broken: false }
        if (m === undefined) model.set(id, fresh)
        const n = Math.floor(random() * 6)
        for (let i = 0; i < n; i++) fresh.messages.push(message())
        yield* write(id, fresh)
      } else {
        const r = random()
        if (r < 0.45) {
          const n = 1 + Math.floor(random() * 3)
          for (let i = 0; i < n; i++) m.messages.push(message())
          yield* write(id, m)
        } else if (r < 0.55) {
          m.messages.splice(0, 1 + Math.floor(random() * 3))
          yield* write(id, m)
        } else if (r < 0.62) {
          yield* write(id, m)
        } else if (r < 0.68) {
          m.topic = `topic ${id} v${step}`
          yield* write(id, m)
        } else if (r < 0.74) {
          m.broken = !m.broken
          yield* write(id, m)
        } else if (r < 0.84) {
          m.inRedis = false
          dirty.delete(id)
          gone.set(id, pick(["deleted", "expired", "evicted"] as const))
          yield* del(id)
        } else {
          m.messages.push(message(), message())
          yield* write(id, m)
        }
      }
      if (--untilFlush === 0) {
        yield* flush
        untilFlush = 1 + Math.floor(random() * 8)
      }
    }
    yield* flush
  })

const ledgerHead = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ seq: number; n: number }>`SELECT COALESCE(max(seq), 0)::int AS seq, count(*)::int AS n FROM sync_log`
  return row!
})

/** Drops the schemas a test creates beside its own when the test ends. */
const dropAfter = (...schemas: Array<string>) =>
  Effect.addFinalizer(() =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.forEach(schemas, (s) => sql.unsafe(`DROP SCHEMA IF EXISTS "${s}" CASCADE`))
    ).pipe(Effect.orDie)
  )

describe("rebuild, verify and point-in-time replay on real Redis and PostgreSQL", () => {
  layer(serversLayer(makeTestEnv("rebuild")), { timeout: "120 seconds", excludeTestServices: true })((it) => {
    it.effect("a random history of thousands of events, rebuilt twice: tables identical row for row, ids included; --until-seq gives the state of then", () =>
      Effect.gen(function*() {
        const { schema } = yield* TestEnvTag
        const pointInTime = `${schema}_then`
        yield* dropAfter(`${schema}_rebuild`, `${schema}_previous`, pointInTime, `${pointInTime}_t`)

        yield* history(7, 700, 120)
        const then = yield* ledgerHead
        const tablesThen = yield* dumpTables
        yield* history(8, 2000, 160)
        const head = yield* ledgerHead
        assert.isAbove(head.n, 2000, "thousands of events")
        const eventTypes = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ event_type: string }>`SELECT DISTINCT event_type FROM sync_log ORDER BY 1`)
        assert.deepStrictEqual(eventTypes.map((r) => r.event_type), [
          "messages_appended", "session_deleted", "session_evicted", "session_expired", "session_upserted", "snapshot_rejected"
        ])

        const live = yield* dumpTables
        // Small pages: a replay batches events quite differently from the writer that wrote them.
        const first = yield* Rebuild.rebuild({ pageEvents: 97, pageMessages: 400, diff: true })
        assert.isTrue(first.swapped)
        assert.strictEqual(first.eventsReplayed, head.n)
        assert.strictEqual(first.lastSeq, head.seq)
        assert.deepStrictEqual(first.diff!.filter((d) => !d.same), [])
        assert.deepStrictEqual(Rebuild.describeChanges(first), [])
        assert.deepStrictEqual(yield* dumpTables, live)

        const second = yield* Rebuild.rebuild({ keepPrevious: true })
        assert.deepStrictEqual(yield* dumpTables, live)
        assert.strictEqual(second.previous, `${schema}_previous`)
        assert.deepStrictEqual(yield* dumpTablesOf(`${schema}_previous`), live)

        const verified = yield* Rebuild.verify()
        assert.isTrue(verified.same)
        assert.strictEqual(verified.eventsReplayed, head.n)

        const past = yield* Rebuild.rebuild({ into: pointInTime, untilSeq: then.seq })
        assert.isFalse(past.swapped)
        assert.strictEqual(past.lastSeq, then.seq)
        assert.deepStrictEqual(yield* dumpTablesOf(pointInTime), tablesThen)
        assert.deepStrictEqual(yield* dumpTables, live, "a point-in-time replay leaves the live tables alone")

        // The same moment by time: the ledger up to the first event recorded after it.
        const [at] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ t: string }>`SELECT to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t FROM sync_log WHERE seq = ${then.seq}`)
        const byTime = yield* Rebuild.rebuild({ into: `${pointInTime}_t`, untilTime: at!.t })
        assert.strictEqual(byTime.lastSeq, then.seq)
        assert.deepStrictEqual(yield* dumpTablesOf(`${pointInTime}_t`), tablesThen)
      }).pipe(Effect.scoped))

    it.effect("verify finds a tampered projection and names the rows; a rebuild repairs it", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* TestEnvTag
        yield* dropAfter(`${schema}_rebuild`)
        yield* history(11, 200, 40)
        const [victim] = yield* sql<{ id: string; session_id: string }>`SELECT id::text, session_id::text FROM messages ORDER BY id LIMIT 1`
        yield* sql`UPDATE messages SET content = 'tampered' WHERE id = ${victim!.id}::bigint`
        yield* sql`UPDATE sessions SET topic = 'tampered' WHERE id = (SELECT max(id) FROM sessions)`
        const bad = yield* Rebuild.verify()
        assert.isFalse(bad.same)
        const differing = bad.diff.filter((d) => !d.same)
        assert.deepStrictEqual(differing.map((d) => [d.table, d.onlyLeft, d.onlyRight, d.changed]), [
          ["sessions", 0, 0, 1],
          ["messages", 0, 0, 1]
        ])
        assert.deepStrictEqual(differing[1]!.sample, [`(${victim!.id})`])
        assert.match(Rebuild.describeDiff(bad.diff).join("\n"), /^messages: \d+ rows live, \d+ replay; 0 only live, 0 only replay, 1 with other values; e\.g\. \(\d+\)$/m)

        const repaired = yield* Rebuild.rebuild({ diff: true })
        assert.deepStrictEqual(repaired.diff!.filter((d) => !d.same).map((d) => d.table), ["sessions", "messages"])
        assert.isTrue((yield* Rebuild.verify()).same)
        const [row] = yield* sql<{ content: string }>`SELECT content FROM messages WHERE id = ${victim!.id}::bigint`
        assert.notStrictEqual(row!.content, "tampered")
      }).pipe(Effect.scoped))

    it.effect("a rebuild while live writes continue loses and duplicates nothing", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* TestEnvTag
        yield* dropAfter(`${schema}_rebuild`)
        yield* history(21, 600, 100)
        const stop = yield* Ref.make(false)
        const rounds = yield* Ref.make(0)
        const writer = yield* Effect.fork(Effect.gen(function*() {
          let seed = 100
          while (!(yield* Ref.get(stop))) {
            yield* history(seed++, 40, 150)
            yield* Ref.update(rounds, (n) => n + 1)
          }
        }))
        // Tiny pages stretch the replay, so that the writer appends during every phase.
        const during = yield* Rebuild.rebuild({ pageEvents: 20, pageMessages: 100 })
        yield* Ref.set(stop, true)
        yield* Fiber.join(writer)
        assert.isAbove(yield* Ref.get(rounds), 0)
        assert.isTrue(during.swapped)

        const verified = yield* Rebuild.verify()
        assert.deepStrictEqual(Rebuild.describeDiff(verified.diff), [])
        assert.isTrue(verified.same)
        // Every message the ledger holds is in the table exactly once.
        const [counts] = yield* sql<{ ledger: number; table: number; distinct_ids: number }>`
          SELECT (SELECT COALESCE(sum(jsonb_array_length(payload->'messages')), 0)::int FROM sync_log
                  WHERE event_type = 'messages_appended') AS ledger,
                 (SELECT count(*)::int FROM messages) AS table,
                 (SELECT count(DISTINCT (session_id, message_key))::int FROM messages) AS distinct_ids`
        assert.strictEqual(counts!.table, counts!.ledger)
        assert.strictEqual(counts!.distinct_ids, counts!.ledger)
      }).pipe(Effect.scoped))

    it.effect("a writer's cached message keys do not outlive a swap: a message a buggy projection pretended to hold is written", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* TestEnvTag
        yield* dropAfter(`${schema}_rebuild`)
        const m = (i: number) => ({ content: `c${i}`, sender_id: 1, timestamp: `2025-06-01T10:00:0${i}Z` })
        const write = (messages: Array<unknown>) =>
          Effect.gen(function*() {
            yield* put("cached-1", { topic: "cache", messages })
            const [raw] = yield* (yield* SessionSource).read(["cached-1"])
            return yield* writeBatch([observe(raw!)!], "keyspace", testWriteOptions)
          })
        const other = yield* SessionStore.make
        yield* write([m(0)]).pipe(Effect.provideService(SessionStore.SessionStore, other))
        // A projection bug: the table holds m1, which the ledger never had.
        const snapshot = decodeSnapshot("cached-1", JSON.stringify({ messages: [m(0), m(1)] }))
        const fakeKey = Either.getOrThrow(snapshot).messages[1]!.key
        yield* sql`INSERT INTO messages (id, session_id, message_key, ordinal, content, seq)
                   SELECT 1, id, ${fakeKey}, 1, 'c1', last_seq FROM sessions WHERE redis_session_id = 'cached-1'`
        // This writer loads (and caches) the keys of the buggy table.
        yield* write([m(0), m(2)])
        const repaired = yield* Rebuild.rebuild({})
        assert.isTrue(repaired.swapped)
        // m1 really arrives now: the writer must not trust the keys it cached from the replaced table.
        yield* write([m(0), m(2), m(1)])
        const [row] = yield* sql<{ contents: Array<string> }>`
          SELECT array_agg(content ORDER BY ordinal) AS contents FROM messages
          WHERE session_id = (SELECT id FROM sessions WHERE redis_session_id = 'cached-1')`
        assert.deepStrictEqual(row!.contents, ["c0", "c2", "c1"])
        assert.isTrue((yield* Rebuild.verify()).same)
      }).pipe(Effect.scoped))

    it.effect("a batch retried across a swap does not reuse the keys it knew in the replaced tables", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { databaseUrl, schema } = yield* TestEnvTag
        yield* dropAfter(`${schema}_rebuild`)
        const m = (i: number) => ({ content: `x${i}`, sender_id: 1, timestamp: `2025-06-01T10:00:0${i}Z` })
        const store = yield* SessionStore.make
        const write = (messages: Array<unknown>) =>
          Effect.gen(function*() {
            yield* put("across-1", { topic: "across", messages })
            const [raw] = yield* (yield* SessionSource).read(["across-1"])
            return observe(raw!)!
          })
        yield* store.apply([yield* write([m(0)])], "api")
        yield* store.apply([yield* write([m(0), m(1)])], "api")
        // An operator's mistake that a rebuild is for: x1's row is gone from the table (the ledger has it).
        yield* sql`DELETE FROM messages WHERE content = 'x1'`
        const observation = yield* write([m(0), m(1), m(2)])
        // Every step is ordered by locks, not by time. The first attempt stops at its insert of x2 until the test
        // lets it go, then fails as if a row it refers to were gone (a foreign key violation: retried).
        const connect = () =>
          Effect.acquireRelease(
            Effect.promise(async () => {
              const client = new Pg.Client({ connectionString: databaseUrl })
              await client.connect()
              return client
            }),
            (client) => Effect.promise(() => client.end())
          )
        const gate = yield* connect()
        const blocker = yield* connect()
        yield* Effect.promise(() => gate.query("SELECT pg_advisory_lock(424242)"))
        yield* sql.unsafe(`
          CREATE FUNCTION across_fail() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            PERFORM pg_advisory_lock(424242);
            PERFORM pg_advisory_unlock(424242);
            RAISE EXCEPTION 'a row this batch refers to is gone' USING ERRCODE = 'foreign_key_violation';
          END $$;
          CREATE TRIGGER across_fail BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.content = 'x2')
            EXECUTE FUNCTION across_fail()`)
        const waiting = (condition: string) =>
          Effect.gen(function*() {
            const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks WHERE ${sql.unsafe(condition)}`
            if (row!.n === 0) return yield* Effect.fail("not yet")
          }).pipe(Effect.retry({ times: 600, schedule: Schedule.spaced("50 millis") }), Effect.orDie)
        // A writer that has no memo of the session yet (another replica, or one just started) loads its keys.
        const fresh = yield* SessionStore.make
        const applied = yield* Effect.fork(fresh.apply([observation], "api"))
        // The first attempt holds the session's lock and waits at the gate.
        yield* waiting("locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = 424242")
        // Another transaction queues for the session's lock, ahead of the second attempt.
        const [{ pid }] = (yield* Effect.promise(() => blocker.query("SELECT pg_backend_pid() AS pid"))).rows
        yield* Effect.promise(() => blocker.query("BEGIN"))
        const queued = blocker.query("SELECT pg_advisory_xact_lock(hashtextextended('across-1', 0))")
        yield* waiting(`locktype = 'advisory' AND NOT granted AND pid = ${Number(pid)}`)
        yield* Effect.promise(() => gate.query("SELECT pg_advisory_unlock(424242)"))
        yield* Effect.promise(() => queued)
        // The first attempt has failed and the second waits for the lock; a rebuild swaps in tables with x1 again.
        const rebuilt = yield* Rebuild.rebuild({})
        assert.isTrue(rebuilt.swapped)
        yield* Effect.promise(() => blocker.query("COMMIT"))
        yield* Fiber.join(applied)
        const appended = (yield* sql<{ key: string }>`
          SELECT m->>'key' AS key FROM sync_log, jsonb_array_elements(payload->'messages') AS m
          WHERE session_id = 'across-1' AND event_type = 'messages_appended'`).map((r) => r.key)
        assert.strictEqual(appended.length, 3, "each message appended to the ledger once")
        assert.strictEqual(new Set(appended).size, 3)
        const [row] = yield* sql<{ contents: Array<string> }>`
          SELECT array_agg(content ORDER BY ordinal) AS contents FROM messages
          WHERE session_id = (SELECT id FROM sessions WHERE redis_session_id = 'across-1')`
        assert.deepStrictEqual(row!.contents, ["x0", "x1", "x2"])
      }).pipe(Effect.scoped))

    it.effect("a swap that cannot get its locks gives up within lockTimeout: live tables unchanged, no shadow left", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const env = yield* TestEnvTag
        yield* history(31, 60, 10)
        const before = yield* dumpTables
        // Another transaction reads the sessions and stays open: the swap cannot lock them.
        const reader = new Pg.Client({ connectionString: env.databaseUrl, options: `-c search_path=${env.schema}` })
        yield* Effect.promise(() => reader.connect())
        yield* Effect.addFinalizer(() => Effect.promise(() => reader.end()))
        yield* Effect.promise(() => reader.query("BEGIN; SELECT count(*) FROM sessions"))
        const failed = yield* Effect.flip(Rebuild.rebuild({ lockTimeout: "1 second" }))
        yield* Effect.promise(() => reader.query("COMMIT"))
        assert.strictEqual(failed._tag, "RebuildError")
        assert.match(failed.message, /^the swap could not lock the tables within 1s \(long transactions on them\?\); the live tables are unchanged$/)
        assert.deepStrictEqual(yield* dumpTables, before)
        const [left] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${`${env.schema}_rebuild`}`
        assert.strictEqual(left!.n, 0)
        assert.isTrue((yield* Rebuild.rebuild({})).swapped, "the lock is released: the next rebuild runs")
      }).pipe(Effect.scoped))

    it.effect("a rebuild while a verify replays cannot swap under it: verify still finds the live tables a replay", () =>
      Effect.gen(function*() {
        yield* history(61, 40, 8)
        const replaying = yield* Deferred.make<void>()
        const rebuilt = yield* Deferred.make<void>()
        // The verify stops in its replay until the rebuild has had its try (a long replay, in short).
        const verifying = yield* Effect.fork(Rebuild.verify({
          onProgress: (p) =>
            p.phase === "verifying"
              ? Deferred.succeed(replaying, undefined).pipe(Effect.zipRight(Deferred.await(rebuilt)))
              : Effect.void
        }))
        yield* Deferred.await(replaying)
        const rebuild = yield* Effect.either(Rebuild.rebuild({ lockTimeout: "1 second" }))
        yield* Deferred.succeed(rebuilt, undefined)
        const verified = yield* Fiber.join(verifying)
        assert.isTrue(Either.isLeft(rebuild), "the swap could not lock the tables the verify holds")
        assert.isTrue(verified.same, JSON.stringify(verified.diff.filter((d) => !d.same)))
        assert.isTrue((yield* Rebuild.rebuild({})).swapped, "once the verify is over, a rebuild swaps")
      }))

    it.effect("a rebuild whose lock connection dropped does not swap (another replica may have started)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* TestEnvTag
        yield* dropAfter(`${schema}_rebuild`)
        yield* history(51, 40, 8)
        const before = yield* dumpTables
        const dropLockConnection = sql`
          SELECT pg_terminate_backend(pid) FROM pg_locks
          WHERE locktype = 'advisory' AND objsubid = 2 AND classid = ${0x72707372}::bigint::oid
            AND objid = (hashtext(${schema})::bigint & 4294967295)::oid`.pipe(Effect.orDie, Effect.asVoid)
        const lost = yield* Effect.flip(Rebuild.rebuild({ onStarted: dropLockConnection }))
        assert.match(lost.message, /the rebuild lost its lock \(its connection dropped; another rebuild may have started\): the live tables are unchanged/)
        assert.deepStrictEqual(yield* dumpTables, before)
        assert.isTrue((yield* Rebuild.rebuild({})).swapped, "the next rebuild runs")
      }).pipe(Effect.scoped))

    it.effect("one rebuild at a time; --into refuses an existing schema and the live one", () =>
      Effect.gen(function*() {
        const { schema } = yield* TestEnvTag
        yield* Rebuild.rebuildLock(schema)
        const busy = yield* Effect.flip(Rebuild.rebuild({}))
        assert.strictEqual(busy._tag, "RebuildError")
        assert.match(busy.message, /already running/)
        const exists = yield* Effect.flip(Rebuild.rebuild({ into: "public" }))
        assert.match(exists.message, /^schema public already exists; choose another --into or drop it/)
        const itself = yield* Effect.flip(Rebuild.rebuild({ into: schema }))
        assert.match(itself.message, /another schema than/)
      }).pipe(Effect.scoped))
  })
})

describe("rebuild and verify with a PG_SCHEMA of 63 characters (PostgreSQL's longest name)", () => {
  // t_ + 52 + _ + 8 hex = 63: `{schema}_rebuild` and `{schema}_previous` would be cut back to names of 63 bytes.
  layer(serversLayer(makeTestEnv("l".repeat(52))), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("the derived schemas get names of their own: the live schema and its ledger are never touched", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* TestEnvTag
        assert.strictEqual(schema.length, 63)
        const shadow = Replay.derivedName(schema, "rebuild")
        const previous = Replay.derivedName(schema, "previous")
        yield* dropAfter(shadow, previous)
        assert.deepStrictEqual([shadow.length <= 63, previous.length <= 63, new Set([schema, shadow, previous]).size], [true, true, 3])
        yield* history(41, 120, 20)
        const before = yield* dumpTables
        const events = (yield* ledgerHead).n
        const result = yield* Rebuild.rebuild({ keepPrevious: true })
        assert.deepStrictEqual([result.swapped, result.previous, result.eventsReplayed], [true, previous, events])
        assert.deepStrictEqual(yield* dumpTables, before)
        assert.deepStrictEqual(yield* dumpTablesOf(previous), before)
        assert.isTrue((yield* Rebuild.verify()).same)
        const [ledgerRows] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM sync_log`
        assert.strictEqual(ledgerRows!.n, events)
      }).pipe(Effect.scoped))
  })
})

describe("rebuild after a logical restore into another cluster (tx_ids ahead of the server's)", () => {
  layer(serversLayer(makeTestEnv("restored")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("a ledger whose tx_ids are ahead is replayed in seq order: rebuilt tables identical, ids included", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { schema } = yield* TestEnvTag
        yield* dropAfter(`${schema}_rebuild`)
        yield* history(71, 120, 20)
        // What pg_dump and a restore into a younger cluster leave: the same rows, tx_ids the server has not reached
        // yet. (The append-only trigger is set aside for the simulation only.)
        yield* sql`ALTER TABLE sync_log DISABLE TRIGGER sync_log_append_only`
        yield* sql`UPDATE sync_log SET tx_id = (tx_id::text::bigint + 50000000)::text::xid8`
        yield* sql`ALTER TABLE sync_log ENABLE TRIGGER sync_log_append_only`
        assert.isTrue((yield* Rebuild.verify()).same, "the restored tables are a replay of the restored ledger")
        // Live writes after the restore, then a rebuild.
        yield* history(72, 60, 20)
        const before = yield* dumpTables
        const result = yield* Rebuild.rebuild({})
        assert.isTrue(result.swapped)
        assert.deepStrictEqual(yield* dumpTables, before)
        assert.isTrue((yield* Rebuild.verify()).same)
      }).pipe(Effect.scoped))
  })
})
