import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { classify, compare, describe as describeComparison, type Held } from "../../src/sync/Compare.js"
import { del, put, syncAll } from "../support/Data.js"
import { makeTestEnv, TestEnvTag } from "../support/Servers.js"
import { serversLayer } from "../support/Servers.js"

const doc = (topic: string, n = 1) => ({
  topic,
  messages: Array.from({ length: n }, (_, i) => ({ content: `${topic} ${i}`, sender_id: 1, timestamp: "2025-06-01T10:00:00Z" }))
})

const held = (fields: Partial<Held>): Held => ({
  sessionHash: null,
  hasSession: false,
  gone: false,
  hasRejection: false,
  rejectedHash: null,
  ...fields
})

describe("Compare.classify (the writer's skip rule)", () => {
  it("never synced: missing; same hash: in sync; other hash: stale", () => {
    assert.strictEqual(classify("h1", held({})), "missingInPostgresql")
    assert.strictEqual(classify("h1", held({ hasSession: true, sessionHash: "h1" })), "inSync")
    assert.strictEqual(classify("h2", held({ hasSession: true, sessionHash: "h1" })), "stale")
  })
  it("recorded gone but back in Redis, even at the same value: stale", () => {
    assert.strictEqual(classify("h1", held({ hasSession: true, sessionHash: "h1", gone: true })), "stale")
  })
  it("a standing rejection wins over the session row: same value rejected, another value stale", () => {
    const rejected = held({ hasSession: true, sessionHash: "h0", hasRejection: true, rejectedHash: "h1" })
    assert.strictEqual(classify("h1", rejected), "rejected")
    assert.strictEqual(classify("h2", rejected), "stale")
    assert.strictEqual(classify("h0", rejected), "stale")
    assert.strictEqual(classify("h1", held({ hasRejection: true, rejectedHash: "h1" })), "rejected")
  })
})

describe("Compare.compare on real Redis and PostgreSQL", () => {
  layer(serversLayer(makeTestEnv("compare")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("empty on both sides: nothing anywhere, no drift", () =>
      Effect.gen(function*() {
        const c = yield* compare({ limit: 10, scanCount: 100 })
        assert.deepStrictEqual([c.redisSessions, c.postgresqlSessions, c.hasDrift, c.redisSessionIds], [0, 0, false, []])
      }))

    it.effect("each category, with counts, sorted ids up to the limit, and the seed's three keys", () =>
      Effect.gen(function*() {
        for (let i = 0; i < 30; i++) yield* put(`s-${String(i).padStart(2, "0")}`, doc(`s-${i}`))
        yield* put("bad", "not json")
        yield* put("gone-1", doc("gone-1"))
        yield* put("gone-2", doc("gone-2"))
        yield* syncAll({ scanCount: 7 })
        // drift: a new session, two changed, one deleted, one expired and recorded as gone, one of another type
        yield* put("s-00", doc("s-00 changed", 2))
        yield* put("s-01", doc("s-01 changed", 2))
        yield* del("gone-1")
        yield* del("gone-2")
        yield* syncAll() // records gone-1 and gone-2 as expired (they are PostgreSQL's now)
        yield* put("new-1", doc("new-1"))
        yield* put("s-01", doc("s-01 changed again", 3))
        yield* put("gone-2", doc("gone-2")) // back, with the very value last synced
        yield* del("s-29")
        const { prefix } = yield* TestEnvTag
        yield* RedisClient.use("HSET", (c) => c.hset(`${prefix}a-hash`, "f", "v"))

        const c = yield* compare({ limit: 3, scanCount: 7 })
        assert.strictEqual(c.redisSessions, 33) // s-00..s-28, bad, new-1, gone-2, a-hash
        assert.strictEqual(c.postgresqlSessions, 32) // s-00..s-29, gone-1, gone-2 (bad is only a rejection)
        assert.deepStrictEqual(c.missingInPostgresql, { count: 2, ids: ["a-hash", "new-1"] })
        assert.deepStrictEqual(c.stale, { count: 2, ids: ["gone-2", "s-01"] })
        assert.deepStrictEqual(c.rejected, { count: 1, ids: ["bad"] })
        assert.deepStrictEqual(c.onlyInPostgresql, { count: 2, ids: ["gone-1", "s-29"] })
        assert.deepStrictEqual(c.departedUnrecorded, { count: 1, ids: ["s-29"] })
        assert.strictEqual(c.inSync.count, 28) // s-00 (synced by the second sync) and s-02..s-28
        assert.deepStrictEqual(c.inSync.ids, ["s-00", "s-02", "s-03"])
        assert.strictEqual(c.redisSessionIds.length, 10)
        assert.strictEqual(c.inSync.count + c.missingInPostgresql.count + c.stale.count + c.rejected.count, c.redisSessions)
        assert.isTrue(c.hasDrift)
        const text = describeComparison(c)
        assert.match(text, /^Redis: 33 sessions; PostgreSQL: 32 sessions/)
        assert.match(text, /missing in PostgreSQL +2  a-hash, new-1\n/)
        assert.match(text, /in sync +28  s-00, s-02, s-03, …\n/)

        yield* syncAll()
        const after = yield* compare({ limit: 0, scanCount: 1000 })
        assert.deepStrictEqual(
          [after.missingInPostgresql.count, after.stale.count, after.departedUnrecorded.count, after.rejected.count],
          [0, 0, 0, 2]
        )
        assert.strictEqual(after.inSync.ids.length, 0)
        assert.isFalse(after.hasDrift)
      }))
  })
})
