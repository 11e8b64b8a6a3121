/**
 * The live daemon (DESIGN §4): change signals from Redis (keyspace notifications, the application's
 * `session_updated:*` channel) mark sessions dirty; the live pipeline batches, throttles and writes them;
 * reconcile scans (at start, after every resubscription, every interval, on overflow) repair whatever pub/sub
 * lost; a pre-expiry sweep writes sessions whose TTL is nearly out before Redis forgets them.
 */
import { type Chunk, Context, Deferred, Duration, Effect, Layer, Ref, Schedule, Stream } from "effect"
import type { GoneKind, Source } from "../core/Events.js"
import type { Observation } from "../core/Decide.js"
import { SessionStore } from "../pg/SessionStore.js"
import * as ChangeFeed from "../redis/ChangeFeed.js"
import { SessionSource } from "../redis/SessionSource.js"
import { batcher, describeProgress, type FullSyncOptions, fullSync, zeroProgress } from "./FullSync.js"
import * as LivePipeline from "./LivePipeline.js"
import { observe } from "./Observe.js"
import { writeBatch } from "./Writer.js"

/** Sessions read by one MGET of a live batch, and how many such reads are under way at once (see `flush`). */
const READ_SLICE = 100
const READ_AHEAD = 3

export interface DaemonOptions {
  readonly keyPrefix: string
  readonly channelPrefix: string
  readonly keyspaceNotifications: boolean
  readonly fullSync: FullSyncOptions
  readonly pipeline: LivePipeline.LivePipelineOptions
  readonly expirySweepWindow: Duration.DurationInput
  /** CLIENT SETNAME of the subscriber connection (default `redis-pg-sync:changes`). */
  readonly connectionName?: string
}

export interface DaemonStatus {
  readonly captureMode: ChangeFeed.CaptureMode
  readonly notifications: string
  readonly redisConnected: boolean
  readonly pipeline: LivePipeline.PipelineStatus
  /** Clock millis of the last change signal received, or null. */
  readonly lastEventAt: number | null
  readonly eventsReceived: Readonly<Record<"keyspace" | "channel", number>>
  /** Whether the start-up full sync has completed. */
  readonly startupSyncDone: boolean
  /** Whether a start-up full sync is under way (a paused one: until its batches in flight are written). */
  readonly startupSyncRunning: boolean
}

export class Daemon extends Context.Tag("redis-pg-sync/sync/Daemon")<Daemon, {
  readonly status: Effect.Effect<DaemonStatus>
  readonly pipeline: LivePipeline.Pipeline
}>() {}

/** A key found missing with no event saying how it left: sessions leave Redis by their TTL. */
const DEFAULT_GONE: GoneKind = "expired"

export const make = (options: DaemonOptions) =>
  Effect.gen(function*() {
    const redis = yield* SessionSource
    const store = yield* SessionStore
    const feed = yield* ChangeFeed.make({
      keyPrefix: options.keyPrefix,
      channelPrefix: options.channelPrefix,
      notifications: options.keyspaceNotifications,
      connectionName: options.connectionName
    })
    yield* Effect.logInfo(`Redis connection successful; keyspace notifications: ${feed.notifications.detail}`)
    yield* Effect.logInfo(`Capture mode: ${feed.mode}`)

    // Where each dirty session was last heard of, for the ledger's `source`; bounded like the dirty set.
    const heardFrom = new Map<string, Source>()
    let lastEventAt: number | null = null
    const received = { keyspace: 0, channel: 0 }
    const startupSyncDone = yield* Ref.make(false)
    const startupSyncRunning = yield* Ref.make(false)

    const write = (observations: ReadonlyArray<Observation>, sources: ReadonlyMap<string, Source>) =>
      Effect.gen(function*() {
        const result = yield* writeBatch(observations, (id) => sources.get(id) ?? "reconcile", { retry: Schedule.stop })
        if (result.events > 0) {
          const changed = Array.from(new Set(result.committed.map((e) => e.sessionId)))
          yield* Effect.logInfo(
            `Successfully synced session ${changed.slice(0, 5).join(", ")}` +
              (changed.length > 5 ? ` and ${changed.length - 5} more` : "") +
              ` (${result.events} events, ${result.messagesInserted} messages, ledger seq ${result.lastSeq})`
          )
        }
      })

    // A live batch is read in slices and written every SYNC_BATCH_BYTES of values, as a full sync is: however
    // large its sessions, the values of about that many bytes (and the slices read ahead) are in memory at once
    // (a failed write makes the pipeline retry the whole batch; what was written already is then found unchanged).
    // Slices are read READ_AHEAD at a time: one after another, their round trips were a fifth of a live batch's time.
    const flush = (batch: ReadonlyArray<LivePipeline.DirtyEntry>) => {
      // Taken once, when the batch is handed over: the pipeline retries the effect below after a connection
      // error, and taken inside it the retry found them gone and recorded every event as `reconcile`.
      const sources = new Map(batch.map((e) => [e.sessionId, heardFrom.get(e.sessionId) ?? "reconcile"] as const))
      for (const e of batch) heardFrom.delete(e.sessionId)
      const slices: Array<ReadonlyArray<LivePipeline.DirtyEntry>> = []
      for (let i = 0; i < batch.length; i += READ_SLICE) slices.push(batch.slice(i, i + READ_SLICE))
      return Effect.gen(function*() {
        const batches = batcher<Observation>(Infinity, options.fullSync.batchBytes)
        yield* Stream.fromIterable(slices).pipe(
          Stream.mapEffect(
            (slice) => Effect.map(redis.read(slice.map((e) => e.sessionId)), (raws) => ({ slice, raws })),
            { concurrency: READ_AHEAD }
          ),
          Stream.runForEach(({ raws, slice }) =>
            Effect.suspend(() => {
              const full: Array<Array<Observation>> = []
              raws.forEach((raw, j) => {
                const hint = slice[j]!.hint
                const o = observe(raw) ?? { _tag: "Gone", sessionId: raw.sessionId, kind: hint === "changed" ? DEFAULT_GONE : hint }
                const closed = batches.add(o, raw.value?.length ?? 0)
                if (closed !== undefined) full.push(closed)
              })
              return Effect.forEach(full, (observations) => write(observations, sources), { discard: true })
            })
          )
        )
        const rest = batches.rest()
        if (rest !== undefined) yield* write(rest, sources)
      }).pipe(Effect.provideService(SessionStore, store))
    }

    const reconcile = Effect.gen(function*() {
      const progress = yield* Ref.make(zeroProgress(Date.now()))
      const result = yield* fullSync("reconcile", options.fullSync, progress)
      yield* Effect.logInfo(`Reconcile scan completed: ${describeProgress(result, Date.now())}`)
    }).pipe(Effect.provideService(SessionSource, redis), Effect.provideService(SessionStore, store))

    const pipeline = yield* LivePipeline.make(options.pipeline, { flush, reconcile })

    // Signals come in chunks; each chunk is handled in one synchronous step (an Effect per signal cost a fifth
    // of the daemon's CPU at 3,000 updates/s, three signals each).
    const onSignals = (signals: Chunk.Chunk<ChangeFeed.ChangeSignal>) =>
      Effect.suspend(() => {
        let resubscribed = false
        for (const signal of signals) {
          if (signal._tag === "Resubscribed") {
            resubscribed = true
            continue
          }
          received[signal.source]++
          if (heardFrom.size > options.pipeline.maxPending) heardFrom.clear()
          heardFrom.set(signal.sessionId, signal.source)
          pipeline.mark(signal.sessionId, signal._tag === "Gone" ? signal.kind : "changed")
        }
        lastEventAt = Date.now()
        // A short pause lets signals pile up into the next chunk: under load one wake-up per 2 ms instead of one
        // per signal (each wake of this fiber costs more than handling a signal). Marks are at most 2 ms late.
        return resubscribed
          ? Effect.logWarning("Redis subscriber reconnected: events may have been lost meanwhile, reconciling").pipe(
            Effect.zipRight(pipeline.requestReconcile)
          )
          : Effect.sleep("2 millis")
      })
    yield* Effect.forkScoped(Stream.runForEachChunk(feed.signals, onSignals))
    // The seed's operator message, kept; it says which sources the listener has.
    yield* Effect.logInfo(
      feed.mode === "notifications+channel+reconcile"
        ? "Started Redis keyspace notification listener"
        : `Started Redis change listener without keyspace notifications (capture mode ${feed.mode})`
    )

    // Pre-expiry sweep: a session whose TTL is nearly out is written now, before Redis evicts it.
    const window = Duration.decode(options.expirySweepWindow)
    const sweep = feed.expiringSoon(window).pipe(
      Effect.tap((ids) => Effect.sync(() => ids.forEach((id) => pipeline.mark(id, "changed")))),
      Effect.catchAll((e) => Effect.logWarning(`pre-expiry sweep failed, will try again: ${e.message}`))
    )
    yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(Duration.max(Duration.millis(Duration.toMillis(window) / 2), Duration.seconds(1)))))

    // Waits until the pipeline's pause state is `value` (the one pause state: the start-up sync follows it too).
    const until = (value: boolean) => pipeline.paused.pipe(Stream.filter((p) => p === value), Stream.take(1), Stream.runDrain)

    // The start-up sync: everything that changed while the daemon was away.
    // Connection errors are retried every 5 s, saying so; any other error is not (DESIGN §4): it is logged, the
    // daemon stays not ready (`startup_sync_done` false), and the reconcile scans try again on their interval.
    // A pause stops it as it stops a manual sync (no new batch; those in flight are written), and it runs again
    // once resumed: what it wrote already is found unchanged.
    const startupSync = Effect.gen(function*() {
      yield* until(false)
      const stop = yield* Deferred.make<void>()
      yield* Effect.forkScoped(Effect.zipRight(until(true), Deferred.succeed(stop, undefined)))
      const progress = yield* Ref.make(zeroProgress(Date.now()))
      yield* Ref.set(startupSyncRunning, true)
      const result = yield* fullSync("startup", options.fullSync, progress, stop).pipe(
        Effect.provideService(SessionSource, redis),
        Effect.provideService(SessionStore, store),
        Effect.tapError((e) =>
          e.reason === "connection"
            ? Effect.logWarning(`Start-up sync failed on a connection error, retrying in 5 s: ${e.message}`)
            : Effect.logError(`Start-up sync failed, not retried (the reconcile scans will try again): ${e.message}`)
        ),
        Effect.retry({ schedule: Schedule.spaced("5 seconds"), while: (e) => e.reason === "connection" }),
        Effect.ensuring(Ref.set(startupSyncRunning, false))
      )
      if (result.stopped) {
        yield* Effect.logInfo(
          `Initial sync stopped by a pause, to run again once resumed: ${describeProgress(result, Date.now())}`
        )
        return false
      }
      yield* Ref.set(startupSyncDone, true)
      yield* Effect.logInfo(`Initial sync completed: ${describeProgress(result, Date.now())}`)
      return true
    }).pipe(Effect.scoped)
    yield* Effect.forkScoped(Effect.repeat(startupSync, { until: (done) => done }).pipe(Effect.ignore))

    return Daemon.of({
      pipeline,
      status: Effect.gen(function*() {
        return {
          captureMode: feed.mode,
          notifications: feed.notifications.detail,
          redisConnected: yield* feed.connected,
          pipeline: yield* pipeline.status,
          lastEventAt,
          eventsReceived: { ...received },
          startupSyncDone: yield* Ref.get(startupSyncDone),
          startupSyncRunning: yield* Ref.get(startupSyncRunning)
        }
      })
    })
  })

/** The daemon as a layer: it runs while the layer's scope is open. */
export const layer = (options: DaemonOptions) =>
  Layer.scoped(Daemon, make(options))
