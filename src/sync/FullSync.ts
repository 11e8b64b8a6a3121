/**
 * Full sync: every session in Redis, read with SCAN and MGET page by page, skipped when its hash is the one
 * already synced (or rejected), decoded otherwise and written in batches, several in flight.
 */
import { Effect, Ref, Stream } from "effect"
import type { Observation } from "../core/Decide.js"
import type { Source } from "../core/Events.js"
import type { PgError } from "../pg/PgError.js"
import { SessionStore } from "../pg/SessionStore.js"
import type { RedisError } from "../redis/RedisError.js"
import { type RawSession, SessionSource } from "../redis/SessionSource.js"
import { hashOf, observe, weight } from "./Observe.js"
import { type WriteOptions, writeBatch } from "./Writer.js"

export interface FullSyncOptions extends WriteOptions {
  /** SCAN COUNT hint: keys per page. */
  readonly scanCount: number
  /** At most this many sessions in one transaction. */
  readonly batchSessions: number
  /** A batch closes once it holds this many messages. */
  readonly batchMessages: number
  /** Batches written at once, each on its own connection. */
  readonly writeConcurrency: number
}

export const defaultFullSyncOptions = (retry: WriteOptions["retry"]): FullSyncOptions => ({
  retry,
  scanCount: 1000,
  batchSessions: 500,
  batchMessages: 5000,
  writeConcurrency: 3
})

/** Running totals of a full sync. */
export interface SyncProgress {
  readonly scanned: number
  readonly unchanged: number
  readonly changed: number
  readonly rejected: number
  /** Keys that SCAN listed but were gone when read. */
  readonly vanished: number
  readonly events: number
  readonly messagesInserted: number
  readonly lastSeq: number
  readonly startedAt: number
}

export const zeroProgress = (startedAt: number): SyncProgress => ({
  scanned: 0,
  unchanged: 0,
  changed: 0,
  rejected: 0,
  vanished: 0,
  events: 0,
  messagesInserted: 0,
  lastSeq: 0,
  startedAt
})

/** Splits observations into batches of at most `sessions` sessions and about `messages` messages. */
export const toBatches = (
  observations: ReadonlyArray<Observation>,
  sessions: number,
  messages: number
): ReadonlyArray<ReadonlyArray<Observation>> => {
  const batches: Array<Array<Observation>> = []
  let current: Array<Observation> = []
  let weightSoFar = 0
  for (const o of observations) {
    current.push(o)
    weightSoFar += weight(o)
    if (current.length >= sessions || weightSoFar >= messages) {
      batches.push(current)
      current = []
      weightSoFar = 0
    }
  }
  if (current.length > 0) batches.push(current)
  return batches
}

/** Turns a page of reads into the observations that may change something, counting the rest. */
const screen = (page: ReadonlyArray<RawSession>, progress: Ref.Ref<SyncProgress>) =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const hashes = page.map(hashOf)
    const present = page.filter((_, i) => hashes[i] !== null)
    const standing = yield* store.standingHashes(present.map((r) => r.sessionId))
    const observations: Array<Observation> = []
    page.forEach((raw, i) => {
      const hash = hashes[i]!
      if (hash === null) return
      if (standing.get(raw.sessionId) === hash) return
      const o = observe(raw, hash)
      if (o !== null) observations.push(o)
    })
    const vanished = page.length - present.length
    yield* Ref.update(progress, (p) => ({
      ...p,
      scanned: p.scanned + page.length,
      vanished: p.vanished + vanished,
      unchanged: p.unchanged + present.length - observations.length
    }))
    return observations
  })

/**
 * Runs one full sync and returns its totals. `progress` is updated as batches commit, so a caller may show it.
 * Fails only when Redis or PostgreSQL stay unreachable beyond the retry schedule, or on an unexpected error.
 */
export const fullSync = (
  source: Source,
  options: FullSyncOptions,
  progress: Ref.Ref<SyncProgress>
): Effect.Effect<SyncProgress, PgError | RedisError, SessionSource | SessionStore> =>
  Effect.gen(function*() {
    const redis = yield* SessionSource
    yield* redis.scan(options.scanCount).pipe(
      Stream.mapEffect((ids) => redis.read(ids), { concurrency: 2 }),
      Stream.mapEffect((page) => screen(page, progress), { concurrency: 2 }),
      Stream.mapConcat((observations) => toBatches(observations, options.batchSessions, options.batchMessages)),
      Stream.mapEffect((batch) => writeBatch(batch, source, options), {
        concurrency: options.writeConcurrency,
        unordered: true
      }),
      Stream.runForEach((r) =>
        Ref.update(progress, (p) => ({
          ...p,
          changed: p.changed + r.changed - r.rejected,
          rejected: p.rejected + r.rejected,
          unchanged: p.unchanged + r.sessions - r.changed,
          events: p.events + r.events,
          messagesInserted: p.messagesInserted + r.messagesInserted,
          lastSeq: Math.max(p.lastSeq, r.lastSeq)
        }))
      )
    )
    return yield* Ref.get(progress)
  }).pipe(Effect.withSpan("FullSync.run"))
