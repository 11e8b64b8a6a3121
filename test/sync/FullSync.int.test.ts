import { SqlClient } from "@effect/sql"
import { assert, describe, expect, layer } from "@effect/vitest"
import { Effect, Either, Fiber, Option, Schedule } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import Pg from "pg"
import * as SessionStore from "../../src/pg/SessionStore.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as SessionSourceModule from "../../src/redis/SessionSource.js"
import { SessionSource } from "../../src/redis/SessionSource.js"
import { decodeSnapshot } from "../../src/core/Snapshot.js"
import { observe } from "../../src/sync/Observe.js"
import { retrySchedule, writeBatch } from "../../src/sync/Writer.js"
import { syncSession } from "../../src/sync/SyncSession.js"
import { assertConsistent, del, dumpTables, ledger, messagesOf, put, syncAll } from "../support/Data.js"
import { makeTestEnv, serversLayer, TestEnvTag, testWriteOptions } from "../support/Servers.js"

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url)
const fixture = (dir: string, file: string) => readFileSync(new URL(`${dir}/${file}`, FIXTURES), "utf8")
const validFixtures = readdirSync(new URL("sessions", FIXTURES)).filter((f) => f.endsWith(".json"))
const rejectedFixtures = readdirSync(new URL("rejected", FIXTURES)).filter((f) => f.endsWith(".txt"))

const msg = (content: string, sender: number, timestamp: string) => ({ content, sender_id: sender, timestamp })

describe("full sync on real Redis and PostgreSQL", () => {
  layer(serversLayer(makeTestEnv("fullsync")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("every fixture behaves as its README says, rejected ones beside good ones in one batch", () =>
      Effect.gen(function*() {
        for (const f of validFixtures) yield* put(`fx-${f.replace(".json", "")}`, fixture("sessions", f))
        for (const f of rejectedFixtures) yield* put(`fx-bad-${f.replace(".txt", "")}`, fixture("rejected", f))
        const result = yield* syncAll({ batchSessions: 100, batchBytes: 10_000_000 })
        assert.strictEqual(result.changed, validFixtures.length)
        assert.strictEqual(result.rejected, rejectedFixtures.length)
        for (const f of validFixtures) {
          const doc = JSON.parse(fixture("sessions", f))
          const rows = yield* messagesOf(`fx-${f.replace(".json", "")}`)
          assert.strictEqual(rows.length, (doc.messages ?? []).length, f)
          assert.deepStrictEqual(rows.map((r) => r.content), (doc.messages ?? []).map((m: any) => m.content), f)
        }
        const events = yield* ledger
        for (const f of rejectedFixtures) {
          const rejected = events.filter((e) => e.session_id === `fx-bad-${f.replace(".txt", "")}`)
          assert.strictEqual(rejected.length, 1, f)
          assert.strictEqual(rejected[0]!.event_type, "snapshot_rejected")
          assert.isAbove(rejected[0]!.payload.reason.length, 10)
          assert.strictEqual(rejected[0]!.payload.excerpt, fixture("rejected", f).slice(0, 200))
        }
        const sql = yield* SqlClient.SqlClient
        const rejections = yield* sql<{ redis_session_id: string; reason: string }>`
          SELECT redis_session_id, reason FROM rejections WHERE redis_session_id LIKE 'fx-bad-%' ORDER BY 1`
        expect(Object.fromEntries(rejections.map((r) => [r.redis_session_id, r.reason]))).toMatchObject({
          "fx-bad-not-json": expect.stringContaining("not JSON"),
          "fx-bad-array-root": "the value is an array, not a JSON object",
          "fx-bad-messages-not-array": "\"messages\" is an object, not an array",
          "fx-bad-truncated": expect.stringContaining("not JSON")
        })
        const timestamps = yield* messagesOf("fx-timestamps")
        assert.deepStrictEqual(timestamps.map((m) => m.sent_at?.toISOString() ?? null), [
          "2024-06-01T08:00:01.000Z",
          "2024-06-01T08:00:02.123Z",
          "2024-06-01T08:00:03.250Z",
          null,
          null
        ])
        const noSender = yield* messagesOf("fx-no-sender")
        assert.deepStrictEqual(noSender.map((m) => m.sender_user_id), [null, "5"])
        const [extra] = yield* sql<{ extra: unknown }>`SELECT extra FROM sessions WHERE redis_session_id = 'fx-extra-fields'`
        assert.deepStrictEqual(extra!.extra, { model: "gpt-x", tags: ["a", "b"] })
        const consistent = yield* assertConsistent
        assert.strictEqual(consistent.sessionsWithWrongCount, 0)
        assert.strictEqual(consistent.ledgerMessages, consistent.messageRows)
        assert.strictEqual(consistent.projectionLastSeq, consistent.ledgerLastSeq)
      }))

    it.effect("messages are expanded from their ledger event: ids from seq, senders as users, extra kept", () =>
      Effect.gen(function*() {
        yield* put("expand", {
          topic: "expand",
          messages: [
            { content: "first", sender_id: "alice", timestamp: "2025-06-01T10:00:00Z", id: "m-1", tokens: 3 },
            { content: "second", sender_id: 2, timestamp: "2025-06-01T10:00:01+02:00" },
            { content: "third", timestamp: "not a time" }
          ]
        })
        yield* syncAll()
        const events = (yield* ledger).filter((e) => e.session_id === "expand")
        assert.deepStrictEqual(events.map((e) => e.event_type), ["session_upserted", "messages_appended"])
        const seq = events[1]!.seq
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ id: string; ordinal: number; sender_user_id: string | null; external_id: string | null; content: string; sent_at: Date | null; extra: unknown; seq: string }>`
          SELECT m.id::text, m.ordinal, m.sender_user_id::text, u.external_id, m.content, m.sent_at, m.extra, m.seq::text
          FROM messages m JOIN sessions s ON s.id = m.session_id LEFT JOIN users u ON u.id = m.sender_user_id
          WHERE s.redis_session_id = 'expand' ORDER BY m.ordinal`
        assert.deepStrictEqual(rows.map((r) => [r.id, r.ordinal, r.external_id, r.content, r.sent_at?.toISOString() ?? null, r.extra, r.seq]), [
          [String(seq * 10_000), 0, "alice", "first", "2025-06-01T10:00:00.000Z", { id: "m-1", tokens: 3 }, String(seq)],
          [String(seq * 10_000 + 1), 1, "2", "second", "2025-06-01T08:00:01.000Z", null, String(seq)],
          [String(seq * 10_000 + 2), 2, null, "third", null, { timestamp: "not a time" }, String(seq)]
        ])
        assert.match(rows[0]!.sender_user_id!, /^-\d+$/)
        const [session] = yield* sql<{ id: string }>`SELECT id::text FROM sessions WHERE redis_session_id = 'expand'`
        assert.strictEqual(session!.id, String(events[0]!.seq))
      }))

    it.effect("syncing unchanged data again appends nothing and changes no row", () =>
      Effect.gen(function*() {
        yield* put("again-1", { topic: "t", messages: [msg("a", 1, "2025-01-01T00:00:00Z")] })
        yield* syncAll()
        const before = yield* dumpTables
        const ledgerBefore = yield* ledger
        const second = yield* syncAll()
        assert.strictEqual(second.changed, 0)
        assert.strictEqual(second.events, 0)
        assert.strictEqual(second.unchanged, second.scanned)
        assert.deepStrictEqual(yield* dumpTables, before)
        assert.deepStrictEqual(yield* ledger, ledgerBefore)
      }))

    it.effect("the same \"ok\" from the same sender is kept every time it was said", () =>
      Effect.gen(function*() {
        const ok = msg("ok", 1, "2025-06-03T09:05:00Z")
        yield* put("ok-twice", { messages: [ok, ok] })
        yield* syncAll()
        yield* put("ok-twice", { messages: [ok, ok, ok] })
        yield* syncAll()
        const rows = yield* messagesOf("ok-twice")
        assert.deepStrictEqual(rows.map((r) => [r.ordinal, r.content]), [[0, "ok"], [1, "ok"], [2, "ok"]])
        assert.strictEqual(new Set(rows.map((r) => r.message_key)).size, 3)
      }))

    it.effect("a snapshot whose oldest messages were trimmed away loses nothing and duplicates nothing", () =>
      Effect.gen(function*() {
        const all = Array.from({ length: 8 }, (_, i) => msg(`m${i}`, i % 2 + 1, `2025-06-01T10:00:0${i}Z`))
        yield* put("trimmed", { topic: "trim", updated_at: "2025-06-01T10:00:04Z", messages: all.slice(0, 5) })
        yield* syncAll()
        yield* put("trimmed", { topic: "trim", updated_at: "2025-06-01T10:00:07Z", messages: all.slice(3, 8) })
        yield* syncAll()
        const rows = yield* messagesOf("trimmed")
        assert.deepStrictEqual(rows.map((r) => r.content), ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"])
        assert.deepStrictEqual(rows.map((r) => r.ordinal), [0, 1, 2, 3, 4, 5, 6, 7])
      }))

    it.effect("a message that comes back after its session's snapshots no longer held it is not appended again", () =>
      Effect.gen(function*() {
        // The writer knows a session's keys from its last snapshot; the projection also holds the ones trimmed away
        // before it, and those are asked of PostgreSQL when a later snapshot has them again.
        const ok = msg("ok", 1, "2025-06-03T09:05:00Z")
        const all = Array.from({ length: 9 }, (_, i) => msg(`t${i}`, 1, `2025-06-01T10:00:0${i}Z`))
        const snapshots = [
          ["back-ok", [ok, ok]],
          ["back-ok", [ok]],
          ["back-ok", [ok, ok]],
          ["back-trim", all.slice(0, 5)],
          ["back-trim", all.slice(3, 8)],
          ["back-trim", all.slice(2, 9)]
        ] as const
        for (const [id, messages] of snapshots) {
          yield* put(id, { topic: "back", messages })
          yield* syncAll()
        }
        const appended = (id: string) =>
          ledger.pipe(Effect.map((rows) =>
            rows.filter((e) => e.session_id === id && e.event_type === "messages_appended")
              .flatMap((e) => e.payload.messages.map((x: { content: string }) => x.content))
          ))
        assert.deepStrictEqual(yield* appended("back-ok"), ["ok", "ok"])
        assert.deepStrictEqual(yield* appended("back-trim"), ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"])
        assert.deepStrictEqual((yield* messagesOf("back-trim")).map((r) => r.content), all.map((m) => m.content))
      }))

    it.effect("a batch rolled back leaves the writer knowing only what was committed", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const store = yield* SessionStore.SessionStore
        const m = (i: number) => msg(`rb${i}`, 1, `2025-06-01T10:00:0${i}Z`)
        yield* put("rollback-1", { topic: "rb", messages: [m(0)] })
        yield* syncAll()
        yield* put("rollback-1", { topic: "rb", messages: [m(0), m(1)] })
        const observation = observe((yield* (yield* SessionSource).read(["rollback-1"]))[0]!)!
        yield* sql.unsafe(`
          CREATE FUNCTION refuse_rb1() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
          CREATE TRIGGER refuse_rb1 BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.content = 'rb1')
            EXECUTE FUNCTION refuse_rb1()`)
        const failed = yield* Effect.either(store.apply([observation], "api"))
        yield* sql.unsafe("DROP TRIGGER refuse_rb1 ON messages; DROP FUNCTION refuse_rb1()")
        assert.isTrue(Either.isLeft(failed), "the batch should have failed")
        // The failed attempt decoded the new snapshot; its keys were never committed, so rb1 is still new.
        const result = yield* store.apply([observation], "api")
        assert.strictEqual(result.messagesInserted, 1)
        assert.deepStrictEqual((yield* messagesOf("rollback-1")).map((r) => r.content), ["rb0", "rb1"])
      }))

    it.effect("an older snapshot adds its missing messages but never rolls metadata back", () =>
      Effect.gen(function*() {
        const a = msg("first", 1, "2025-06-01T10:00:00Z")
        const b = msg("second", 2, "2025-06-01T10:00:01Z")
        const lost = msg("only in the old copy", 1, "2025-06-01T09:59:00Z")
        yield* put("no-regress", { topic: "new topic", updated_at: "2025-06-01T10:00:01Z", messages: [a, b] })
        yield* syncAll()
        yield* put("no-regress", { topic: "old topic", updated_at: "2025-06-01T09:59:00Z", messages: [lost] })
        yield* syncAll()
        const sql = yield* SqlClient.SqlClient
        const [s] = yield* sql<{ topic: string; message_count: number }>`
          SELECT topic, message_count FROM sessions WHERE redis_session_id = 'no-regress'`
        assert.deepStrictEqual(s, { topic: "new topic", message_count: 3 })
        assert.deepStrictEqual((yield* messagesOf("no-regress")).map((r) => r.content), ["first", "second", "only in the old copy"])
      }))

    it.effect("session ids with spaces, unicode and colons sync, one by one too", () =>
      Effect.gen(function*() {
        const ids = ["with space", "ünïcødé 😀 漢字", "a:b:c", "quote\"and'apostrophe", "glob*?[x]"]
        for (const id of ids) yield* put(id, { topic: id, messages: [msg(`hello ${id}`, 1, "2025-01-01T00:00:00Z")] })
        yield* syncAll()
        for (const id of ids) assert.deepStrictEqual((yield* messagesOf(id)).map((r) => r.content), [`hello ${id}`])
        yield* put("a:b:c", { topic: "a:b:c", messages: [msg("hello a:b:c", 1, "2025-01-01T00:00:00Z"), msg("more", 2, "2025-01-01T00:00:01Z")] })
        const outcome = yield* syncSession("a:b:c", "api", testWriteOptions)
        assert.strictEqual(outcome._tag, "Synced")
        assert.deepStrictEqual((yield* messagesOf("a:b:c")).map((r) => r.content), ["hello a:b:c", "more"])
      }))

    it.effect("sync-session says not found, and rejects a bad value with its reason", () =>
      Effect.gen(function*() {
        const missing = yield* syncSession("does-not-exist", "api", testWriteOptions)
        assert.strictEqual(missing._tag, "NotFound")
        yield* put("bad-one", "{\"messages\": 5}")
        const rejected = yield* syncSession("bad-one", "api", testWriteOptions)
        assert.strictEqual(rejected._tag, "Rejected")
        assert.strictEqual(rejected._tag === "Rejected" && rejected.reason, "\"messages\" is a number, not an array")
      }))

    it.effect("a value PostgreSQL refuses is rejected into the ledger and the rest of its batch syncs", () =>
      Effect.gen(function*() {
        // A constraint of the operator's, which the decoder knows nothing of: the database refuses the session.
        const sql = yield* SqlClient.SqlClient
        yield* sql`ALTER TABLE messages ADD CONSTRAINT operator_rule CHECK (content IS DISTINCT FROM 'forbidden words')`
        yield* put("pg-refuses", { topic: "refused", messages: [msg("forbidden words", 1, "2025-01-01T00:00:00Z")] })
        for (let i = 0; i < 6; i++) yield* put(`pg-fine-${i}`, { topic: `fine ${i}`, messages: [msg("x", 1, "2025-01-01T00:00:00Z")] })
        const result = yield* syncAll({ batchSessions: 100 })
        assert.isAtLeast(result.changed, 6)
        const events = yield* ledger
        const refused = events.filter((e) => e.session_id === "pg-refuses")
        assert.deepStrictEqual(refused.map((e) => e.event_type), ["snapshot_rejected"])
        assert.include(refused[0]!.payload.reason, "PostgreSQL refused the session")
        for (let i = 0; i < 6; i++) assert.strictEqual((yield* messagesOf(`pg-fine-${i}`)).length, 1)
        const again = yield* syncAll()
        assert.strictEqual(again.events, 0)
        yield* sql`ALTER TABLE messages DROP CONSTRAINT operator_rule`
      }))

    it.effect("a forced retry writes an unchanged value once PostgreSQL accepts it; an ordinary sync does not", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`ALTER TABLE messages ADD CONSTRAINT operator_rule_2 CHECK (content IS DISTINCT FROM 'not yet')`
        yield* put("retry-me", { topic: "retry", messages: [msg("not yet", 1, "2025-01-01T00:00:00Z")] })
        assert.strictEqual((yield* syncSession("retry-me", "api", testWriteOptions))._tag, "Rejected")
        yield* sql`ALTER TABLE messages DROP CONSTRAINT operator_rule_2`
        const plain = yield* syncSession("retry-me", "api", testWriteOptions)
        assert.strictEqual(plain._tag === "Synced" && plain.result.events, 0)
        assert.strictEqual((yield* messagesOf("retry-me")).length, 0)
        const forced = yield* syncSession("retry-me", "api", testWriteOptions, true)
        assert.strictEqual(forced._tag, "Synced")
        assert.deepStrictEqual((yield* messagesOf("retry-me")).map((r) => r.content), ["not yet"])
        const standing = yield* sql`SELECT 1 FROM rejections WHERE redis_session_id = 'retry-me'`
        assert.strictEqual(standing.length, 0)
      }))

    it.effect("a NUL character anywhere in a document is replaced and reported, and the session syncs", () =>
      Effect.gen(function*() {
        yield* put("nul-inside", "{\"topic\": \"nul\", \"weird\": {\"k\\u0000\": \"a\\u0000b\"}, \"messages\": []}")
        yield* syncAll()
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ extra: unknown }>`SELECT extra FROM sessions WHERE redis_session_id = 'nul-inside'`
        assert.deepStrictEqual(row!.extra, { weird: { "k\uFFFD": "a\uFFFDb" } })
        const [event] = (yield* ledger).filter((e) => e.session_id === "nul-inside")
        assert.deepStrictEqual(event!.payload.warnings, ["weird.k\uFFFD (a key): NUL characters replaced with U+FFFD", "weird.k\uFFFD: NUL characters replaced with U+FFFD"])
      }))

    it.effect("values nested too deep are rejected with their reason beside good ones; the session syncs once it is not", () =>
      Effect.gen(function*() {
        const deep = (n: number) => "[".repeat(n) + "]".repeat(n)
        const first = msg("first", 1, "2025-06-01T10:00:00Z")
        const sql = yield* SqlClient.SqlClient
        yield* put("deep-ok", { topic: "t", messages: [first] })
        yield* put("deep-extra", `{"x": ${deep(1000)}, "messages": [{"content": "kept nowhere"}]}`)
        yield* put("deep-content", `{"messages": [{"content": ${deep(200_000)}}]}`)
        yield* put("deep-kept", `{"x": ${deep(999)}, "messages": [{"content": "kept", "meta": ${deep(997)}}]}`)
        const one = yield* syncAll()
        assert.strictEqual(one.rejected, 2)
        assert.deepStrictEqual((yield* messagesOf("deep-ok")).map((m) => m.content), ["first"])
        // As deep as a kept value may be, PostgreSQL's jsonb takes it.
        const [kept] = yield* sql<{ extra: unknown; session_extra: unknown }>`
          SELECT m.extra, s.extra AS session_extra FROM messages m JOIN sessions s ON s.id = m.session_id
          WHERE s.redis_session_id = 'deep-kept'`
        assert.deepStrictEqual([JSON.stringify(kept!.extra), JSON.stringify(kept!.session_extra)], [`{"meta":${deep(997)}}`, `{"x":${deep(999)}}`])
        const reasons = () =>
          sql<{ redis_session_id: string; reason: string }>`
            SELECT redis_session_id, reason FROM rejections WHERE redis_session_id LIKE 'deep-%' ORDER BY 1`.pipe(
            Effect.map((rows) => Object.fromEntries(rows.map((r) => [r.redis_session_id, r.reason])))
          )
        assert.deepStrictEqual(yield* reasons(), {
          "deep-content": "the value is nested deeper than 1000 levels",
          "deep-extra": "the value is nested deeper than 1000 levels"
        })
        // An append whose sender cannot be walked: rejected, the messages before it stay; a good value next syncs.
        yield* put("deep-ok", `{"topic": "t", "messages": [${JSON.stringify(first)}, {"content": "x", "sender_id": ${deep(200_000)}}]}`)
        yield* syncAll()
        assert.strictEqual((yield* reasons())["deep-ok"], "the value is nested deeper than 1000 levels")
        yield* put("deep-ok", { topic: "t", messages: [first, msg("second", 2, "2025-06-01T10:01:00Z")] })
        yield* syncAll()
        assert.deepStrictEqual((yield* messagesOf("deep-ok")).map((m) => m.content), ["first", "second"])
        assert.isUndefined((yield* reasons())["deep-ok"])
        yield* assertConsistent
      }))

    it.effect("a lone surrogate escape is replaced and reported, and every message of the session is kept", () =>
      Effect.gen(function*() {
        // Python's json.dumps writes half an emoji this way when a string was cut between its two UTF-16 units.
        yield* put("half-emoji", "{\"topic\": \"t\", \"messages\": [{\"content\": \"ok \\ud83d\", \"sender_id\": 1, " +
          "\"timestamp\": \"2025-01-01T00:00:00Z\"}, {\"content\": \"fine \\ud83d\\ude00\", \"sender_id\": 2, " +
          "\"timestamp\": \"2025-01-01T00:00:01Z\"}]}")
        yield* syncAll()
        assert.deepStrictEqual((yield* messagesOf("half-emoji")).map((r) => r.content), ["ok \uFFFD", "fine \u{1F600}"])
        const [event] = (yield* ledger).filter((e) => e.session_id === "half-emoji")
        assert.deepStrictEqual(event!.payload.warnings, ["messages[0].content: lone surrogates replaced with U+FFFD"])
      }))

    it.effect("a rejected value cut in half an emoji, and a session id PostgreSQL cannot store, leave their batch written", () =>
      Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        // Not a session ("messages" is a string); its 200-character excerpt ends between the two halves of an emoji.
        const cut = `{"topic":"xyz","messages":"${"\u{1F600}".repeat(100)}"}`
        yield* put("cut-emoji", cut)
        for (let i = 0; i < 3; i++) yield* put(`beside-cut-${i}`, { topic: "fine", messages: [msg("x", 1, "2025-01-01T00:00:00Z")] })
        const reads = yield* SessionSource.pipe(Effect.flatMap((s) => s.read(["cut-emoji", "beside-cut-0", "beside-cut-1", "beside-cut-2"])))
        const nul = observe({ sessionId: "nul\u0000id", value: Buffer.from(JSON.stringify({ topic: "nul id" })), redisType: "string" })!
        const result = yield* writeBatch([observe(reads[0]!)!, nul, ...reads.slice(1).map((r) => observe(r)!)], "reconcile", testWriteOptions)
        assert.strictEqual(result.rejected, 1)
        const events = yield* ledger
        const rejected = events.filter((e) => e.session_id === "cut-emoji")
        assert.deepStrictEqual(rejected.map((e) => e.event_type), ["snapshot_rejected"])
        assert.isTrue(String(rejected[0]!.payload.excerpt).endsWith("\uFFFD"))
        for (let i = 0; i < 3; i++) assert.strictEqual((yield* messagesOf(`beside-cut-${i}`)).length, 1)
        // A key whose id holds NUL, and one whose name is not UTF-8 (which, read back by its decoded name, would
        // pass for a key deleted meanwhile), are skipped by the scan with a warning, and the full sync goes on.
        yield* RedisClient.use("SET", (c) => c.set(`${prefix}scan\u0000nul`, JSON.stringify({ topic: "nul" })))
        const latin1 = Buffer.concat([Buffer.from(prefix), Buffer.from([0x63, 0xe9, 0x74])])
        yield* RedisClient.use("SET", (c) => c.set(latin1, JSON.stringify({ topic: "latin-1 name" })))
        yield* put("after-nul", { topic: "after", messages: [msg("y", 1, "2025-01-01T00:00:00Z")] })
        const after = yield* syncAll()
        assert.strictEqual(after.vanished, 0)
        assert.strictEqual((yield* messagesOf("after-nul")).length, 1)
        yield* RedisClient.use("DEL", (c) => c.del(latin1, `${prefix}scan\u0000nul`))
      }))

    it.effect("a writer's cached message keys are not trusted once another writer moved the session on", () =>
      Effect.gen(function*() {
        const m = (i: number) => msg(`c${i}`, 1, `2025-06-01T10:00:0${i}Z`)
        const other = yield* SessionStore.make
        yield* put("cache-1", { topic: "cache", messages: [m(0), m(1)] })
        yield* syncAll()
        yield* put("cache-1", { topic: "cache", messages: [m(0), m(1), m(2)] })
        const observation = observe((yield* (yield* SessionSource).read(["cache-1"]))[0]!)!
        yield* writeBatch([observation], "api", testWriteOptions).pipe(Effect.provideService(SessionStore.SessionStore, other))
        yield* put("cache-1", { topic: "cache", messages: [m(0), m(1), m(2), m(3)] })
        yield* syncAll()
        assert.deepStrictEqual((yield* messagesOf("cache-1")).map((r) => [r.ordinal, r.content]), [[0, "c0"], [1, "c1"], [2, "c2"], [3, "c3"]])
        const appended = (yield* ledger).filter((e) => e.session_id === "cache-1" && e.event_type === "messages_appended")
        assert.deepStrictEqual(appended.map((e) => e.payload.messages.map((x: { content: string }) => x.content)), [["c0", "c1"], ["c2"], ["c3"]])
      }))

    it.effect("a message already in the projection behind the writer's back is skipped, and the rest of the batch written", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const m = (i: number) => msg(`d${i}`, 1, `2025-06-01T10:00:0${i}Z`)
        yield* put("dup-1", { topic: "dup", messages: [m(0)] })
        yield* put("dup-2", { topic: "dup", messages: [m(0)] })
        yield* syncAll()
        // A changed session's keys are loaded, and kept by the writer for its next change.
        yield* put("dup-1", { topic: "dup", messages: [m(0), m(1)] })
        yield* syncAll()
        yield* put("dup-1", { topic: "dup", messages: [m(0), m(1), m(2)] })
        yield* put("dup-2", { topic: "dup", messages: [m(0), m(1)] })
        // Plant dup-1's next message the way no writer would: the writer's cached keys do not show it.
        const value = (yield* (yield* SessionSource).read(["dup-1"]))[0]!.value!.toString("utf8")
        const decoded = decodeSnapshot("dup-1", value)
        assert(Either.isRight(decoded))
        const key = decoded.right.messages[2]!.key
        yield* sql`
          INSERT INTO messages (id, session_id, message_key, ordinal, content, seq)
          SELECT 9000000000, id, ${key}, 2, 'planted', last_seq FROM sessions WHERE redis_session_id = 'dup-1'`
        const result = yield* syncAll()
        assert.strictEqual(result.changed, 2)
        assert.deepStrictEqual((yield* messagesOf("dup-1")).map((r) => r.content), ["d0", "d1", "planted"])
        assert.deepStrictEqual((yield* messagesOf("dup-2")).map((r) => r.content), ["d0", "d1"])
        const appended = (yield* ledger).filter((e) => e.session_id === "dup-1" && e.event_type === "messages_appended")
        assert.deepStrictEqual(appended.map((e) => e.payload.messages.map((x: { content: string }) => x.content)), [["d0"], ["d1"], ["d2"]])
      }))

    it.effect("a session that left Redis and comes back appends only its new messages (no key set is remembered unloaded)", () =>
      Effect.gen(function*() {
        const m = (i: number) => msg(`b${i}`, 1, `2025-06-01T10:00:0${i}Z`)
        const store = yield* SessionStore.SessionStore
        yield* put("back-1", { topic: "back", messages: [m(0), m(1)] })
        yield* syncAll()
        // The departure is written with the session's state but without loading its message keys.
        yield* store.apply([{ _tag: "Gone", sessionId: "back-1", kind: "expired" }], "keyspace")
        yield* put("back-1", { topic: "back", messages: [m(0), m(1), m(2)] })
        const observation = observe((yield* (yield* SessionSource).read(["back-1"]))[0]!)!
        yield* writeBatch([observation], "keyspace", testWriteOptions)
        const appended = (yield* ledger).filter((e) => e.session_id === "back-1" && e.event_type === "messages_appended")
        assert.deepStrictEqual(appended.map((e) => e.payload.messages.map((x: { content: string }) => x.content)), [["b0", "b1"], ["b2"]])
        assert.deepStrictEqual((yield* messagesOf("back-1")).map((r) => r.content), ["b0", "b1", "b2"])

        // The very value it left with comes back: an upsert that clears the stamp, and no message again.
        yield* store.apply([{ _tag: "Gone", sessionId: "back-1", kind: "deleted" }], "keyspace")
        yield* writeBatch([observation], "keyspace", testWriteOptions)
        const after = (yield* ledger).filter((e) => e.session_id === "back-1")
        assert.deepStrictEqual(after.slice(-2).map((e) => e.event_type), ["session_deleted", "session_upserted"])
        assert.strictEqual(after.filter((e) => e.event_type === "messages_appended").length, 2)
      }))

    it.effect("a full sync records as expired every session whose key left Redis, across many pages", () =>
      Effect.gen(function*() {
        const ids = Array.from({ length: 23 }, (_, i) => `departed-${i}`)
        for (const id of ids) yield* put(id, { topic: "bye", messages: [msg("x", 1, "2025-01-01T00:00:00Z")] })
        yield* syncAll()
        for (const id of ids) yield* del(id)
        const result = yield* syncAll({ scanCount: 5 })
        assert.strictEqual(result.departed, 23)
        const expired = (yield* ledger).filter((e) => e.session_id.startsWith("departed-") && e.event_type === "session_expired")
        assert.deepStrictEqual(expired.map((e) => e.session_id).sort(), [...ids].sort())
        assert.strictEqual((yield* syncAll({ scanCount: 5 })).departed, 0)
      }))

    it.effect("the ledger refuses UPDATE, DELETE and TRUNCATE", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // Rows of its own, so that the test does not depend on the ones before it.
        yield* put("append-only", { topic: "kept", messages: [msg("x", 1, "2025-01-01T00:00:00Z")] })
        yield* syncAll()
        const [before] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM sync_log`
        assert.isAbove(Number(before!.n), 0)
        const statements = [
          "UPDATE sync_log SET source = 'api'",
          // Refused even when it would change no row: the trigger is per statement.
          "UPDATE sync_log SET source = 'api' WHERE false",
          "DELETE FROM sync_log",
          "DELETE FROM sync_log WHERE false",
          "TRUNCATE sync_log"
        ]
        for (const statement of statements) {
          const result = yield* Effect.either(sql.unsafe(statement))
          assert.isTrue(Either.isLeft(result), statement)
          if (Either.isLeft(result)) expect(String((result.left as any).cause?.message)).toMatch(/sync_log is append-only: (UPDATE|DELETE|TRUNCATE) is refused/)
        }
        const [after] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM sync_log`
        assert.strictEqual(after!.n, before!.n)
      }))

    it.effect("two full syncs at once write every message once (one writer per session)", () =>
      Effect.gen(function*() {
        for (let i = 0; i < 40; i++) {
          yield* put(`race-${i}`, { topic: "race", messages: Array.from({ length: 10 }, (_, k) => msg(`r${i}-${k}`, 1, `2025-01-01T00:00:0${k}Z`)) })
        }
        const [a, b] = yield* Effect.all([syncAll({ batchSessions: 7 }), syncAll({ batchSessions: 5 })], { concurrency: 2 })
        const sql = yield* SqlClient.SqlClient
        const [n] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM messages m JOIN sessions s ON s.id = m.session_id WHERE s.redis_session_id LIKE 'race-%'`
        assert.strictEqual(Number(n!.n), 400)
        const events = (yield* ledger).filter((e) => e.session_id.startsWith("race-"))
        assert.strictEqual(events.length, 80)
        assert.strictEqual(a.messagesInserted + b.messagesInserted, 400)
        const consistent = yield* assertConsistent
        assert.strictEqual(consistent.ledgerMessages, consistent.messageRows)
      }))

    it.effect("a key MGET misses but that exists again by the time of TYPE is read again, not rejected as a non-string", () =>
      Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        const { client } = yield* RedisClient.RedisClient
        yield* put("recreated-1", { topic: "back", messages: [msg("again", 1, "2025-01-01T00:00:00Z")] })
        // The interleaving of a DEL and a SET between the two round trips: the first MGET finds nothing.
        let first = true
        const racing = new Proxy(client, {
          get: (target, name, receiver) =>
            name === "mgetBuffer"
              ? (...keys: Array<string>) => {
                if (!first) return target.mgetBuffer(...keys)
                first = false
                return Promise.resolve(keys.map(() => null))
              }
              : Reflect.get(target, name, receiver)
        })
        const [raw] = yield* SessionSourceModule.make(racing, prefix).read(["recreated-1"])
        assert.isNotNull(raw!.value, "read again after TYPE found a string")
        assert.strictEqual(raw!.redisType, "string")
        assert.include(raw!.value!.toString("utf8"), "again")
      }))

    it.effect("a writer waits while another transaction holds a session's lock (one writer per session, across replicas)", () =>
      Effect.gen(function*() {
        const { databaseUrl, schema } = yield* TestEnvTag
        yield* put("locked-1", { topic: "locked", messages: [msg("wait for it", 1, "2025-01-01T00:00:00Z")] })
        // Another writer (a replica, say) holds the lock of locked-1 in an open transaction.
        const other = new Pg.Client({ connectionString: databaseUrl, options: `-c search_path=${schema}` })
        yield* Effect.promise(() => other.connect())
        yield* Effect.addFinalizer(() => Effect.promise(() => other.end()))
        yield* Effect.promise(() => other.query("BEGIN; SELECT sync_lock_sessions(ARRAY['locked-1'])"))
        const [read] = yield* SessionSource.pipe(Effect.flatMap((s) => s.read(["locked-1"])))
        const writer = yield* Effect.fork(writeBatch([observe(read!)!], "reconcile", testWriteOptions))
        // Long enough for the write to be done many times over, were it not waiting.
        yield* Effect.sleep("1 second")
        assert.isTrue(Option.isNone(yield* Fiber.poll(writer)), "the writer waits for the lock")
        assert.strictEqual((yield* messagesOf("locked-1")).length, 0)
        yield* Effect.promise(() => other.query("COMMIT"))
        const result = yield* Fiber.join(writer)
        assert.strictEqual(result.messagesInserted, 1)
      }).pipe(Effect.scoped))

    it.effect("users, groups and memberships seen committed are not inserted again; one deleted behind the writer's back is", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const doc = (group: number, sender: number, text: string) => ({
          topic: "shared rows",
          group_id: group,
          created_by: 9101,
          messages: [msg(text, sender, "2025-02-01T00:00:00Z")]
        })
        yield* put("shared-a", doc(9101, 9102, "a"))
        yield* syncAll()
        // Every row PostgreSQL is asked to insert into the shared tables, conflicting or not (BEFORE triggers fire
        // for each proposed row), is counted from here on.
        yield* sql`CREATE TABLE shared_insert_probe (tab text NOT NULL)`
        yield* sql.unsafe(`
          CREATE FUNCTION shared_insert_probe_count() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO shared_insert_probe VALUES (TG_TABLE_NAME); RETURN NEW; END $$`)
        for (const table of ["users", "groups", "group_participants"]) {
          yield* sql.unsafe(`CREATE TRIGGER shared_insert_probe BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION shared_insert_probe_count()`)
        }
        yield* Effect.addFinalizer(() =>
          sql.unsafe(`DROP TABLE shared_insert_probe; DROP FUNCTION shared_insert_probe_count() CASCADE`).pipe(Effect.orDie)
        )
        const probed = sql<{ tab: string; n: number }>`SELECT tab, count(*)::int AS n FROM shared_insert_probe GROUP BY tab ORDER BY tab`
        yield* put("shared-b", doc(9101, 9102, "b"))
        const b = yield* syncAll()
        assert.strictEqual(b.messagesInserted, 1)
        assert.deepStrictEqual(yield* probed, [], "nothing asked of the shared tables for rows seen committed")
        yield* put("shared-c", doc(9101, 9103, "c"))
        yield* syncAll()
        assert.deepStrictEqual(yield* probed, [{ tab: "group_participants", n: 1 }, { tab: "users", n: 1 }])
        // User 9103 is deleted behind the writer's back (its membership first). A batch that names it with a new
        // group fails on the foreign key at commit, and is written again with every row it names.
        yield* sql`DELETE FROM group_participants WHERE user_id = 9103`
        yield* sql`DELETE FROM users WHERE id = 9103`
        yield* put("shared-d", doc(9104, 9103, "d"))
        const d = yield* syncAll()
        assert.deepStrictEqual([d.changed, d.messagesInserted], [1, 1])
        assert.strictEqual((yield* messagesOf("shared-d"))[0]!.content, "d")
        const [user] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM users WHERE id = 9103`
        const [pair] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM group_participants WHERE group_id = 9104 AND user_id = 9103`
        assert.deepStrictEqual([user!.n, pair!.n], [1, 1])
      }).pipe(Effect.scoped))

    it.effect("a batch that meets both a message already there and a user deleted by hand is written, not rejected", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const m = (i: number, sender = 9301) => msg(`x${i}`, sender, `2025-06-01T10:00:0${i}Z`)
        yield* put("dup-fk-other", { topic: "o", group_id: 9300, created_by: 9301, messages: [m(0, 9302)] })
        yield* put("dup-fk", { topic: "x", group_id: 9300, created_by: 9301, messages: [m(0)] })
        yield* syncAll()
        // Written a second time, the session's keys are in the writer's cache: it does not look at the table again.
        yield* put("dup-fk", { topic: "x", group_id: 9300, created_by: 9301, messages: [m(0), m(1)] })
        yield* syncAll()
        // Next value: a message from 9302, in a new group (a new membership, whose foreign key names user 9302).
        yield* put("dup-fk", { topic: "x", group_id: 9305, created_by: 9301, messages: [m(0), m(1), m(2, 9302)] })
        // Behind the writer's back: the new message planted in the projection (the duplicate path), and user 9302,
        // whom the writer saw committed, deleted.
        const [raw] = yield* SessionSource.pipe(Effect.flatMap((s) => s.read(["dup-fk"])))
        const decoded = decodeSnapshot("dup-fk", raw!.value!.toString("utf8"))
        if (Either.isLeft(decoded)) return assert.fail(decoded.left.reason)
        yield* sql`INSERT INTO messages (id, session_id, message_key, ordinal, content, seq)
          SELECT 9000000001, id, ${decoded.right.messages[2]!.key}, 2, 'planted', last_seq
          FROM sessions WHERE redis_session_id = 'dup-fk'`
        yield* sql`DELETE FROM group_participants WHERE user_id = 9302`
        yield* sql`DELETE FROM messages WHERE sender_user_id = 9302`
        yield* sql`DELETE FROM users WHERE id = 9302`
        const result = yield* syncAll()
        assert.deepStrictEqual([result.rejected, result.changed], [0, 1])
        const events = (yield* ledger).filter((e) => e.session_id === "dup-fk").map((e) => e.event_type)
        assert.notInclude(events, "snapshot_rejected")
        const [row] = yield* sql<{ group_id: string; users: number }>`
          SELECT group_id::text, (SELECT count(*)::int FROM users WHERE id = 9302) AS users
          FROM sessions WHERE redis_session_id = 'dup-fk'`
        assert.deepStrictEqual(row, { group_id: "9305", users: 1 })
      }))
  })
})

describe("a first full sync, into an empty projection", () => {
  layer(serversLayer(makeTestEnv("firstsync")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("looks up no standing hash, writes everything, and the next sync finds it all unchanged", () =>
      Effect.gen(function*() {
        const store = yield* SessionStore.SessionStore
        let lookups = 0
        const counting = SessionStore.SessionStore.of({
          ...store,
          standingHashes: (ids) => Effect.suspend(() => (lookups++, store.standingHashes(ids)))
        })
        for (let i = 0; i < 30; i++) yield* put(`first-${i}`, { topic: "first", messages: [msg(`f${i}`, 1, "2025-01-01T00:00:00Z")] })
        assert.isTrue(yield* store.isEmpty)
        const first = yield* syncAll({ scanCount: 10 }).pipe(Effect.provideService(SessionStore.SessionStore, counting))
        assert.deepStrictEqual([lookups, first.changed, first.messagesInserted], [0, 30, 30])
        assert.isFalse(yield* store.isEmpty)
        const second = yield* syncAll({ scanCount: 10 }).pipe(Effect.provideService(SessionStore.SessionStore, counting))
        assert.isAbove(lookups, 0)
        assert.deepStrictEqual([second.unchanged, second.changed, second.events], [30, 0, 0])
      }))
  })
})

describe("a full sync that wrote many sessions", () => {
  layer(serversLayer(makeTestEnv("statistics")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("analyses the tables sessions are looked up in; one that wrote none does not", () =>
      Effect.gen(function*() {
        const { schema } = yield* TestEnvTag
        const sql = yield* SqlClient.SqlClient
        const analysed = sql<{ relname: string; n: string }>`
          SELECT relname, analyze_count::text AS n FROM pg_stat_user_tables
          WHERE schemaname = ${schema} AND relname IN ('sessions', 'rejections') ORDER BY relname`
        for (let i = 0; i < 1_000; i++) yield* put(`stat-${i}`, { topic: "statistics", messages: [msg(`m${i}`, 1, "2025-01-01T00:00:00Z")] })
        yield* put("stat-bad", "{ not json")
        assert.deepStrictEqual((yield* analysed).map((r) => r.n), ["0", "0"])
        const first = yield* syncAll({ batchSessions: 200 })
        assert.deepStrictEqual([first.changed, first.rejected], [1_000, 1])
        // Polled: the count is read from the cumulative statistics, which a backend may report a little later.
        yield* Effect.retry(
          Effect.flatMap(analysed, (rows) =>
            rows.every((r) => r.n === "1") ? Effect.void : Effect.fail(`not analysed yet: ${JSON.stringify(rows)}`)),
          Schedule.spaced("200 millis").pipe(Schedule.intersect(Schedule.recurs(25)))
        )
        const second = yield* syncAll({ batchSessions: 200 })
        assert.deepStrictEqual([second.unchanged, second.changed], [1_001, 0])
        yield* Effect.sleep("1200 millis")
        assert.deepStrictEqual((yield* analysed).map((r) => r.n), ["1", "1"])
      }))
  })
})

describe("a sync whose PostgreSQL connections are killed mid-way", () => {
  layer(serversLayer(makeTestEnv("killed")), { timeout: "90 seconds", excludeTestServices: true })((it) => {
    it.effect("leaves ledger and tables consistent, and the next sync completes", () =>
      Effect.gen(function*() {
        const { schema } = yield* TestEnvTag
        for (let i = 0; i < 300; i++) {
          yield* put(`k-${i}`, { topic: "kill", messages: Array.from({ length: 30 }, (_, k) => msg(`k${i}-${k} ${"x".repeat(200)}`, k % 3 + 1, "2025-01-01T00:00:00Z")) })
        }
        const sql = yield* SqlClient.SqlClient
        const noRetry = { retry: retrySchedule("10 millis", 0), batchSessions: 5, writeConcurrency: 2 }
        const fiber = yield* Effect.fork(Effect.either(syncAll(noRetry)))
        // Once the first batches have committed, kill the writers' connections again and again until it stops.
        // Inside a transaction a writer's backend is as often waiting for the next statement ("idle in
        // transaction") as running one, and both are killed: a sync that finished between two kills would leave
        // nothing to check. (Idle pooled connections are left: the pool would just replace them.)
        yield* Effect.repeat(
          sql<{ n: string }>`SELECT count(*)::text AS n FROM sync_log`.pipe(Effect.map((r) => Number(r[0]!.n))),
          { until: (n) => n > 0, schedule: Schedule.spaced("10 millis") }
        )
        // Stopped by a flag, not interrupted: an interrupted query is cancelled with pg_cancel_backend, which could
        // land on the test's next statement (57014). And a backend killed in the last round may still sit in the
        // pool for a moment after the sync released it ("Connection terminated unexpectedly" on the next query),
        // so the pool is given time to drop it. Each made this test fail about one run in ten.
        let killing = true
        const killer = yield* Effect.fork(Effect.repeat(
          sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = ${schema} AND pid <> pg_backend_pid()
                AND state IN ('active', 'idle in transaction')`,
          { schedule: Schedule.spaced("5 millis"), while: () => killing }
        ).pipe(Effect.ignore))
        const first = yield* Fiber.join(fiber)
        killing = false
        yield* Fiber.join(killer)
        yield* Effect.sleep("300 millis")
        assert.isTrue(Either.isLeft(first), "the first sync should have failed when its connections were killed")
        const mid = yield* assertConsistent
        assert.strictEqual(mid.sessionsWithWrongCount, 0)
        assert.strictEqual(mid.ledgerMessages, mid.messageRows)
        assert.strictEqual(mid.projectionLastSeq, mid.ledgerLastSeq)
        assert.isBelow(mid.messageRows, 9000)
        const second = yield* syncAll()
        assert.strictEqual(second.scanned, 300)
        const done = yield* assertConsistent
        assert.strictEqual(done.messageRows, 9000)
        assert.strictEqual(done.ledgerMessages, 9000)
        assert.strictEqual(done.projectionLastSeq, done.ledgerLastSeq)
      }))

    it.effect("with retries, a sync whose connections are killed completes by itself", () =>
      Effect.gen(function*() {
        const { schema } = yield* TestEnvTag
        for (let i = 0; i < 200; i++) {
          yield* put(`r-${i}`, { topic: "retry", messages: Array.from({ length: 30 }, (_, k) => msg(`r${i}-${k} ${"y".repeat(200)}`, 1, "2025-01-01T00:00:00Z")) })
        }
        const sql = yield* SqlClient.SqlClient
        const fiber = yield* Effect.fork(syncAll({ batchSessions: 5 }))
        yield* Effect.repeat(
          sql<{ n: string }>`SELECT count(*)::text AS n FROM sync_log WHERE session_id LIKE 'r-%'`.pipe(Effect.map((r) => Number(r[0]!.n))),
          { until: (n) => n > 0, schedule: Schedule.spaced("10 millis") }
        )
        yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE application_name = ${schema} AND pid <> pg_backend_pid()`
        yield* Fiber.join(fiber)
        const [n] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM messages m JOIN sessions s ON s.id = m.session_id WHERE s.redis_session_id LIKE 'r-%'`
        assert.strictEqual(Number(n!.n), 6000)
        const done = yield* assertConsistent
        assert.strictEqual(done.ledgerMessages, done.messageRows)
      }))
  })
})
