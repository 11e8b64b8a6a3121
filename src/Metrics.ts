/**
 * The daemon's metrics (the seed's "metrics to monitor") and their Prometheus exposition.
 *
 * Every metric is an Effect `Metric`. Those the write path produces (ledger events, sessions synced, messages
 * inserted, rejections, failures by kind, batch sizes, commit duration, sync lag) are recorded by `instrument`: a
 * decorator of the `SessionStore` and `SessionSource` services, so every writer — live pipeline, reconcile, full
 * sync, single session — is counted without touching the sync code. Values that live in the daemon's status
 * (events received, pending keys, batches, ledger seq, ...) are copied into metrics when scraped (`recordFigures`).
 *
 * The exposition goes through `@effect/opentelemetry`: its metric producer reads Effect's (process-wide) metric
 * registry into the OpenTelemetry SDK, and the OpenTelemetry `PrometheusExporter` — a pull reader whose own HTTP
 * server is not started — serializes it for `GET /metrics` (`Exporter`). Counters count since the process started.
 */
import { Metrics as OtelMetrics, Resource } from "@effect/opentelemetry"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Context, Effect, Layer, Metric, MetricBoundaries, MetricState, Ref, Stream } from "effect"
import type { CommittedEvent, Source } from "./core/Events.js"
import type { PgError } from "./pg/PgError.js"
import { type BatchResult, SessionStore, type SourceOf } from "./pg/SessionStore.js"
import type { RedisError } from "./redis/RedisError.js"
import { SessionSource } from "./redis/SessionSource.js"
import type { DaemonStatus } from "./sync/Daemon.js"

export const PREFIX = "redis_pg_sync_"

const gauge = (name: string, description: string) => Metric.gauge(name, { description })
/** A monotonic counter (exposed with type counter). */
const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** The counters the status endpoint sums (`totalOf`), by their full names. */
export const NAMES = {
  sessionsSynced: `${PREFIX}sessions_synced_total`,
  messagesInserted: `${PREFIX}messages_inserted_total`,
  rejections: `${PREFIX}rejections_total`,
  failures: `${PREFIX}failures_total`
} as const

export const ledgerEvents = counter(`${PREFIX}ledger_events_total`, "Events appended to sync_log, by event type and source")
export const sessionsSynced = counter(
  NAMES.sessionsSynced,
  "Sessions written to PostgreSQL (at least one event other than a rejection), by source"
)
export const messagesInserted = counter(NAMES.messagesInserted, "Message rows inserted into the projection, by source")
export const rejections = counter(NAMES.rejections, "snapshot_rejected events (values that cannot be a session), by source")
export const failures = counter(
  NAMES.failures,
  "Failed Redis or PostgreSQL operations (each attempt; connection errors are retried), by kind: " +
    "postgres_connection, postgres_data, postgres_other, redis_connection, redis_command"
)
export const batchSessions = Metric.histogram(
  `${PREFIX}batch_sessions`,
  MetricBoundaries.fromIterable([1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]),
  "Sessions per write transaction (every attempt)"
)
export const commitDuration = Metric.histogram(
  `${PREFIX}commit_duration_seconds`,
  MetricBoundaries.fromIterable([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  "Duration of a successful write transaction (lock, decide, append, project, commit)"
)
export const syncLag = Metric.histogram(
  `${PREFIX}sync_lag_seconds`,
  MetricBoundaries.fromIterable([0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]),
  "Live path (keyspace and channel sources): from the newest new message's own timestamp to its commit in " +
    "PostgreSQL (includes clock skew between the application and the daemon)"
)

const SOURCES: ReadonlyArray<Source> = ["keyspace", "channel", "reconcile", "api", "startup"]
const FAILURE_KINDS = ["postgres_connection", "postgres_data", "postgres_other", "redis_connection", "redis_command"]

/**
 * Registers every series that has a fixed label set, at zero, so that a scrape shows them before they first
 * move (a series that appears late breaks `rate()` and alerts on absence).
 */
export const registerSeries: Effect.Effect<void> = Effect.all([
  ...SOURCES.flatMap((source) => [
    Metric.incrementBy(Metric.tagged(sessionsSynced, "source", source), 0),
    Metric.incrementBy(Metric.tagged(messagesInserted, "source", source), 0),
    Metric.incrementBy(Metric.tagged(rejections, "source", source), 0)
  ]),
  ...FAILURE_KINDS.map((kind) => Metric.incrementBy(Metric.tagged(failures, "kind", kind), 0)),
  Metric.value(batchSessions),
  Metric.value(commitDuration),
  Metric.value(syncLag)
], { discard: true })

const LIVE_SOURCES: ReadonlySet<Source> = new Set(["keyspace", "channel"])
/** Lags beyond a day come from timestamps in another time zone or from old data: not a lag. */
const MAX_LAG_SECONDS = 86_400

const sourceOf = (source: SourceOf) => (typeof source === "function" ? source : () => source)

/** Records what one committed batch did. */
const recordBatch = (result: BatchResult, source: SourceOf, now: number) =>
  Effect.suspend(() => {
    const of = sourceOf(source)
    const events = new Map<string, { type: string; source: Source; n: number }>()
    const synced = new Map<Source, Set<string>>()
    const rejected = new Map<Source, number>()
    const appended = new Map<Source, number>()
    const lags: Array<number> = []
    for (const e of result.committed) {
      const src = of(e.sessionId)
      const key = `${e.type}\u0000${src}`
      const entry = events.get(key)
      if (entry === undefined) events.set(key, { type: e.type, source: src, n: 1 })
      else entry.n++
      if (e.type === "snapshot_rejected") {
        rejected.set(src, (rejected.get(src) ?? 0) + 1)
        continue
      }
      let ids = synced.get(src)
      if (ids === undefined) synced.set(src, ids = new Set())
      ids.add(e.sessionId)
      if (e.type === "messages_appended") appended.set(src, (appended.get(src) ?? 0) + e.payload.messages.length)
      if (e.type === "messages_appended" && LIVE_SOURCES.has(src)) {
        const lag = lagOf(e, now)
        if (lag !== undefined) lags.push(lag)
      }
    }
    const updates: Array<Effect.Effect<void>> = []
    for (const { type, source: src, n } of events.values()) {
      updates.push(Metric.incrementBy(ledgerEvents.pipe(Metric.tagged("type", type), Metric.tagged("source", src)), n))
    }
    for (const [src, ids] of synced) {
      updates.push(Metric.incrementBy(Metric.tagged(sessionsSynced, "source", src), ids.size))
    }
    for (const [src, n] of rejected) updates.push(Metric.incrementBy(Metric.tagged(rejections, "source", src), n))
    // Per source from the ledger payloads; the batch's own count is the truth for the total (they agree unless
    // a message was already held, which `decide` under the session lock rules out).
    let appendedTotal = 0
    for (const n of appended.values()) appendedTotal += n
    const firstSource = appended.keys().next()
    if (!firstSource.done) appended.set(firstSource.value, Math.max(0, appended.get(firstSource.value)! + result.messagesInserted - appendedTotal))
    for (const [src, n] of appended) {
      if (n > 0) updates.push(Metric.incrementBy(Metric.tagged(messagesInserted, "source", src), n))
    }
    // One observation per message event, hundreds per live batch: recorded in one step rather than as an effect
    // each (no metric labels are set on fibers here, so the effect's labels would be none too).
    if (lags.length > 0) updates.push(Effect.sync(() => {
      for (const lag of lags) syncLag.unsafeUpdate(lag, [])
    }))
    return Effect.all(updates, { discard: true })
  })

/** Seconds from the newest message's own timestamp to `now`; undefined without a usable timestamp. */
const lagOf = (e: CommittedEvent & { readonly type: "messages_appended" }, now: number): number | undefined => {
  let newest: string | null = null
  for (const m of e.payload.messages) {
    if (m.sent_at !== null && (newest === null || m.sent_at > newest)) newest = m.sent_at
  }
  if (newest === null) return undefined
  const lag = (now - Date.parse(newest)) / 1000
  return Number.isFinite(lag) && lag <= MAX_LAG_SECONDS ? Math.max(lag, 0) : undefined
}

const countFailure = (kind: string) => Metric.increment(Metric.tagged(failures, "kind", kind))
const pgFailure = (e: PgError) => countFailure(`postgres_${e.reason}`)
const redisFailure = (e: RedisError) => countFailure(`redis_${e.reason}`)

/** The `SessionStore` with every call measured. */
export const instrumentStore = Layer.effect(
  SessionStore,
  Effect.map(SessionStore, (store) =>
    SessionStore.of({
      isEmpty: Effect.tapError(store.isEmpty, pgFailure),
      standingHashes: (ids) => Effect.tapError(store.standingHashes(ids), pgFailure),
      present: (after, limit) => Effect.tapError(store.present(after, limit), pgFailure),
      refreshStatistics: Effect.tapError(store.refreshStatistics, pgFailure),
      apply: (observations, source) =>
        Effect.gen(function*() {
          yield* Metric.update(batchSessions, observations.length)
          const started = performance.now()
          const result = yield* Effect.tapError(store.apply(observations, source), pgFailure)
          yield* Metric.update(commitDuration, (performance.now() - started) / 1000)
          yield* recordBatch(result, source, Date.now())
          return result
        })
    }))
)

/** The `SessionSource` with its failures counted. */
export const instrumentSource = Layer.effect(
  SessionSource,
  Effect.map(SessionSource, (source) =>
    SessionSource.of({
      scan: (count) => Stream.tapError(source.scan(count), redisFailure),
      read: (ids) => Effect.tapError(source.read(ids), redisFailure),
      exists: (ids) => Effect.tapError(source.exists(ids), redisFailure)
    }))
)

/**
 * Decorates the `SessionStore` and `SessionSource` it is provided with, so that everything built on top of it
 * is measured: `myLayer.pipe(Layer.provide(Metrics.instrument), Layer.provide(SyncLive))`.
 */
export const instrument = Layer.merge(instrumentStore, instrumentSource)

// ---------------------------------------------------------------------------------------------------------------
// Figures known only to the daemon, copied into metrics at scrape time

export const eventsReceived = counter(`${PREFIX}events_received_total`, "Change signals received by the daemon, by source")
export const batchesFlushed = counter(`${PREFIX}batches_flushed_total`, "Live batches written")
export const batchesDropped = counter(`${PREFIX}batches_dropped_total`, "Live batches given up on a non-connection error")
export const overflows = counter(`${PREFIX}overflows_total`, "Times the dirty-key set overflowed (a reconcile scan follows)")
export const reconciles = counter(`${PREFIX}reconciles_total`, "Reconcile scans completed")
export const pendingKeys = gauge(`${PREFIX}pending_keys`, "Sessions marked dirty, not yet written")
export const inFlightBatches = gauge(`${PREFIX}in_flight_batches`, "Live batches being written")
export const currentLag = gauge(`${PREFIX}current_lag_seconds`, "How long the oldest change not written yet has waited (dirty or in flight); 0 when every change is written")
export const paused = gauge(`${PREFIX}paused`, "1 while sync is paused")
export const up = gauge(`${PREFIX}up`, "1 when the component is reachable, by component")
export const ledgerSeq = gauge(`${PREFIX}ledger_seq`, "Last seq in sync_log (the last value read while PostgreSQL is unreachable)")
export const residentMemory = gauge(`${PREFIX}process_resident_memory_bytes`, "Resident set size of the daemon's process")
export const heapUsed = gauge(
  `${PREFIX}process_heap_used_bytes`,
  "V8 heap in use (live objects and garbage not yet collected); the rest of the resident memory is V8's reserve, " +
    "buffers and code"
)

/** What the daemon knows at scrape time. */
export interface DaemonFigures {
  readonly status: DaemonStatus
  readonly lagSeconds: number
  readonly paused: boolean
  readonly postgresUp: boolean
  /** Last seq in sync_log; undefined when PostgreSQL could not be asked. */
  readonly ledgerSeq: number | undefined
}

/**
 * Makes the recorder of one daemon's figures. The daemon's counts are its own since it started; the counters add
 * what each count grew by since the previous scrape, so they stay monotonic across daemons in one process.
 */
export const makeFigureRecorder: Effect.Effect<(f: DaemonFigures) => Effect.Effect<void>> = Effect.gen(function*() {
  // Keyed by name: `Metric.tagged` makes a new metric object on every call.
  const last = yield* Ref.make(new Map<string, number>())
  const lock = yield* Effect.makeSemaphore(1)
  const grow = (seen: Map<string, number>, name: string, metric: Metric.Metric.Counter<number>, count: number) => {
    const delta = count - (seen.get(name) ?? 0)
    seen.set(name, count)
    // Incremented even by 0, so that the series is there from the first scrape on.
    return Metric.incrementBy(metric, Math.max(delta, 0))
  }
  return (f) =>
    lock.withPermits(1)(Effect.flatMap(Ref.get(last), (seen) => {
      const p = f.status.pipeline
      return Effect.all([
        grow(seen, "keyspace", Metric.tagged(eventsReceived, "source", "keyspace"), f.status.eventsReceived.keyspace),
        grow(seen, "channel", Metric.tagged(eventsReceived, "source", "channel"), f.status.eventsReceived.channel),
        grow(seen, "flushed", batchesFlushed, p.batchesFlushed),
        grow(seen, "dropped", batchesDropped, p.batchesDropped),
        grow(seen, "overflows", overflows, p.overflows),
        grow(seen, "reconciles", reconciles, p.reconciles),
        Metric.set(pendingKeys, p.pending),
        Metric.set(inFlightBatches, p.inFlightBatches),
        Metric.set(currentLag, f.lagSeconds),
        Metric.set(paused, f.paused ? 1 : 0),
        Metric.set(Metric.tagged(up, "component", "redis"), f.status.redisConnected ? 1 : 0),
        Metric.set(Metric.tagged(up, "component", "postgresql"), f.postgresUp ? 1 : 0),
        f.ledgerSeq === undefined ? Effect.void : Metric.set(ledgerSeq, f.ledgerSeq),
        Effect.suspend(() => {
          const memory = process.memoryUsage()
          return Effect.zip(Metric.set(residentMemory, memory.rss), Metric.set(heapUsed, memory.heapUsed))
        })
      ], { discard: true })
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// Exposition

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/** Serializes the process's metrics in Prometheus text format. */
export class Exporter extends Context.Tag("redis-pg-sync/Metrics/Exporter")<Exporter, {
  readonly scrape: Effect.Effect<string>
}>() {}

/**
 * The OpenTelemetry Prometheus exporter as a pull reader of Effect's metrics. `target_info` carries the service
 * name and version; samples carry no OpenTelemetry scope label, so the names and labels are exactly the ones
 * defined here.
 */
export const layerExporter = (serviceVersion: string): Layer.Layer<Exporter> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const reader = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
    const scrape = Effect.promise(() => reader.collect()).pipe(
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )
    return Layer.merge(Layer.succeed(Exporter, { scrape }), OtelMetrics.layer(() => reader)).pipe(
      Layer.provide(Resource.layer({ serviceName: "redis-pg-sync", serviceVersion }))
    )
  }))

/** Sum of a counter over all its label sets (for the status endpoint). */
export const totalOf = (name: string): Effect.Effect<number> =>
  Effect.map(Metric.snapshot, (pairs) => {
    let total = 0
    for (const { metricKey, metricState } of pairs) {
      if (metricKey.name === name && MetricState.isCounterState(metricState)) total += Number(metricState.count)
    }
    return total
  })
