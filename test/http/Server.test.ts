import { HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, Metric, MetricBoundaries } from "effect"
import { jsonErrors } from "../../src/http/Server.js"
import * as Metrics from "../../src/Metrics.js"
import { readFileSync } from "node:fs"

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

/** One scrape through a fresh exporter (the OpenTelemetry Prometheus exporter over Effect's metric registry). */
const scrape = Effect.flatMap(Metrics.Exporter, (e) => e.scrape).pipe(Effect.provide(Metrics.layerExporter("9.9.9")))

describe("Metrics.Exporter", () => {
  it.effect("counters, gauges and histograms in Prometheus text, labels escaped, with the service's target_info", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("redis_pg_sync_test_total", { description: "a test counter", incremental: true })
      const histogram = Metric.histogram("redis_pg_sync_test_seconds", MetricBoundaries.fromIterable([0.1, 1]), "a histogram")
      const gauge = Metric.gauge("redis_pg_sync_test_up", { description: "up" })
      yield* Metric.incrementBy(Metric.tagged(counter, "source", "a\"b"), 3)
      yield* Metric.update(histogram, 0.05)
      yield* Metric.update(histogram, 0.5)
      yield* Metric.update(histogram, 5)
      yield* Metric.set(Metric.tagged(gauge, "component", "redis"), 1)
      const text = yield* scrape
      const family = (name: string) =>
        text.split("\n").filter((line) => line.startsWith(name) || line.startsWith(`# HELP ${name} `) || line.startsWith(`# TYPE ${name} `))
      assert.deepStrictEqual(family("redis_pg_sync_test_total"), [
        "# HELP redis_pg_sync_test_total a test counter",
        "# TYPE redis_pg_sync_test_total counter",
        "redis_pg_sync_test_total{source=\"a\\\"b\"} 3"
      ])
      assert.deepStrictEqual(family("redis_pg_sync_test_seconds"), [
        "# HELP redis_pg_sync_test_seconds a histogram",
        "# TYPE redis_pg_sync_test_seconds histogram",
        "redis_pg_sync_test_seconds_count 3",
        "redis_pg_sync_test_seconds_sum 5.55",
        "redis_pg_sync_test_seconds_bucket{le=\"0.1\"} 1",
        "redis_pg_sync_test_seconds_bucket{le=\"1\"} 2",
        "redis_pg_sync_test_seconds_bucket{le=\"+Inf\"} 3"
      ])
      assert.deepStrictEqual(family("redis_pg_sync_test_up"), [
        "# HELP redis_pg_sync_test_up up",
        "# TYPE redis_pg_sync_test_up gauge",
        "redis_pg_sync_test_up{component=\"redis\"} 1"
      ])
      assert.match(text, /^target_info\{service_name="redis-pg-sync",.*service_version="9\.9\.9"\} 1$/m)
      assert.notInclude(text, "otel_scope_name")
    }))

  it.effect("registerSeries shows the fixed series at zero before anything happened", () =>
    Effect.gen(function*() {
      yield* Metrics.registerSeries
      const text = yield* scrape
      assert.include(text, "redis_pg_sync_failures_total{kind=\"redis_connection\"} 0\n")
      assert.include(text, "redis_pg_sync_messages_inserted_total{source=\"keyspace\"} 0\n")
      assert.include(text, "redis_pg_sync_sync_lag_seconds_bucket{le=\"+Inf\"} 0\n")
      assert.include(text, "redis_pg_sync_sync_lag_seconds_count 0\n")
    }))

  it.effect("the daemon's own counts become monotonic counters, and its gauges are set, at each scrape", () =>
    Effect.gen(function*() {
      const figures = (received: number, pending: number) => ({
        status: {
          eventsReceived: { keyspace: received, channel: 0 },
          redisConnected: true,
          pipeline: { pending, inFlightBatches: 0, batchesFlushed: received, batchesDropped: 0, overflows: 0, reconciles: 1 }
        } as any,
        lagSeconds: 0,
        paused: false,
        postgresUp: true,
        ledgerSeq: 42
      })
      const value = (text: string, line: string) => Number(text.split("\n").find((l) => l.startsWith(line + " "))?.slice(line.length + 1))
      const received = "redis_pg_sync_events_received_total{source=\"keyspace\"}"
      const first = yield* Metrics.makeFigureRecorder
      yield* first(figures(5, 3))
      const a = yield* scrape
      yield* first(figures(7, 0))
      const b = yield* scrape
      // A second daemon in the same process counts from zero again: the counter keeps growing.
      const second = yield* Metrics.makeFigureRecorder
      yield* second(figures(2, 1))
      const c = yield* scrape
      assert.deepStrictEqual(
        [a, b, c].map((t) => [value(t, received) - value(a, received), value(t, "redis_pg_sync_pending_keys")]),
        [[0, 3], [2, 0], [4, 1]]
      )
      assert.strictEqual(value(c, "redis_pg_sync_ledger_seq"), 42)
      assert.strictEqual(value(c, "redis_pg_sync_up{component=\"redis\"}"), 1)
      // The process's memory, as read at the scrape, against the kernel's own account of it (VmRSS, in kB).
      const rss = value(c, "redis_pg_sync_process_resident_memory_bytes")
      const vmRss = 1024 * Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1])
      assert.isAbove(rss, vmRss * 0.8)
      assert.isBelow(rss, vmRss * 1.25)
      const heap = value(c, "redis_pg_sync_process_heap_used_bytes")
      assert.isAbove(heap, 1_000_000)
      assert.isBelow(heap, rss)
    }))
})
