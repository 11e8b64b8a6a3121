import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Ref, Schedule, Stream } from "effect"
import { PgError } from "../../src/pg/PgError.js"
import { emptyBatch, SessionStore } from "../../src/pg/SessionStore.js"
import { SessionSource } from "../../src/redis/SessionSource.js"
import { defaultFullSyncOptions, fullSync, STATISTICS_AFTER, zeroProgress } from "../../src/sync/FullSync.js"

/**
 * A full sync over in-memory stand-ins: `pages` SCAN pages of `perPage` keys, each key a small session, every batch
 * one session (so a page is several batches), written by a store that counts the batches it was given and calls
 * `onApply` with their number.
 */
const run = (
  pages: number,
  perPage: number,
  onApply: (n: number, stop: Deferred.Deferred<void>) => Effect.Effect<void>,
  stopFirst = false,
  refresh: Effect.Effect<void, PgError> = Effect.void
) =>
  Effect.gen(function*() {
    const stop = yield* Deferred.make<void>()
    if (stopFirst) yield* Deferred.succeed(stop, undefined)
    let applied = 0
    let read = 0
    let readAfterStop = 0
    let swept = 0
    let refreshed = 0
    const source = SessionSource.of({
      scan: () =>
        Stream.fromIterable(Array.from({ length: pages }, (_, p) => Array.from({ length: perPage }, (_, i) => `s${p}-${i}`))),
      read: (ids) =>
        Effect.map(Deferred.isDone(stop), (stopped) => {
          read += ids.length
          if (stopped) readAfterStop += ids.length
          return ids.map((id) => ({ sessionId: id, value: Buffer.from(`{"topic":"${id}"}`), redisType: "string" }))
        }),
      exists: (ids) => Effect.succeed(ids.map(() => true))
    })
    const store = SessionStore.of({
      isEmpty: Effect.succeed(true),
      standingHashes: () => Effect.succeed(new Map()),
      apply: (observations) =>
        Effect.gen(function*() {
          applied++
          yield* onApply(applied, stop)
          return { ...emptyBatch, sessions: observations.length, changed: observations.length }
        }),
      refreshStatistics: Effect.suspend(() => {
        refreshed++
        return refresh
      }),
      present: () =>
        Effect.sync(() => {
          swept++
          return []
        })
    })
    const options = { ...defaultFullSyncOptions(Schedule.stop), batchSessions: 1, writeConcurrency: 3 }
    const progress = yield* Ref.make(zeroProgress(0))
    const result = yield* fullSync("api", options, progress, stop).pipe(
      Effect.provideService(SessionSource, source),
      Effect.provideService(SessionStore, store)
    )
    return { result, applied, read, readAfterStop, swept, refreshed }
  })

describe("FullSync.fullSync with a stop", () => {
  it.effect("without a stop it writes every batch and sweeps", () =>
    Effect.gen(function*() {
      const r = yield* run(3, 5, () => Effect.void)
      assert.deepStrictEqual([r.applied, r.read, r.swept, r.result.changed, r.result.stopped], [15, 15, 1, 15, false])
    }))

  it.effect("stopped before it starts, it writes nothing, reads no page and does not sweep", () =>
    Effect.gen(function*() {
      const r = yield* run(3, 5, () => Effect.void, true)
      assert.deepStrictEqual([r.applied, r.read, r.swept, r.result.stopped], [0, 0, 0, true])
    }))

  it.effect("stopped during its first write, it starts no other batch, not even of a page already read, and reads no page", () =>
    Effect.gen(function*() {
      // The stop comes while the first batch is written; the batches started alongside it (at most the
      // concurrency) finish and are counted, and none starts after.
      const r = yield* run(3, 5, (n, stop) => (n === 1 ? Effect.zipRight(Deferred.succeed(stop, undefined), Effect.yieldNow()) : Effect.void))
      assert.isAtMost(r.applied, 3)
      assert.strictEqual(r.result.changed, r.applied)
      // Pages are read ahead of the writers, but none once the stop has come.
      assert.isAtLeast(r.read, 5)
      assert.strictEqual(r.readAfterStop, 0)
      assert.strictEqual(r.swept, 0)
      assert.isTrue(r.result.stopped)
    }))

  it.effect("without a stop it writes every batch, sweeps, and refreshes no statistics for a few sessions", () =>
    Effect.gen(function*() {
      const r = yield* run(3, 5, () => Effect.void)
      assert.strictEqual(r.refreshed, 0)
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

  it.effect("a refresh that fails leaves the sync's result as it was", () =>
    Effect.gen(function*() {
      const failing = Effect.fail(new PgError({ reason: "other", message: "injected: must be owner of table sessions" }))
      const r = yield* run(1, STATISTICS_AFTER, () => Effect.void, false, failing)
      assert.deepStrictEqual([r.result.changed, r.result.stopped, r.refreshed], [STATISTICS_AFTER, false, 1])
    }))
})
