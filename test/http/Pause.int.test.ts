import { SqlClient } from "@effect/sql"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { assertConsistent } from "../support/Data.js"
import { makeTestEnv, TestEnvTag } from "../support/Servers.js"
import { apiLayer, call, eventually } from "./Harness.js"

const SESSIONS = 3000

const doc = (id: string) => ({
  topic: id,
  group_id: 1,
  messages: Array.from({ length: 10 }, (_, i) => ({
    content: `${id} says ${i}`,
    sender_id: (i % 2) + 1,
    timestamp: `2025-06-01T10:00:${String(i).padStart(2, "0")}Z`
  }))
})

const status = Effect.map(call("GET", "/api/v1/sync/status"), (r) => r.json as Record<string, any>)

describe("HTTP API: a pause stops a manual sync under way", () => {
  layer(apiLayer(makeTestEnv("http-pause")), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("the manual sync's callers get 409 with how far it came, nothing more is written, and after the resume a sync writes the rest", () =>
      Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        const sql = yield* SqlClient.SqlClient
        yield* eventually(status, (s) => s.startup_sync_done === true)
        // Written without a signal (the daemon listens to the channel only): only a sync finds them.
        yield* RedisClient.use("SET", async (c) => {
          const p = c.pipeline()
          for (let i = 0; i < SESSIONS; i++) p.set(`${prefix}p-${i}`, JSON.stringify(doc(`p-${i}`)))
          await p.exec()
        })
        const synced = Effect.map(
          sql<{ n: number }>`SELECT count(DISTINCT session_id)::int AS n FROM sync_log WHERE source = 'api'`,
          (rows) => rows[0]!.n
        )
        const manual = yield* Effect.fork(call("POST", "/api/v1/sync/manual"))
        yield* eventually(synced, (n) => n > 0)
        const paused = yield* call("POST", "/api/v1/sync/pause")
        assert.strictEqual(paused.status, 200)
        // The batches in flight finish; it starts no other.
        const stopped = yield* Fiber.join(manual)
        assert.strictEqual(stopped.status, 409)
        assert.strictEqual(stopped.json._tag, "Conflict")
        const [, scanned, changed] = stopped.json.message.match(
          /^the manual sync was stopped by a pause after (\d+) sessions scanned \((\d+) changed, \d+ messages inserted\); .*POST \/api\/v1\/sync\/resume/
        ) ?? assert.fail(`unexpected message: ${stopped.json.message}`)
        const atPause = yield* synced
        assert.isBelow(atPause, SESSIONS)
        assert.strictEqual(Number(changed), atPause)
        assert.isAtLeast(Number(scanned), atPause)
        assert.isFalse((yield* status).manual_sync_running)
        // Stopped for good: nothing more is written while paused.
        yield* Effect.sleep("300 millis")
        assert.strictEqual(yield* synced, atPause)
        const c = yield* assertConsistent
        assert.strictEqual(c.messageRows, c.ledgerMessages)

        assert.strictEqual((yield* call("POST", "/api/v1/sync/resume")).status, 200)
        const again = yield* call("POST", "/api/v1/sync/manual")
        assert.strictEqual(again.status, 200)
        assert.strictEqual(again.json.sessions_changed, SESSIONS - atPause)
        assert.strictEqual(yield* synced, SESSIONS)
        assert.strictEqual((yield* assertConsistent).messageRows, SESSIONS * 10)
      }))
  })
})
