import { SqlClient } from "@effect/sql"
import { assert, describe, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer, Ref } from "effect"
import { SessionStore } from "../../src/pg/SessionStore.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { assertConsistent } from "../support/Data.js"
import { makeTestEnv, TestEnvTag } from "../support/Servers.js"
import { apiLayer, call, eventually } from "./Harness.js"

const SESSIONS = 1000

/** Holds every write of a manual sync (source `api`) until `open`; counts those that came to it. */
class Gate extends Context.Tag("test/Gate")<Gate, {
  readonly open: Effect.Effect<void>
  readonly arrived: Effect.Effect<number>
}>() {}

const gated = Layer.effectContext(Effect.gen(function*() {
  const store = yield* SessionStore
  const opened = yield* Deferred.make<void>()
  const arrived = yield* Ref.make(0)
  const held = SessionStore.of({
    ...store,
    apply: (observations, source) =>
      source === "api"
        ? Ref.update(arrived, (n) => n + 1).pipe(
          Effect.zipRight(Deferred.await(opened)),
          Effect.zipRight(store.apply(observations, source))
        )
        : store.apply(observations, source)
  })
  return Context.make(SessionStore, held).pipe(
    Context.add(Gate, { open: Deferred.succeed(opened, undefined).pipe(Effect.asVoid), arrived: Ref.get(arrived) })
  )
}))

const doc = (id: string) => ({
  topic: id,
  group_id: 1,
  messages: [{ content: `${id} says hello`, sender_id: 1, timestamp: "2025-06-01T10:00:00Z" }]
})

describe("HTTP API: a manual sync asked for while a paused one is still finishing", () => {
  layer(apiLayer(makeTestEnv("http-pause-race"), undefined, gated), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("does not join the stopped run (whose callers get 409) but waits for it to end and syncs the rest", () =>
      Effect.gen(function*() {
        const { prefix } = yield* TestEnvTag
        const gate = yield* Gate
        const sql = yield* SqlClient.SqlClient
        yield* eventually(Effect.map(call("GET", "/api/v1/sync/status"), (r) => r.json), (s) => s.startup_sync_done === true)
        yield* RedisClient.use("SET", async (c) => {
          const p = c.pipeline()
          for (let i = 0; i < SESSIONS; i++) p.set(`${prefix}r-${i}`, JSON.stringify(doc(`r-${i}`)))
          await p.exec()
        })
        const first = yield* Effect.fork(call("POST", "/api/v1/sync/manual"))
        // Its first batches are in flight (held at the gate) when the pause comes; the run is stopped but not over.
        yield* eventually(gate.arrived, (n) => n > 0)
        assert.strictEqual((yield* call("POST", "/api/v1/sync/pause")).status, 200)
        assert.strictEqual((yield* call("POST", "/api/v1/sync/resume")).status, 200)
        const second = yield* Effect.fork(call("POST", "/api/v1/sync/manual"))
        // The second call must not be answered before the stopped run has ended.
        yield* Effect.sleep("300 millis")
        assert.isNull(second.unsafePoll())
        yield* gate.open
        const stopped = yield* Fiber.join(first)
        assert.strictEqual(stopped.status, 409)
        assert.match(stopped.json.message, /^the manual sync was stopped by a pause after/)
        const done = yield* Fiber.join(second)
        assert.strictEqual(done.status, 200, done.text)
        assert.isFalse(done.json.joined)
        const synced = yield* sql<{ n: number }>`
          SELECT count(DISTINCT session_id)::int AS n FROM sync_log WHERE source = 'api' AND session_id LIKE 'r-%'`
        assert.strictEqual(synced[0]!.n, SESSIONS)
        assert.isAbove(done.json.sessions_changed, 0)
        assert.isBelow(done.json.sessions_changed, SESSIONS)
        assert.strictEqual((yield* assertConsistent).messageRows, SESSIONS)
      }))
  })
})
