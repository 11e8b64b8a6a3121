import { HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, Metric, MetricBoundaries } from "effect"
import { jsonErrors } from "../../src/http/Server.js"
import * as Metrics from "../../src/Metrics.js"

const request = HttpServerRequest.fromWeb(new Request("http://localhost/api/v1/x?y=1", { method: "POST" }))

const respond = (app: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, HttpServerRequest.HttpServerRequest>) =>
  jsonErrors(app as any).pipe(
    Effect.provideService(HttpServerRequest.HttpServerRequest, request),
    Effect.map((response) => {
      const body = response.body
      return { status: response.status, json: body._tag === "Uint8Array" ? JSON.parse(new TextDecoder().decode(body.body)) : undefined }
    }),
    Effect.provide(Logger.remove(Logger.defaultLogger))
  )

describe("jsonErrors", () => {
  it.effect("a defect becomes a JSON 500 with its message and no stack trace", () =>
    Effect.gen(function*() {
      const r = yield* respond(Effect.die(new Error("kaboom\n    at somewhere (file.ts:1:1)")))
      assert.deepStrictEqual(r, {
        status: 500,
        json: { _tag: "InternalError", message: "unexpected error: kaboom (details in the daemon's log)" }
      })
    }))

  it.effect("no route becomes a JSON 404 naming the method and path", () =>
    Effect.gen(function*() {
      const r = yield* respond(Effect.fail(new HttpServerError.RouteNotFound({ request })))
      assert.deepStrictEqual(r, {
        status: 404,
        json: {
          _tag: "NotFound",
          message: "no endpoint POST /api/v1/x?y=1; the endpoints are listed at /docs and /openapi.json"
        }
      })
    }))

  it.effect("the API's own errors pass through untouched", () =>
    Effect.gen(function*() {
      const error = { _tag: "Conflict", message: "paused" }
      const exit = yield* Effect.exit(respond(Effect.fail(error)))
      assert.isTrue(exit._tag === "Failure")
    }))
})

describe("Metrics.format", () => {
  it.effect("counters, gauges and histograms in Prometheus text, labels escaped, sorted by family", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("redis_pg_sync_test_total", { description: "a test\ncounter", incremental: true })
      const histogram = Metric.histogram("redis_pg_sync_test_seconds", MetricBoundaries.fromIterable([0.1, 1]), "a histogram")
      yield* Metric.incrementBy(Metric.tagged(counter, "source", "a\"b"), 3)
      yield* Metric.update(histogram, 0.05)
      yield* Metric.update(histogram, 0.5)
      yield* Metric.update(histogram, 5)
      yield* Metric.increment(Metric.counter("other_total"))
      const pairs = (yield* Metric.snapshot).filter((p) => p.metricKey.name.startsWith("redis_pg_sync_test") || p.metricKey.name === "other_total")
      const text = Metrics.format(pairs, [
        { name: "redis_pg_sync_test_pending", help: "pending", type: "gauge", value: 7 },
        { name: "redis_pg_sync_test_up", help: "up", type: "gauge", labels: { component: "redis" }, value: 1 }
      ])
      assert.strictEqual(
        text,
        [
          "# HELP redis_pg_sync_test_pending pending",
          "# TYPE redis_pg_sync_test_pending gauge",
          "redis_pg_sync_test_pending 7",
          "# HELP redis_pg_sync_test_seconds a histogram",
          "# TYPE redis_pg_sync_test_seconds histogram",
          "redis_pg_sync_test_seconds_bucket{le=\"0.1\"} 1",
          "redis_pg_sync_test_seconds_bucket{le=\"1\"} 2",
          "redis_pg_sync_test_seconds_bucket{le=\"+Inf\"} 3",
          "redis_pg_sync_test_seconds_sum 5.55",
          "redis_pg_sync_test_seconds_count 3",
          "# HELP redis_pg_sync_test_total a test\\ncounter",
          "# TYPE redis_pg_sync_test_total counter",
          "redis_pg_sync_test_total{source=\"a\\\"b\"} 3",
          "# HELP redis_pg_sync_test_up up",
          "# TYPE redis_pg_sync_test_up gauge",
          "redis_pg_sync_test_up{component=\"redis\"} 1",
          ""
        ].join("\n")
      )
    }))

  it.effect("registerSeries shows the fixed series at zero before anything happened", () =>
    Effect.gen(function*() {
      yield* Metrics.registerSeries
      const text = yield* Metrics.render([])
      assert.include(text, "redis_pg_sync_failures_total{kind=\"redis_connection\"} 0\n")
      assert.include(text, "redis_pg_sync_messages_inserted_total{source=\"keyspace\"} 0\n")
      assert.include(text, "redis_pg_sync_sync_lag_seconds_bucket{le=\"+Inf\"} 0\n")
      assert.include(text, "redis_pg_sync_sync_lag_seconds_count 0\n")
    }))
})
