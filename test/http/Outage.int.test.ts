import { assert, describe, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { messagesOf, put } from "../support/Data.js"
import { makeTestEnv } from "../support/Servers.js"
import * as TcpProxy from "../support/TcpProxy.js"
import { apiLayer, call, eventually, sampleOf } from "./Harness.js"

/** Redis and PostgreSQL reached through proxies the tests can cut. */
class Proxies extends Context.Tag("test/Proxies")<Proxies, { readonly pg: TcpProxy.TcpProxy; readonly redis: TcpProxy.TcpProxy }>() {}

const env = makeTestEnv("http_outage")

const outageLayer = Layer.unwrapScoped(Effect.gen(function*() {
  const pgUrl = new URL(env.databaseUrl)
  const pg = yield* TcpProxy.make(pgUrl.hostname, Number(pgUrl.port))
  pgUrl.port = String(pg.port)
  const redisUrl = new URL(env.redisUrl)
  const redis = yield* TcpProxy.make(redisUrl.hostname, Number(redisUrl.port))
  redisUrl.port = String(redis.port)
  return Layer.merge(
    apiLayer({ ...env, databaseUrl: pgUrl.toString(), redisUrl: redisUrl.toString() }),
    Layer.succeed(Proxies, { pg, redis })
  )
}))

const ready = (expected: number) => eventually(call("GET", "/ready"), (r) => r.status === expected, "15 seconds")

describe("HTTP API while Redis or PostgreSQL is unreachable", () => {
  layer(outageLayer, { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("PostgreSQL down: /ready 503 naming it, status degraded, reads 503, metrics still served; back: ready", () =>
      Effect.gen(function*() {
        const { pg } = yield* Proxies
        yield* ready(200)
        yield* pg.cut
        const notReady = yield* call("GET", "/ready")
        assert.strictEqual(notReady.status, 503)
        assert.strictEqual(notReady.json._tag, "NotReady")
        assert.match(notReady.json.message, /^not ready: PostgreSQL: /)
        assert.strictEqual(notReady.json.checks.redis.ok, true)
        assert.strictEqual(notReady.json.checks.postgresql.ok, false)
        assert.strictEqual(notReady.json.checks.migrations.detail, "not checked: PostgreSQL unreachable")

        const status = yield* call("GET", "/api/v1/sync/status")
        assert.strictEqual(status.status, 200)
        assert.strictEqual(status.json.postgres_connected, false)
        assert.strictEqual(status.json.service_status, "degraded")
        assert.isNull(status.json.ledger_seq)

        const log = yield* call("GET", "/api/v1/sync/log")
        assert.strictEqual(log.status, 503)
        assert.strictEqual(log.json._tag, "ServiceUnavailable")
        assert.strictEqual(log.json.component, "postgresql")
        assert.match(log.json.message, /^PostgreSQL is unreachable \(.*\); check DATABASE_URL and that the server is up$/)
        assert.notInclude(log.text, "    at ")
        const manual = yield* call("POST", "/api/v1/sync/manual")
        assert.strictEqual(manual.status, 503)
        assert.strictEqual(manual.json.component, "postgresql")

        const metrics = yield* call("GET", "/metrics")
        assert.strictEqual(metrics.status, 200)
        assert.strictEqual(sampleOf(metrics.text, "redis_pg_sync_up", { component: "postgresql" }), 0)
        assert.isAbove(sampleOf(metrics.text, "redis_pg_sync_failures_total", { kind: "postgres_connection" }), 0)

        // A change made meanwhile: its batch is in flight, retrying, not pending; it lands once PostgreSQL is back.
        yield* put("during-outage", { topic: "outage", messages: [{ content: "kept", sender_id: 1, timestamp: "2025-06-01T10:00:00Z" }] })
        yield* RedisClient.use("PUBLISH", (c) => c.publish(`${env.prefix}updated:during-outage`, "during-outage"))
        const retrying = yield* eventually(
          Effect.map(call("GET", "/api/v1/sync/status"), (r) => r.json),
          (s) => s.in_flight_sessions === 1
        )
        assert.deepStrictEqual([retrying.pending_keys, retrying.in_flight_batches], [0, 1])

        yield* pg.restore
        yield* ready(200)
        yield* eventually(Effect.map(messagesOf("during-outage"), (rows) => rows.length), (n) => n === 1, "20 seconds")
      }))

    it.effect("Redis down: /ready 503 naming it, session sync and compare 503, status degraded; back: ready", () =>
      Effect.gen(function*() {
        const { redis } = yield* Proxies
        yield* redis.cut
        const notReady = yield* ready(503)
        assert.match(notReady.json.message, /^not ready: Redis: /)
        assert.strictEqual(notReady.json.checks.postgresql.ok, true)
        assert.strictEqual(notReady.json.checks.migrations.ok, true)

        // Each waits for ioredis to give up on the command (two reconnect attempts): run them side by side.
        const [one, compare] = yield* Effect.all([
          call("POST", "/api/v1/sync/session/any"),
          call("GET", "/api/v1/sync/sessions/compare")
        ], { concurrency: 2 })
        assert.strictEqual(one.status, 503)
        assert.strictEqual(one.json.component, "redis")
        assert.match(one.json.message, /^Redis is unreachable/)
        assert.strictEqual(compare.status, 503)
        const status = yield* eventually(call("GET", "/api/v1/sync/status"), (r) => r.json.redis_connected === false)
        assert.strictEqual(status.json.service_status, "degraded")

        yield* redis.restore
        yield* ready(200)
        yield* eventually(call("GET", "/api/v1/sync/status"), (r) => r.json.service_status === "running", "15 seconds")
      }))
  })
})
