import { assert, describe, it } from "@effect/vitest"
import { Clock, Data, Duration, Effect, Exit, Fiber, Option, Scope, Stream, TestClock } from "effect"
import type { DirtyEntry } from "../../src/sync/DirtyKeys.js"
import * as LivePipeline from "../../src/sync/LivePipeline.js"

class TestFailure extends Data.TaggedError("TestFailure")<{
  readonly reason: "connection" | "data"
  readonly message: string
}> {}
const connectionError = new TestFailure({ reason: "connection", message: "ECONNREFUSED" })
const dataError = new TestFailure({ reason: "data", message: "value too long (SQLSTATE 22001)" })

interface Attempt {
  readonly at: number
  readonly batch: ReadonlyArray<DirtyEntry>
}
interface Flushed extends Attempt {
  readonly end: number
}
interface Run {
  readonly start: number
  readonly end: number
}

interface SinkBehaviour {
  /** TestClock millis each flush attempt takes. */
  readonly flushTime?: number
  readonly reconcileTime?: number
  /** The failure of flush attempt number `n` (1-based), if any. */
  readonly failFlush?: (n: number, batch: ReadonlyArray<DirtyEntry>) => TestFailure | undefined
}

/** An in-memory sink recording every flush attempt and reconcile with its TestClock times. */
const makeSink = (behaviour: SinkBehaviour = {}) => {
  const attempts: Array<Attempt> = []
  const flushed: Array<Flushed> = []
  const reconciles: Array<Run> = []
  const flying = { now: 0, max: 0 }
  const sink: LivePipeline.PipelineSink<TestFailure> = {
    flush: (batch) =>
      Effect.gen(function*() {
        const at = yield* Clock.currentTimeMillis
        const n = attempts.push({ at, batch })
        flying.now++
        flying.max = Math.max(flying.max, flying.now)
        yield* Effect.sleep(behaviour.flushTime ?? 0).pipe(Effect.ensuring(Effect.sync(() => flying.now--)))
        const failure = behaviour.failFlush?.(n, batch)
        if (failure !== undefined) return yield* failure
        flushed.push({ at, batch, end: yield* Clock.currentTimeMillis })
      }),
    reconcile: Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      yield* Effect.sleep(behaviour.reconcileTime ?? 0)
      reconciles.push({ start, end: yield* Clock.currentTimeMillis })
    })
  }
  return { sink, attempts, flushed, reconciles, flying }
}

const ids = (batch: ReadonlyArray<DirtyEntry>) => batch.map((e) => e.sessionId)
const shape = (attempts: ReadonlyArray<Attempt>) => attempts.map((a) => [a.at, ids(a.batch)] as const)

const defaults: LivePipeline.LivePipelineOptions = {
  batchSize: 100,
  batchWindow: "100 millis",
  maxBatchesPerSecond: Number.POSITIVE_INFINITY,
  concurrency: 4,
  maxPending: 10_000,
  retryMaxDelay: "10 seconds",
  reconcileInterval: "1 hour",
  shutdownTimeout: "5 seconds"
}

/** Starts a pipeline in a scope of its own; `close` shuts it down (fork it and advance the TestClock). */
const start = (options: Partial<LivePipeline.LivePipelineOptions>, sink: LivePipeline.PipelineSink<TestFailure>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const pipeline = yield* LivePipeline.make({ ...defaults, ...options }, sink).pipe(Scope.extend(scope))
    return { pipeline, close: Scope.close(scope, Exit.void) }
  })

/** Runs `body` against a fresh pipeline, then shuts it down, letting the TestClock run out any shutdown timeout. */
const withPipeline = <A>(
  options: Partial<LivePipeline.LivePipelineOptions>,
  sink: LivePipeline.PipelineSink<TestFailure>,
  body: (pipeline: LivePipeline.Pipeline) => Effect.Effect<A>
) =>
  Effect.gen(function*() {
    const { close, pipeline } = yield* start(options, sink)
    const result = yield* body(pipeline)
    const closing = yield* Effect.fork(close)
    yield* TestClock.adjust(options.shutdownTimeout ?? defaults.shutdownTimeout)
    yield* Fiber.join(closing)
    return result
  })

/** Advances the TestClock, then lets every woken fiber finish what it does at that instant. */
const advance = (d: Duration.DurationInput) => Effect.zipRight(TestClock.adjust(d), TestClock.adjust(0))
const settle = TestClock.adjust(0)
const now = Clock.currentTimeMillis

describe("LivePipeline", () => {
  it.effect("flushes a batch as soon as batchSize distinct sessions are pending", () => {
    const t = makeSink()
    return withPipeline({ batchSize: 3, batchWindow: "1 second" }, t.sink, (p) =>
      Effect.gen(function*() {
        p.mark("a", "changed")
        p.mark("b", "changed")
        p.mark("a", "changed")
        yield* settle
        assert.deepStrictEqual(t.attempts, [])
        p.mark("c", "deleted")
        yield* settle
        assert.deepStrictEqual(t.attempts, [{
          at: 0,
          batch: [{ sessionId: "a", hint: "changed" }, { sessionId: "b", hint: "changed" }, {
            sessionId: "c",
            hint: "deleted"
          }]
        }])
        p.mark("d", "changed")
        p.mark("e", "changed")
        yield* settle
        assert.strictEqual(t.attempts.length, 1)
        assert.strictEqual((yield* p.status).pending, 2)
        yield* advance("999 millis")
        assert.strictEqual(t.attempts.length, 1)
        yield* advance("1 millis")
        assert.deepStrictEqual(shape(t.attempts), [[0, ["a", "b", "c"]], [1000, ["d", "e"]]])
        const s = yield* p.status
        assert.deepStrictEqual([s.batchesFlushed, s.sessionsFlushed, s.pending, s.lastFlushAt], [2, 5, 0, 1000])
      }))
  })

  it.effect("flushes on time: not before the window, exactly at it, counted from the oldest mark", () => {
    const t = makeSink()
    return withPipeline({ batchWindow: "100 millis" }, t.sink, (p) =>
      Effect.gen(function*() {
        p.mark("a", "changed")
        yield* advance("99 millis")
        assert.deepStrictEqual(t.attempts, [])
        yield* advance("1 millis")
        assert.deepStrictEqual(shape(t.attempts), [[100, ["a"]]])
        yield* advance("50 millis")
        p.mark("b", "changed")
        yield* advance("60 millis")
        p.mark("c", "changed")
        yield* advance("39 millis")
        assert.strictEqual(yield* now, 249)
        assert.strictEqual(t.attempts.length, 1)
        yield* advance("1 millis")
        assert.deepStrictEqual(shape(t.attempts), [[100, ["a"]], [250, ["b", "c"]]])
      }))
  })

  it.effect("coalesces 1,000 marks of one session into one entry in one batch; the latest hint wins", () => {
    const t = makeSink()
    return withPipeline({}, t.sink, (p) =>
      Effect.gen(function*() {
        for (let i = 0; i < 1000; i++) p.mark("hot", "changed")
        p.mark("gone", "changed")
        p.mark("gone", "expired")
        assert.strictEqual((yield* p.status).pending, 2)
        yield* advance("10 seconds")
        assert.deepStrictEqual(t.attempts, [{
          at: 100,
          batch: [{ sessionId: "hot", hint: "changed" }, { sessionId: "gone", hint: "expired" }]
        }])
      }))
  })

  it.effect("throttle shape: maxBatchesPerSecond=2 starts flushes 500 ms apart, a slower producer undelayed", () => {
    const t = makeSink()
    return withPipeline({ batchSize: 1, maxBatchesPerSecond: 2, batchWindow: "1 hour" }, t.sink, (p) =>
      Effect.gen(function*() {
        // One new session every 100 ms: batches are always due, the throttle alone spaces them.
        yield* Effect.fork(Effect.forEach(
          Array.from({ length: 10 }, (_, i) => `s${i}`),
          (id) => Effect.zipRight(Effect.sync(() => p.mark(id, "changed")), Effect.sleep("100 millis")),
          { discard: true }
        ))
        yield* advance("4999 millis")
        assert.deepStrictEqual(t.attempts.map((a) => a.at), [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500])
        assert.deepStrictEqual(t.attempts.flatMap((a) => ids(a.batch)), Array.from({ length: 10 }, (_, i) => `s${i}`))
        // Slower than the rate (one every 700 ms): each flushes when marked.
        for (const id of ["x", "y", "z"]) {
          yield* advance("700 millis")
          p.mark(id, "changed")
          yield* settle
        }
        assert.deepStrictEqual(shape(t.attempts.slice(10)), [[5699, ["x"]], [6399, ["y"]], [7099, ["z"]]])
      }))
  })

  it.effect("a burst is spread out: never more than maxBatchesPerSecond flushes start in one second", () => {
    const t = makeSink()
    return withPipeline({ batchSize: 2, maxBatchesPerSecond: 4 }, t.sink, (p) =>
      Effect.gen(function*() {
        for (let i = 0; i < 16; i++) p.mark(`s${i}`, "changed")
        yield* advance("3 seconds")
        assert.deepStrictEqual(t.attempts.map((a) => a.at), [0, 250, 500, 750, 1000, 1250, 1500, 1750])
        assert.deepStrictEqual(t.attempts.map((a) => a.batch.length), [2, 2, 2, 2, 2, 2, 2, 2])
      }))
  })

  it.effect("retries a connection error after 200, 400, 800 ms… capped at retryMaxDelay (jitter pinned ×1)", () => {
    const t = makeSink({ failFlush: (n) => (n <= 6 ? connectionError : undefined) })
    return withPipeline({ batchSize: 1, retryMaxDelay: "1 second" }, t.sink, (p) =>
      Effect.gen(function*() {
        p.mark("a", "changed")
        yield* advance("10 seconds")
        assert.deepStrictEqual(t.attempts.map((a) => a.at), [0, 200, 600, 1400, 2400, 3400, 4400])
        assert.deepStrictEqual(t.flushed.map((f) => f.at), [4400])
        assert.strictEqual((yield* p.status).batchesFlushed, 1)
      })).pipe(Effect.withRandomFixed([0.5]))
  })

  it.effect("the retry delays are jittered: ×0.8 at the low end, still capped at retryMaxDelay", () => {
    const t = makeSink({ failFlush: (n) => (n <= 4 ? connectionError : undefined) })
    return withPipeline({ batchSize: 1, retryMaxDelay: "1 second" }, t.sink, (p) =>
      Effect.gen(function*() {
        p.mark("a", "changed")
        yield* advance("10 seconds")
        // 160, 320, 640, min(1280, 1000)
        assert.deepStrictEqual(t.attempts.map((a) => a.at), [0, 160, 480, 1120, 2120])
      })).pipe(Effect.withRandomFixed([0]))
  })

  it.effect("reports degraded while retrying and running again after a success", () => {
    const t = makeSink({ failFlush: (n) => (n <= 2 ? connectionError : undefined) })
    return withPipeline({ batchSize: 1 }, t.sink, (p) =>
      Effect.gen(function*() {
        assert.strictEqual((yield* p.status).state, "running")
        p.mark("a", "changed")
        yield* settle
        const failing = yield* p.status
        assert.deepStrictEqual(
          [failing.state, failing.inFlightBatches, failing.inFlightSessions, failing.batchesFlushed],
          ["degraded", 1, 1, 0]
        )
        yield* advance("200 millis")
        assert.strictEqual(t.attempts.length, 2)
        assert.strictEqual((yield* p.status).state, "degraded")
        yield* advance("400 millis")
        const recovered = yield* p.status
        assert.deepStrictEqual(
          [recovered.state, recovered.inFlightBatches, recovered.batchesFlushed, recovered.lastFlushAt],
          ["running", 0, 1, 600]
        )
      })).pipe(Effect.withRandomFixed([0.5]))
  })

  it.effect("never retries a data error: the batch is dropped and the pipeline goes on", () => {
    const t = makeSink({ failFlush: (_, batch) => (ids(batch).includes("bad") ? dataError : undefined) })
    return withPipeline({ batchSize: 1 }, t.sink, (p) =>
      Effect.gen(function*() {
        p.mark("bad", "changed")
        yield* advance("1 minute")
        assert.deepStrictEqual(shape(t.attempts), [[0, ["bad"]]])
        const s = yield* p.status
        assert.deepStrictEqual(
          [s.state, s.batchesDropped, s.batchesFlushed, s.pending, s.inFlightBatches],
          ["running", 1, 0, 0, 0]
        )
        p.mark("good", "changed")
        yield* settle
        assert.deepStrictEqual(shape(t.flushed), [[60_000, ["good"]]])
        assert.strictEqual((yield* p.status).batchesFlushed, 1)
      }))
  })

  it.effect("a session is never in two batches in flight: marked during its flush, it goes in a later batch", () => {
    const t = makeSink({ flushTime: 1000 })
    return withPipeline({ batchSize: 10, batchWindow: "100 millis" }, t.sink, (p) =>
      Effect.gen(function*() {
        p.mark("a", "changed")
        yield* advance("200 millis") // a in flight from 100 to 1100
        p.mark("a", "deleted")
        p.mark("b", "changed")
        yield* advance("899 millis")
        assert.deepStrictEqual(shape(t.attempts), [[100, ["a"]], [300, ["b"]]])
        const waiting = yield* p.status
        assert.deepStrictEqual([waiting.pending, waiting.inFlightBatches, waiting.inFlightSessions], [1, 2, 2])
        yield* advance("1 millis")
        assert.deepStrictEqual(shape(t.attempts), [[100, ["a"]], [300, ["b"]], [1100, ["a"]]])
        assert.deepStrictEqual(t.attempts[2]!.batch, [{ sessionId: "a", hint: "deleted" }])
        yield* advance("2 seconds")
        assert.deepStrictEqual(t.flushed.map((f) => [f.at, f.end]), [[100, 1100], [300, 1300], [1100, 2100]])
      }))
  })

  it.effect("runs at most `concurrency` flushes at once", () => {
    const t = makeSink({ flushTime: 1000 })
    return withPipeline({ batchSize: 1, concurrency: 2 }, t.sink, (p) =>
      Effect.gen(function*() {
        for (const id of ["a", "b", "c", "d", "e"]) p.mark(id, "changed")
        yield* settle
        const s = yield* p.status
        assert.deepStrictEqual([s.inFlightBatches, s.pending], [2, 3])
        yield* advance("3 seconds")
        assert.deepStrictEqual(shape(t.attempts), [[0, ["a"]], [0, ["b"]], [1000, ["c"]], [1000, ["d"]], [2000, ["e"]]])
        assert.strictEqual(t.flying.max, 2)
      }))
  })

  it.effect("overflow drops the set and runs exactly one reconcile", () => {
    const t = makeSink()
    return withPipeline({ maxPending: 3, batchWindow: "1 minute" }, t.sink, (p) =>
      Effect.gen(function*() {
        for (const id of ["a", "b", "c"]) p.mark(id, "changed")
        yield* settle
        assert.deepStrictEqual(t.reconciles, [])
        p.mark("d", "changed")
        const s = yield* p.status
        assert.deepStrictEqual([s.pending, s.overflows], [1, 1])
        yield* settle
        assert.deepStrictEqual(t.reconciles, [{ start: 0, end: 0 }])
        yield* advance("10 minutes")
        assert.deepStrictEqual(t.reconciles, [{ start: 0, end: 0 }])
        assert.deepStrictEqual(shape(t.attempts), [[60_000, ["d"]]])
        assert.strictEqual((yield* p.status).reconciles, 1)
      }))
  })

  it.effect("reconcile requests made while one runs coalesce into one more run after it", () => {
    const t = makeSink({ reconcileTime: 1000 })
    return withPipeline({ maxPending: 2, batchWindow: "1 minute" }, t.sink, (p) =>
      Effect.gen(function*() {
        yield* p.requestReconcile
        yield* advance("100 millis")
        assert.strictEqual((yield* p.status).reconcileRunning, true)
        yield* p.requestReconcile
        for (const id of ["a", "b", "c", "d", "e"]) p.mark(id, "changed") // overflows at c and at e
        yield* p.requestReconcile
        assert.strictEqual((yield* p.status).overflows, 2)
        yield* advance("10 seconds")
        assert.deepStrictEqual(t.reconciles, [{ start: 0, end: 1000 }, { start: 1000, end: 2000 }])
        assert.strictEqual((yield* p.status).reconciles, 2)
      }))
  })

  it.effect("reconciles every reconcileInterval", () => {
    const t = makeSink({ reconcileTime: 5000 })
    return withPipeline({ reconcileInterval: "1 minute" }, t.sink, (p) =>
      Effect.gen(function*() {
        yield* advance("59999 millis")
        assert.deepStrictEqual(t.reconciles, [])
        yield* advance("150001 millis")
        assert.deepStrictEqual(t.reconciles.map((r) => r.start), [60_000, 120_000, 180_000])
        const s = yield* p.status
        assert.deepStrictEqual([s.reconciles, s.lastReconcileAt], [3, 185_000])
      }))
  })

  it.effect("reconcileOnStart runs one reconcile right away", () => {
    const t = makeSink()
    return withPipeline({ reconcileOnStart: true }, t.sink, () =>
      Effect.gen(function*() {
        yield* settle
        assert.deepStrictEqual(t.reconciles, [{ start: 0, end: 0 }])
      }))
  })

  it.effect("pause keeps marking but flushes and reconciles nothing; resume flushes what is due", () => {
    const t = makeSink()
    return withPipeline({ batchSize: 2 }, t.sink, (p) =>
      Effect.gen(function*() {
        yield* p.pause
        p.mark("a", "changed")
        p.mark("b", "changed")
        p.mark("c", "expired")
        yield* p.requestReconcile
        yield* advance("10 seconds")
        assert.deepStrictEqual([t.attempts, t.reconciles], [[], []])
        const s = yield* p.status
        assert.deepStrictEqual([s.state, s.pending], ["paused", 3])
        yield* p.resume
        yield* settle
        assert.deepStrictEqual(shape(t.attempts), [[10_000, ["a", "b"]], [10_000, ["c"]]])
        assert.deepStrictEqual(t.reconciles, [{ start: 10_000, end: 10_000 }])
        assert.strictEqual((yield* p.status).state, "running")
      }))
  })

  it.effect("the pause state: pause and resume say what it was, isPaused and the paused stream what it is", () => {
    const t = makeSink()
    return withPipeline({}, t.sink, (p) =>
      Effect.gen(function*() {
        const seen: Array<boolean> = []
        const watching = yield* Effect.fork(Stream.runForEach(p.paused, (v) => Effect.sync(() => seen.push(v))))
        yield* settle
        assert.deepStrictEqual(seen, [false], "the current value first")
        assert.isFalse(yield* p.pause, "was not paused")
        assert.isTrue(yield* p.pause, "already paused")
        assert.isTrue(yield* p.isPaused)
        yield* settle
        assert.isTrue(yield* p.resume, "was paused")
        assert.isFalse(yield* p.resume, "was not paused")
        assert.isFalse(yield* p.isPaused)
        yield* settle
        // In order, repeats aside (a pause of a paused pipeline publishes its value again).
        assert.deepStrictEqual(seen.filter((v, i) => i === 0 || v !== seen[i - 1]), [false, true, false])
        // Concurrent pauses and resumes run one at a time: the state ends as the last one left it.
        yield* Effect.all([p.pause, p.resume, p.pause], { concurrency: "unbounded" })
        assert.isTrue(yield* p.isPaused)
        yield* settle
        assert.strictEqual(seen.at(-1), true)
        assert.strictEqual((yield* p.status).state, "paused")
        yield* Fiber.interrupt(watching)
      }))
  })

  it.effect("pause stops a reconcile scan under way, which runs again after the resume", () => {
    const t = makeSink({ reconcileTime: 10_000 })
    return withPipeline({}, t.sink, (p) =>
      Effect.gen(function*() {
        yield* p.requestReconcile
        yield* advance("1 second")
        assert.isTrue((yield* p.status).reconcileRunning)
        yield* p.pause
        assert.isFalse((yield* p.status).reconcileRunning, "stopped by the pause")
        yield* advance("1 minute")
        assert.deepStrictEqual(t.reconciles, [], "nothing finished while paused")
        yield* p.resume
        yield* advance("10 seconds")
        assert.deepStrictEqual(t.reconciles, [{ start: 61_000, end: 71_000 }])
        assert.strictEqual((yield* p.status).reconciles, 1)
      }))
  })

  it.effect("shutdown stops intake, lets the batch in flight finish, then flushes the pending sessions", () =>
    Effect.gen(function*() {
      const t = makeSink({ flushTime: 1000 })
      const { close, pipeline: p } = yield* start({ batchSize: 2, batchWindow: "1 minute" }, t.sink)
      p.mark("a", "changed")
      p.mark("b", "changed")
      yield* advance("100 millis")
      p.mark("c", "changed")
      p.mark("a", "deleted") // a is in flight: it must wait for that batch to end
      const closing = yield* Effect.fork(close)
      yield* settle
      assert.strictEqual((yield* p.status).state, "stopping")
      yield* advance("899 millis")
      assert.deepStrictEqual(shape(t.attempts), [[0, ["a", "b"]]])
      yield* advance("1 millis")
      assert.deepStrictEqual(shape(t.attempts), [[0, ["a", "b"]], [1000, ["c", "a"]]])
      yield* advance("999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
      yield* advance("1 millis")
      assert.deepStrictEqual(yield* Fiber.poll(closing), Option.some(Exit.void))
      assert.deepStrictEqual(t.flushed.map((f) => [f.at, f.end]), [[0, 1000], [1000, 2000]])
      const s = yield* p.status
      assert.deepStrictEqual([s.state, s.pending, s.batchesFlushed, s.sessionsFlushed], ["stopped", 0, 2, 4])
    }))

  it.effect("shutdown gives up after shutdownTimeout when the sink stays unreachable", () =>
    Effect.gen(function*() {
      const t = makeSink({ failFlush: () => connectionError })
      const { close, pipeline: p } = yield* start({ batchSize: 1, shutdownTimeout: "5 seconds" }, t.sink)
      p.mark("a", "changed")
      yield* settle
      const closing = yield* Effect.fork(close)
      yield* advance("4999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
      yield* advance("1 millis")
      assert.deepStrictEqual(yield* Fiber.poll(closing), Option.some(Exit.void))
      assert.deepStrictEqual(t.attempts.map((a) => a.at), [0, 200, 600, 1400, 3000])
      const s = yield* p.status
      assert.deepStrictEqual([s.state, s.inFlightBatches, s.batchesFlushed], ["stopped", 0, 0])
      yield* advance("1 minute")
      assert.strictEqual(t.attempts.length, 5)
    }).pipe(Effect.withRandomFixed([0.5])))

  it.effect("shutdown while paused flushes nothing", () =>
    Effect.gen(function*() {
      const t = makeSink()
      const { close, pipeline: p } = yield* start({}, t.sink)
      yield* p.pause
      p.mark("a", "changed")
      const closing = yield* Effect.fork(close)
      yield* settle
      assert.deepStrictEqual(yield* Fiber.poll(closing), Option.some(Exit.void))
      assert.deepStrictEqual(t.attempts, [])
    }))

  it.effect("rejects invalid options as a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(LivePipeline.make({ ...defaults, batchSize: 0 }, makeSink().sink)))
      assert.isTrue(Exit.isFailure(exit))
    }))
})
