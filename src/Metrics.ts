/**
 * The daemon's metrics (the seed's "metrics to monitor") and their Prometheus text exposition.
 *
 * Metrics that the write path produces (ledger events, sessions synced, messages inserted, rejections, failures
 * by kind, batch sizes, commit duration, sync lag) are Effect `Metric`s, recorded by `instrument`: a decorator of
 * the `SessionStore` and `SessionSource` services, so every writer — live pipeline, reconcile, full sync, single
 * session — is counted without touching the sync code. Values that already live elsewhere (events received by
 * the daemon, pending keys, ledger seq) are passed to `render` as scrape-time samples.
 *
 * `render` formats `Metric.snapshot` itself (text format 0.0.4): no OpenTelemetry SDK, exact metric names, and
 * scrape-time counters keep their `counter` type. Only metrics named `redis_pg_sync_*` are exposed. The Effect
 * metric registry is process-wide: counters count since the process started.
 */
import { Effect, Layer, Metric, MetricBoundaries, MetricState, Option, Stream } from "effect"
import type { MetricPair } from "effect"
import type { CommittedEvent, Source } from "./core/Events.js"
import type { PgError } from "./pg/PgError.js"
import { type BatchResult, SessionStore, type SourceOf } from "./pg/SessionStore.js"
import type { RedisError } from "./redis/RedisError.js"
import { SessionSource } from "./redis/SessionSource.js"
import type { DaemonStatus } from "./sync/Daemon.js"

export const PREFIX = "redis_pg_sync_"

export const NAMES = {
  ledgerEvents: `${PREFIX}ledger_events_total`,
  sessionsSynced: `${PREFIX}sessions_synced_total`,
  messagesInserted: `${PREFIX}messages_inserted_total`,
  rejections: `${PREFIX}rejections_total`,
  failures: `${PREFIX}failures_total`
} as const

export const ledgerEvents = Metric.counter(NAMES.ledgerEvents, {
  description: "Events appended to sync_log, by event type and source",
  incremental: true
})
export const sessionsSynced = Metric.counter(NAMES.sessionsSynced, {
  description: "Sessions written to PostgreSQL (at least one event other than a rejection), by source",
  incremental: true
})
export const messagesInserted = Metric.counter(NAMES.messagesInserted, {
  description: "Message rows inserted into the projection, by source",
  incremental: true
})
export const rejections = Metric.counter(NAMES.rejections, {
  description: "snapshot_rejected events (values that cannot be a session), by source",
  incremental: true
})
export const failures = Metric.counter(NAMES.failures, {
  description: "Failed Redis or PostgreSQL operations (each attempt; connection errors are retried), by kind: " +
    "postgres_connection, postgres_data, postgres_other, redis_connection, redis_command",
  incremental: true
})
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

/** A value known only at scrape time (from the daemon's status or PostgreSQL). */
export interface Sample {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge"
  readonly labels?: Readonly<Record<string, string>>
  readonly value: number
}

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
    for (const lag of lags) updates.push(Metric.update(syncLag, lag))
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
      standingHashes: (ids) => Effect.tapError(store.standingHashes(ids), pgFailure),
      present: (after, limit) => Effect.tapError(store.present(after, limit), pgFailure),
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

/** What the daemon knows at scrape time, as samples. */
export interface DaemonFigures {
  readonly status: DaemonStatus
  readonly lagSeconds: number
  readonly paused: boolean
  readonly postgresUp: boolean
  /** Last seq in sync_log; undefined when PostgreSQL could not be asked. */
  readonly ledgerSeq: number | undefined
}

export const daemonSamples = (f: DaemonFigures): ReadonlyArray<Sample> => {
  const p = f.status.pipeline
  const sample = (type: Sample["type"], name: string, help: string, value: number, labels?: Record<string, string>): Sample =>
    labels === undefined ? { name: PREFIX + name, help, type, value } : { name: PREFIX + name, help, type, value, labels }
  const up = "1 when the component is reachable"
  const received = "Change signals received by the daemon, by source"
  return [
    sample("counter", "events_received_total", received, f.status.eventsReceived.keyspace, { source: "keyspace" }),
    sample("counter", "events_received_total", received, f.status.eventsReceived.channel, { source: "channel" }),
    sample("gauge", "pending_keys", "Sessions marked dirty, not yet written", p.pending),
    sample("gauge", "in_flight_batches", "Live batches being written", p.inFlightBatches),
    sample("counter", "batches_flushed_total", "Live batches written", p.batchesFlushed),
    sample("counter", "batches_dropped_total", "Live batches given up on a non-connection error", p.batchesDropped),
    sample("counter", "overflows_total", "Times the dirty-key set overflowed (a reconcile scan follows)", p.overflows),
    sample("counter", "reconciles_total", "Reconcile scans completed", p.reconciles),
    sample("gauge", "current_lag_seconds", "0 when nothing is pending; else time since the pipeline was last caught up", f.lagSeconds),
    sample("gauge", "paused", "1 while sync is paused", f.paused ? 1 : 0),
    sample("gauge", "up", up, f.status.redisConnected ? 1 : 0, { component: "redis" }),
    sample("gauge", "up", up, f.postgresUp ? 1 : 0, { component: "postgresql" }),
    ...(f.ledgerSeq === undefined ? [] : [sample("gauge", "ledger_seq", "Last seq in sync_log", f.ledgerSeq)])
  ]
}

// ---------------------------------------------------------------------------------------------------------------
// Prometheus text format 0.0.4

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")

const formatValue = (n: number | bigint): string => {
  if (typeof n === "bigint") return n.toString()
  if (Number.isNaN(n)) return "NaN"
  if (n === Number.POSITIVE_INFINITY) return "+Inf"
  if (n === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(n)
}

const formatLabels = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`

interface Family {
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram"
  readonly lines: Array<string>
}

const familyOf = (families: Map<string, Family>, name: string, help: string, type: Family["type"]): Family => {
  let family = families.get(name)
  if (family === undefined) families.set(name, family = { help, type, lines: [] })
  return family
}

const addPair = (families: Map<string, Family>, pair: MetricPair.MetricPair.Untyped) => {
  const { metricKey: key, metricState: state } = pair
  if (!key.name.startsWith(PREFIX)) return
  const help = Option.getOrElse(key.description, () => key.name)
  const labels = key.tags.map((t) => [t.key, t.value] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  if (MetricState.isCounterState(state)) {
    familyOf(families, key.name, help, "counter").lines.push(`${key.name}${formatLabels(labels)} ${formatValue(state.count)}`)
  } else if (MetricState.isGaugeState(state)) {
    familyOf(families, key.name, help, "gauge").lines.push(`${key.name}${formatLabels(labels)} ${formatValue(state.value)}`)
  } else if (MetricState.isHistogramState(state)) {
    const family = familyOf(families, key.name, help, "histogram")
    let last = 0
    for (const [bound, cumulative] of state.buckets) {
      if (!Number.isFinite(bound)) continue
      family.lines.push(`${key.name}_bucket${formatLabels([...labels, ["le", formatValue(bound)]])} ${cumulative}`)
      last = cumulative
    }
    family.lines.push(`${key.name}_bucket${formatLabels([...labels, ["le", "+Inf"]])} ${Math.max(state.count, last)}`)
    family.lines.push(`${key.name}_sum${formatLabels(labels)} ${formatValue(state.sum)}`)
    family.lines.push(`${key.name}_count${formatLabels(labels)} ${state.count}`)
  }
}

/** Formats `pairs` (typically `Metric.snapshot`) and `samples` as one Prometheus exposition, families sorted by name. */
export const format = (pairs: Iterable<MetricPair.MetricPair.Untyped>, samples: ReadonlyArray<Sample>): string => {
  const families = new Map<string, Family>()
  for (const pair of pairs) addPair(families, pair)
  for (const s of samples) {
    const labels = Object.entries(s.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    familyOf(families, s.name, s.help, s.type).lines.push(`${s.name}${formatLabels(labels)} ${formatValue(s.value)}`)
  }
  const out: Array<string> = []
  for (const name of Array.from(families.keys()).sort()) {
    const family = families.get(name)!
    out.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`, ...family.lines)
  }
  return out.join("\n") + "\n"
}

/** The current exposition: every `redis_pg_sync_*` metric of this process, plus `samples`. */
export const render = (samples: ReadonlyArray<Sample>): Effect.Effect<string> =>
  Effect.map(Metric.snapshot, (pairs) => format(pairs, samples))

/** Sum of a counter over all its label sets, as `render` would show it (for the status endpoint). */
export const totalOf = (name: string): Effect.Effect<number> =>
  Effect.map(Metric.snapshot, (pairs) => {
    let total = 0
    for (const { metricKey, metricState } of pairs) {
      if (metricKey.name === name && MetricState.isCounterState(metricState)) total += Number(metricState.count)
    }
    return total
  })
