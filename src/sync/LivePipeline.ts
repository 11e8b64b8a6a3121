/**
 * The in-memory heart of the live daemon (DESIGN §4 "The pipeline"), generic over where marks come from and where
 * batches go. Sources call `mark` (synchronous, never blocks); the pipeline coalesces marks in a bounded dirty-key
 * set, flushes batches on size or time, throttles them, never has one session in two batches in flight, retries
 * connection errors forever with capped exponential backoff (state `degraded` meanwhile), drops batches on any
 * other error, runs the sink's reconcile on overflow, on request and every `reconcileInterval`, and on shutdown
 * lets the batches in flight finish and flushes what is pending once more.
 */
import { Cause, Clock, Context, Duration, Effect, Fiber, FiberSet, Layer, Schedule, type Scope, Stream, SubscriptionRef } from "effect"
import * as DirtyKeys from "./DirtyKeys.js"
import type { DirtyEntry, Hint } from "./DirtyKeys.js"

export type { DirtyEntry, GoneKind, Hint } from "./DirtyKeys.js"

/** What the pipeline needs of a sink's errors: `reason === "connection"` is retried, anything else is not. */
export interface SinkError {
  readonly reason: string
  readonly message?: string
}

/** Where batches go. `PgError` and `RedisError` fit `E` as they are. */
export interface PipelineSink<E extends SinkError, R = never> {
  /** Writes one batch. Sessions are distinct within a batch and never in two batches in flight at once. */
  readonly flush: (batch: ReadonlyArray<DirtyEntry>) => Effect.Effect<void, E, R>
  /** A reconcile scan: brings every key up to date (and finds those that left). At most one runs at a time. */
  readonly reconcile: Effect.Effect<void, E, R>
}

export interface LivePipelineOptions {
  /** A batch is flushed as soon as this many distinct sessions are ready (and holds at most this many). */
  readonly batchSize: number
  /** ... or once this long has passed since the oldest ready mark. */
  readonly batchWindow: Duration.DurationInput
  /** Batch flushes start at least `1 / maxBatchesPerSecond` apart (a token bucket of one token). */
  readonly maxBatchesPerSecond: number
  /** Batches in flight at once. */
  readonly concurrency: number
  /** Bound of the dirty-key set; past it the set is dropped and a reconcile requested. */
  readonly maxPending: number
  /** First retry delay of a connection error (default 200 ms); doubles each time, jittered ×0.8–1.2. */
  readonly retryBaseDelay?: Duration.DurationInput
  /** No retry delay exceeds this. */
  readonly retryMaxDelay: Duration.DurationInput
  /** A reconcile is requested this often (the first one an interval after start). */
  readonly reconcileInterval: Duration.DurationInput
  /** Also request a reconcile right at start (default false: the daemon's start-up full sync usually is one). */
  readonly reconcileOnStart?: boolean
  /** Shutdown waits at most this long for the batches in flight and the final flush, then interrupts them. */
  readonly shutdownTimeout: Duration.DurationInput
}

/**
 * `running`; `degraded`: some flush or reconcile is retrying a connection error; `paused`; `stopping`: the scope
 * is closing (final flush); `stopped`. When several apply, the first of stopped, stopping, degraded, paused wins.
 */
export type PipelineState = "running" | "degraded" | "paused" | "stopping" | "stopped"

export interface PipelineStatus {
  readonly state: PipelineState
  /** Distinct dirty sessions, including those waiting for their in-flight batch to end. */
  readonly pending: number
  readonly inFlightBatches: number
  readonly inFlightSessions: number
  /** Batches written successfully, and the sessions in them. */
  readonly batchesFlushed: number
  readonly sessionsFlushed: number
  /** Batches given up on a non-connection error. */
  readonly batchesDropped: number
  /** Times the dirty-key set overflowed and was dropped. */
  readonly overflows: number
  /** Reconciles completed successfully. */
  readonly reconciles: number
  readonly reconcileRunning: boolean
  /** Clock millis of the last successful flush / reconcile, `null` before the first. */
  readonly lastFlushAt: number | null
  readonly lastReconcileAt: number | null
  /** Clock millis of the oldest change not written yet (dirty, or in a batch being written); `null` when none. */
  readonly oldestUnwrittenAt: number | null
}

export interface Pipeline {
  /** Marks a session dirty (latest hint wins). Synchronous and O(1): call it straight from a pub/sub handler. */
  readonly mark: (sessionId: string, hint: Hint) => void
  /** Asks for a reconcile; requests made while one runs coalesce into one more run after it. */
  readonly requestReconcile: Effect.Effect<void>
  /**
   * Stops starting flushes and reconciles (marks still accumulate, within `maxPending`). Idempotent; succeeds with
   * whether it was paused already.
   */
  readonly pause: Effect.Effect<boolean>
  /**
   * Undoes `pause`; what became due meanwhile starts at once (throttle permitting). Idempotent; succeeds with
   * whether it was paused.
   */
  readonly resume: Effect.Effect<boolean>
  /**
   * Whether it is paused, now and at every change (the current value first): the one pause state, which the
   * daemon's start-up sync and the HTTP API's manual syncs follow too.
   */
  readonly paused: Stream.Stream<boolean>
  readonly isPaused: Effect.Effect<boolean>
  readonly status: Effect.Effect<PipelineStatus>
}

export class LivePipeline extends Context.Tag("redis-pg-sync/sync/LivePipeline")<LivePipeline, Pipeline>() {}

/** Retry delays: exponential from `base`, doubled each time, jittered ×0.8–1.2, then capped at `max`. Forever. */
export const retryBackoff = (
  base: Duration.DurationInput,
  max: Duration.DurationInput
): Schedule.Schedule<Duration.Duration> => {
  const cap = Duration.decode(max)
  return Schedule.exponential(base, 2).pipe(
    Schedule.jittered,
    // The first argument is the schedule's output (the un-jittered delay); the second is the delay itself.
    Schedule.modifyDelay((_, delay) => Duration.min(delay, cap))
  )
}

const describe = (e: SinkError): string => e.message ?? `${e.reason} error`

const millis = (d: Duration.DurationInput) => Duration.toMillis(Duration.decode(d))

const validate = (o: LivePipelineOptions): string | undefined => {
  const whole = (n: number) => Number.isInteger(n) && n >= 1
  if (!whole(o.batchSize)) return `batchSize must be a whole number >= 1, got ${o.batchSize}`
  if (!whole(o.concurrency)) return `concurrency must be a whole number >= 1, got ${o.concurrency}`
  if (!whole(o.maxPending)) return `maxPending must be a whole number >= 1, got ${o.maxPending}`
  if (!(o.maxBatchesPerSecond > 0)) return `maxBatchesPerSecond must be > 0, got ${o.maxBatchesPerSecond}`
  if (!(millis(o.reconcileInterval) > 0)) return "reconcileInterval must be longer than zero"
  return undefined
}

/**
 * Starts the pipeline in the current scope. Closing the scope shuts it down: intake of new batches stops, the
 * batches in flight finish, what is pending is flushed once more (unless paused), all within `shutdownTimeout`;
 * what is still running then is interrupted. A running reconcile is interrupted at once (it is idempotent).
 *
 * The sink's effects run with the context `make` was run in (so `R` is required here).
 *
 * @example
 * const pipeline = yield* LivePipeline.make(options, { flush: (batch) => writeSessions(batch), reconcile: fullScan })
 * subscriber.on("pmessage", (_p, channel) => pipeline.mark(idOf(channel), "changed"))
 */
export const make = <E extends SinkError, R>(
  options: LivePipelineOptions,
  sink: PipelineSink<E, R>
): Effect.Effect<Pipeline, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const invalid = validate(options)
    if (invalid !== undefined) return yield* Effect.dieMessage(`LivePipeline: ${invalid}`)
    const { batchSize, concurrency } = options
    const windowMs = millis(options.batchWindow)
    const slotMs = 1000 / options.maxBatchesPerSecond
    const backoff = retryBackoff(options.retryBaseDelay ?? "200 millis", options.retryMaxDelay)

    const dirty = yield* DirtyKeys.make({ maxPending: options.maxPending })
    // Opened by whatever may let the dispatcher act: a mark it cares about, a flush ending, pause/resume, shutdown.
    const wake = yield* Effect.makeLatch(false)
    const reconcileWake = yield* Effect.makeLatch(false)
    const flights = yield* FiberSet.make<void, never>()

    // Read where the dispatcher decides (synchronously); `pausedRef` publishes it. Changed one call at a time.
    let paused = false
    const pausedRef = yield* SubscriptionRef.make(false)
    const pausing = yield* Effect.makeSemaphore(1)
    let stopping = false
    let stopped = false
    let retrying = 0
    let inFlightBatches = 0
    let batchesFlushed = 0
    let sessionsFlushed = 0
    let batchesDropped = 0
    let reconciles = 0
    let reconcileRequested = options.reconcileOnStart === true
    let reconcileRunning = false
    let runningReconcile: Fiber.RuntimeFiber<void> | undefined
    let lastFlushAt: number | null = null
    let lastReconcileAt: number | null = null
    // Token bucket of one token: the next flush may start at `nextSlot`.
    let nextSlot = Number.NEGATIVE_INFINITY

    const askReconcile = () => {
      reconcileRequested = true
      reconcileWake.unsafeOpen()
    }

    /** Retries connection errors forever on `backoff`, counting the operation as degraded meanwhile. */
    const withRetry = (what: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> =>
      Effect.suspend(() => {
        let failing = false
        return effect.pipe(
          Effect.tapError((e) => {
            if (e.reason !== "connection" || failing) return Effect.void
            failing = true
            retrying++
            return Effect.logWarning(`${what} failed on a connection error; retrying with backoff: ${describe(e)}`)
          }),
          Effect.retry({ schedule: backoff, while: (e) => e.reason === "connection" }),
          Effect.tap(() => (failing ? Effect.logInfo(`${what} succeeded again`) : Effect.void)),
          Effect.ensuring(Effect.sync(() => {
            if (failing) retrying--
          }))
        )
      })

    const flush = (batch: ReadonlyArray<DirtyEntry>) =>
      withRetry("flush", sink.flush(batch)).pipe(
        Effect.matchCauseEffect({
          onSuccess: () =>
            Effect.map(Clock.currentTimeMillis, (now) => {
              batchesFlushed++
              sessionsFlushed += batch.length
              lastFlushAt = now
            }),
          onFailure: (cause) =>
            Cause.isInterruptedOnly(cause) ? Effect.void : Effect.suspend(() => {
              batchesDropped++
              const failure = Cause.failureOption(cause)
              const why = failure._tag === "Some" ? describe(failure.value) : Cause.pretty(cause)
              return Effect.logWarning(`batch of ${batch.length} sessions dropped, not retried: ${why}`)
            })
        }),
        Effect.ensuring(Effect.sync(() => {
          dirty.release(batch.map((e) => e.sessionId))
          inFlightBatches--
          wake.unsafeOpen()
        })),
        Effect.withSpan("LivePipeline.flush", { attributes: { sessions: batch.length } })
      )

    const waitOr = (ms: number) => Effect.race(wake.await, Effect.sleep(Duration.millis(ms)))

    /**
     * Starts batches as they become due. Live: until shutdown. Draining (shutdown): flushes everything ready at
     * once, ignoring the window, and returns when nothing is pending or in flight.
     */
    const dispatch = (draining: boolean): Effect.Effect<void, never, R> =>
      Effect.gen(function*() {
        while (true) {
          wake.unsafeClose()
          if (!draining && stopping) return
          const ready = dirty.ready()
          if (draining && ready === 0 && inFlightBatches === 0) return
          if ((paused && !draining) || ready === 0 || inFlightBatches >= concurrency) {
            yield* wake.await
            continue
          }
          const now = yield* Clock.currentTimeMillis
          if (!draining && ready < batchSize) {
            const due = (dirty.oldestReadyAt() ?? now) + windowMs
            if (now < due) {
              yield* waitOr(due - now)
              continue
            }
          }
          if (now < nextSlot) {
            yield* waitOr(nextSlot - now)
            continue
          }
          nextSlot = now + slotMs
          const batch = dirty.take(batchSize)
          inFlightBatches++
          yield* FiberSet.run(flights, flush(batch))
        }
      })

    const reconciler = Effect.gen(function*() {
      while (true) {
        reconcileWake.unsafeClose()
        if (!reconcileRequested || paused) {
          yield* reconcileWake.await
          continue
        }
        reconcileRequested = false
        reconcileRunning = true
        // Forked, so that a pause can stop it (`setPaused`); it runs again after the resume.
        const run = yield* Effect.fork(withRetry("reconcile", sink.reconcile).pipe(
          Effect.matchCauseEffect({
            onSuccess: () =>
              Effect.map(Clock.currentTimeMillis, (now) => {
                reconciles++
                lastReconcileAt = now
              }),
            onFailure: (cause) => {
              if (Cause.isInterruptedOnly(cause)) return Effect.void
              const failure = Cause.failureOption(cause)
              const why = failure._tag === "Some" ? describe(failure.value) : Cause.pretty(cause)
              return Effect.logWarning(`reconcile failed, not retried: ${why}`)
            }
          }),
          Effect.ensuring(Effect.sync(() => {
            runningReconcile = undefined
            reconcileRunning = false
          })),
          Effect.withSpan("LivePipeline.reconcile")
        ))
        runningReconcile = run
        yield* Fiber.await(run)
      }
    })

    const annotate = Effect.annotateLogs({ service: "LivePipeline" })
    // `interruptible`: forked fibers inherit the interruptibility of the forking region, and `make` may run in
    // an uninterruptible one (e.g. an acquire); the flushes they fork must stay interruptible for the timeout.
    const background = <A>(effect: Effect.Effect<A, never, R>) =>
      Effect.forkScoped(Effect.interruptible(annotate(effect)))
    const dispatcher = yield* background(dispatch(false))
    const reconcilerFiber = yield* background(reconciler)
    const ticker = yield* background(
      Effect.schedule(Effect.sync(askReconcile), Schedule.spaced(options.reconcileInterval))
    )

    // Added after the forks, so it runs before they are interrupted (finalizers run in reverse order).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        wake.unsafeOpen()
        yield* Fiber.interrupt(ticker)
        yield* Fiber.interrupt(reconcilerFiber)
        const finished = yield* Effect.gen(function*() {
          yield* dispatcher.await
          while (inFlightBatches > 0) {
            wake.unsafeClose()
            if (inFlightBatches > 0) yield* wake.await
          }
          if (!paused) yield* dispatch(true)
        }).pipe(
          // Finalizers run uninterruptibly: without this the timeout would wait for a flush retrying forever.
          Effect.interruptible,
          Effect.timeoutOption(options.shutdownTimeout)
        )
        if (finished._tag === "None") {
          yield* Effect.logWarning(
            `shutdown timed out: ${inFlightBatches} batches in flight interrupted, ${dirty.size()} sessions left ` +
              "unflushed (the start-up reconcile will pick them up)"
          )
        } else if (paused && dirty.size() > 0) {
          yield* Effect.logWarning(
            `stopped while paused: ${dirty.size()} sessions left unflushed (the start-up reconcile will pick them up)`
          )
        }
        stopped = true
      }).pipe(annotate)
    )

    const mark = (sessionId: string, hint: Hint): void => {
      const result = dirty.mark(sessionId, hint)
      if (result === "coalesced") return
      if (result === "overflow") {
        askReconcile()
        wake.unsafeOpen()
        return
      }
      // Only the moments that change a decision: the first ready id starts the window, a full batch is due.
      const ready = dirty.ready()
      if (ready === 1 || ready === batchSize) wake.unsafeOpen()
    }

    // A pause also stops a reconcile scan under way (it is idempotent: stopped anywhere, it loses nothing) and
    // asks for it again, so that it runs once the pipeline is resumed; batches in flight finish.
    const setPaused = (value: boolean): Effect.Effect<boolean> =>
      pausing.withPermits(1)(Effect.suspend(() => {
        const was = paused
        paused = value
        wake.unsafeOpen()
        reconcileWake.unsafeOpen()
        const running = runningReconcile
        const stopReconcile = !value || running === undefined || !reconcileRunning
          ? Effect.void
          : Effect.zipRight(Effect.sync(() => (reconcileRequested = true)), Fiber.interrupt(running))
        return Effect.as(Effect.zipRight(stopReconcile, SubscriptionRef.set(pausedRef, value)), was)
      }))

    return {
      mark,
      requestReconcile: Effect.sync(askReconcile),
      pause: setPaused(true),
      resume: setPaused(false),
      paused: pausedRef.changes,
      isPaused: Effect.sync(() => paused),
      status: Effect.sync((): PipelineStatus => ({
        state: stopped
          ? "stopped"
          : stopping
          ? "stopping"
          : retrying > 0
          ? "degraded"
          : paused
          ? "paused"
          : "running",
        pending: dirty.size(),
        inFlightBatches,
        inFlightSessions: dirty.inFlight(),
        batchesFlushed,
        sessionsFlushed,
        batchesDropped,
        overflows: dirty.overflows(),
        reconciles,
        reconcileRunning,
        lastFlushAt,
        lastReconcileAt,
        oldestUnwrittenAt: dirty.oldestUnwrittenAt() ?? null
      }))
    }
  })

/** `make` as a scoped layer of the `LivePipeline` tag. */
export const layer = <E extends SinkError, R>(
  options: LivePipelineOptions,
  sink: PipelineSink<E, R>
): Layer.Layer<LivePipeline, never, R> => Layer.scoped(LivePipeline, make(options, sink))
