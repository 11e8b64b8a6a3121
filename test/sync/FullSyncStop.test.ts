import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Ref, Schedule, Stream } from "effect"
import { PgError } from "../../src/pg/PgError.js"
import { emptyBatch, SessionStore } from "../../src/pg/SessionStore.js"
import { SessionSource } from "../../src/redis/SessionSource.js"
import { defaultFullSyncOptions, fullSync, STATISTICS_AFTER, zeroProgress } from "../../src/sync/FullSync.js"

interface RunOptions {
  /** The stop has come before the sync starts. */
  readonly stopFirst?: boolean
  /** What `refreshStatistics` does. */
  readonly refresh?: Effect.Effect<void, PgError>
  /** Whether the projection holds nothing yet (a first sync: pages are read one at a time). Default true. */
  readonly empty?: boolean
  /** Pages (of `perPage`) of sessions the projection holds as present but whose keys are gone from Redis. */
  readonly departedPages?: number
}

/**
 * A full sync over in-memory stand-ins: `pages` SCAN pages of `perPage` keys, each key a small session, every batch
 * one session (so a page is several batches), written by a store that counts the batches it was given (the sweep's
 * too) and calls `onApply` with their number. The sweep finds `departedPages` pages of sessions gone from Redis.
 */
const run = (
  pages: number,
  perPage: number,
  onApply: (n: number, stop: Deferred.Deferred<void>) => Effect.Effect<void>,
  { departedPages = 0, empty = true, refresh = Effect.void, stopFirst = false }: RunOptions = {}
) =>
  Effect.gen(function*() {
    const stop = yield* Deferred.make<void>()
    if (stopFirst) yield* Deferred.succeed(stop, undefined)
    const stopped = Deferred.isDone(stop)
    let applied = 0
    let read = 0
    let readAfterStop = 0
    let swept = 0
    let lookedUpAfterStop = 0
    let sweepWrites = 0
    let sweepWritesAfterStop = 0
    let refreshed = 0
    const departed = Array.from({ length: departedPages }, (_, p) =>
      Array.from({ length: perPage }, (_, i) => ({ id: String(p * perPage + i + 1), sessionId: `gone${p}-${i}` })))
    const source = SessionSource.of({
      scan: () =>
        Stream.fromIterable(Array.from({ length: pages }, (_, p) => Array.from({ length: perPage }, (_, i) => `s${p}-${i}`))),
      read: (ids) =>
        Effect.map(stopped, (now) => {
          read += ids.length
          if (now) readAfterStop += ids.length
          return ids.map((id) => ({ sessionId: id, value: Buffer.from(`{"topic":"${id}"}`), redisType: "string" }))
        }),
      exists: (ids) =>
        Effect.map(stopped, (now) => {
          if (now) lookedUpAfterStop++
          return ids.map((id) => !id.startsWith("gone"))
        })
    })
    const store = SessionStore.of({
      isEmpty: Effect.succeed(empty),
      standingHashes: () => Effect.succeed(new Map()),
      apply: (observations) =>
        Effect.gen(function*() {
          const gone = observations.filter((o) => o._tag === "Gone").length
          if (gone > 0) {
            sweepWrites++
            if (yield* stopped) sweepWritesAfterStop++
          }
          applied++
          yield* onApply(applied, stop)
          // Let the other writers in flight come to the same point.
          yield* Effect.yieldNow()
          return { ...emptyBatch, sessions: observations.length, changed: observations.length - gone, gone }
        }),
      refreshStatistics: Effect.suspend(() => {
        refreshed++
        return refresh
      }),
      present: (after, limit) =>
        Effect.sync(() => {
          swept++
          return departed.find((page) => Number(page[0]!.id) > Number(after) && page.length <= limit) ?? []
        })
    })
    const options = { ...defaultFullSyncOptions(Schedule.stop), batchSessions: 1, writeConcurrency: 3, scanCount: perPage }
    const progress = yield* Ref.make(zeroProgress(0))
    const result = yield* fullSync("api", options, progress, stop).pipe(
      Effect.provideService(SessionSource, source),
      Effect.provideService(SessionStore, store)
    )
    return { result, applied, read, readAfterStop, swept, lookedUpAfterStop, sweepWrites, sweepWritesAfterStop, refreshed }
  })

describe("FullSync.fullSync with a stop", () => {
  it.effect("without a stop it writes every batch, sweeps every page, and refreshes no statistics for a few sessions", () =>
    Effect.gen(function*() {
      const r = yield* run(3, 5, () => Effect.void, { departedPages: 2, empty: false })
      assert.deepStrictEqual([r.applied, r.read, r.sweepWrites, r.result.changed, r.result.departed, r.result.stopped], [17, 15, 2, 15, 10, false])
      assert.strictEqual(r.refreshed, 0)
    }))

  it.effect("stopped before it starts, it writes nothing, reads no page and does not sweep", () =>
    Effect.gen(function*() {
      const r = yield* run(3, 5, () => Effect.void, { stopFirst: true, departedPages: 2 })
      assert.deepStrictEqual([r.applied, r.read, r.swept, r.result.stopped], [0, 0, 0, true])
    }))

  for (const empty of [true, false]) {
    it.effect(`stopped during its first write, it starts no other batch, not even of a page already read, and reads no page (${empty ? "first sync" : "pages read ahead"})`, () =>
      Effect.gen(function*() {
        // The stop comes while the first batch is written; the batches started alongside it (at most the
        // concurrency) finish and are counted, and none starts after.
        const r = yield* run(3, 5, (n, stop) => (n === 1 ? Deferred.succeed(stop, undefined) : Effect.void), { empty, departedPages: 2 })
        assert.isAtMost(r.applied, 3)
        assert.strictEqual(r.result.changed, r.applied)
        assert.isAtLeast(r.read, 5)
        assert.strictEqual(r.readAfterStop, 0)
        assert.strictEqual(r.swept, 0)
        assert.isTrue(r.result.stopped)
      }))
  }

  it.effect("stopped during the sweep's first write, it looks up no other page, and the writes under way finish", () =>
    Effect.gen(function*() {
      // 5 batches of the scan, then one write per page of departed sessions, three pages at a time.
      // The writes alongside it take longer, so that they are still under way when the next page would start.
      const r = yield* run(1, 5, (n, stop) =>
        n === 6 ? Deferred.succeed(stop, undefined) : n > 6 ? Effect.repeatN(Effect.yieldNow(), 50) : Effect.void, { departedPages: 6, empty: false })
      assert.isTrue(r.result.stopped)
      assert.strictEqual(r.lookedUpAfterStop, 0)
      assert.isAtLeast(r.sweepWrites, 1)
      assert.isAtMost(r.sweepWrites, 3)
      // Every sweep write started was finished and counted: none was interrupted.
      assert.strictEqual(r.result.departed, 5 * r.sweepWrites)
      assert.isBelow(r.swept, 6)
    }))
})

describe("FullSync.fullSync and the projection's statistics", () => {
  it.effect(`a sync that wrote ${STATISTICS_AFTER} sessions refreshes them once, one that wrote one fewer does not`, () =>
    Effect.gen(function*() {
      const many = yield* run(1, STATISTICS_AFTER, () => Effect.void)
      assert.deepStrictEqual([many.result.changed, many.refreshed], [STATISTICS_AFTER, 1])
      const fewer = yield* run(1, STATISTICS_AFTER - 1, () => Effect.void)
      assert.deepStrictEqual([fewer.result.changed, fewer.refreshed], [STATISTICS_AFTER - 1, 0])
    }))

  it.effect("a sync stopped under way refreshes nothing", () =>
    Effect.gen(function*() {
      const r = yield* run(2, STATISTICS_AFTER, (n, stop) => (n === STATISTICS_AFTER ? Deferred.succeed(stop, undefined) : Effect.void))
      assert.isTrue(r.result.stopped)
      assert.isAtLeast(r.result.changed, STATISTICS_AFTER)
      assert.strictEqual(r.refreshed, 0)
    }))

  it.effect("a refresh that fails (the connection lost) leaves the sync's result as it was", () =>
    Effect.gen(function*() {
      const failing = Effect.fail(new PgError({ reason: "connection", message: "injected: connection reset" }))
      const r = yield* run(1, STATISTICS_AFTER, () => Effect.void, { refresh: failing })
      assert.deepStrictEqual([r.result.changed, r.result.stopped, r.refreshed], [STATISTICS_AFTER, false, 1])
    }))
})
