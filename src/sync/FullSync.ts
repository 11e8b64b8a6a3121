/**
 * Full sync: every session in Redis, read with SCAN and MGET page by page, skipped when its hash is the one
 * the projection stands at, and otherwise decoded and written in batches, several in flight.
 *
 * Memory stays bounded whatever the number of keys: a page is only hashed when read (raw bytes, no decoding),
 * and a batch is decoded just before its transaction, so decoded sessions exist only for the batches in
 * flight.
 */
import { Deferred, Effect, Option, Ref, Stream } from "effect"
import type { Source } from "../core/Events.js"
import type { PgError } from "../pg/PgError.js"
import { SessionStore } from "../pg/SessionStore.js"
import type { RedisError } from "../redis/RedisError.js"
import { type RawSession, SessionSource } from "../redis/SessionSource.js"
import { decodeAhead, hashOf, observe } from "./Observe.js"
import { type WriteOptions, writeBatch } from "./Writer.js"

export interface FullSyncOptions extends WriteOptions {
  /** SCAN COUNT hint: keys per page. */
  readonly scanCount: number
  /** At most this many sessions in one transaction. */
  readonly batchSessions: number
  /** A batch closes once its raw values add up to this many bytes. */
  readonly batchBytes: number
  /** Batches written at once, each on its own connection. */
  readonly writeConcurrency: number
}

export const defaultFullSyncOptions = (retry: WriteOptions["retry"]): FullSyncOptions => ({
  retry,
  scanCount: 1000,
  batchSessions: 500,
  batchBytes: 1_000_000,
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
  /** Sessions the projection held as present whose key had left Redis: recorded as expired. */
  readonly departed: number
  readonly events: number
  readonly messagesInserted: number
  readonly lastSeq: number
  readonly startedAt: number
  /** Whether a stop cut the sync short (see `fullSync`). */
  readonly stopped: boolean
}

export const zeroProgress = (startedAt: number): SyncProgress => ({
  scanned: 0,
  unchanged: 0,
  changed: 0,
  rejected: 0,
  vanished: 0,
  departed: 0,
  events: 0,
  messagesInserted: 0,
  lastSeq: 0,
  startedAt,
  stopped: false
})

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

/** One line for a person: `12,000 scanned, 11,990 changed, …, 239,800 messages inserted (… sessions/s, … messages/s)`. */
export const describeProgress = (p: SyncProgress, now: number): string => {
  const secs = Math.max((now - p.startedAt) / 1000, 0.001)
  return `${fmt(p.scanned)} scanned, ${fmt(p.changed)} changed, ${fmt(p.unchanged)} unchanged, ` +
    `${fmt(p.rejected)} rejected, ${p.departed > 0 ? `${fmt(p.departed)} gone from Redis, ` : ""}` +
    `${fmt(p.messagesInserted)} messages inserted ` +
    `(${fmt(p.scanned / secs)} sessions/s, ${fmt(p.messagesInserted / secs)} messages/s)`
}

/** A read whose hash differs from the standing one: to be decoded and written. */
interface Changed {
  readonly raw: RawSession
  readonly hash: string
  /** No standing value at all: most likely a session PostgreSQL does not hold yet. */
  readonly unknown: boolean
}

const sizeOf = (c: Changed) => (c.raw.value?.length ?? 0) + 100

/**
 * Gathers items, as they come, into write batches that close at `maxItems` items or once their sizes add up to
 * `maxBytes`: a full sync's changed reads (`toBatches`: at most `SYNC_BATCH_SIZE` each, weighing their bytes and 100
 * more), and a live batch's reads (`Daemon`: no count, which the live batch bounds already, and only their bytes, so
 * that keys found gone weigh nothing).
 */
export const batcher = <A>(maxItems: number, maxBytes: number) => {
  let current: Array<A> = []
  let bytes = 0
  /** The open batch, now closed (possibly empty); a new one opens. */
  const close = (): Array<A> => {
    const full = current
    current = []
    bytes = 0
    return full
  }
  return {
    /** Adds `item`, weighing `size` bytes; returns the batch it closed, if it closed one. */
    add: (item: A, size: number): Array<A> | undefined => {
      current.push(item)
      bytes += size
      return current.length >= maxItems || bytes >= maxBytes ? close() : undefined
    },
    /** The open batch, unless empty; a new one opens. */
    rest: (): Array<A> | undefined => (current.length > 0 ? close() : undefined)
  }
}

/** Splits changed reads into batches of at most `sessions` sessions and about `bytes` bytes of raw values. */
export const toBatches = <A extends Changed>(
  items: ReadonlyArray<A>,
  sessions: number,
  bytes: number
): ReadonlyArray<ReadonlyArray<A>> => {
  const batches: Array<Array<A>> = []
  const b = batcher<A>(sessions, bytes)
  for (const item of items) {
    const full = b.add(item, sizeOf(item))
    if (full !== undefined) batches.push(full)
  }
  const rest = b.rest()
  if (rest !== undefined) batches.push(rest)
  return batches
}

/**
 * Keeps the reads of a page that may change something, counting the rest. `firstSync`: the projection held
 * nothing when the sync began, so no read is looked up (a session another writer adds meanwhile is still
 * decided under its lock, only decoded without need).
 */
const screen = (page: ReadonlyArray<RawSession>, progress: Ref.Ref<SyncProgress>, firstSync: boolean) =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const present: Array<Changed> = []
    for (const raw of page) {
      const hash = hashOf(raw)
      if (hash !== null) present.push({ raw, hash, unknown: false })
    }
    const standing = firstSync
      ? new Map<string, string>()
      : yield* store.standingHashes(present.map((c) => c.raw.sessionId))
    const changed = present.flatMap((c) => {
      const s = standing.get(c.raw.sessionId)
      return s === c.hash ? [] : [{ ...c, unknown: s === undefined }]
    })
    yield* Ref.update(progress, (p) => ({
      ...p,
      scanned: p.scanned + page.length,
      vanished: p.vanished + page.length - present.length,
      unchanged: p.unchanged + present.length - changed.length
    }))
    return changed
  })

/**
 * Pages read and screened at once, and pages of the departed-session sweep under way at once. Each page of a
 * full sync holds up to `scanCount` raw values (about 5 MB at the default 1,000 keys of the app's size).
 */
const READ_AHEAD = 3

/**
 * A sync that wrote at least this many sessions, and was not stopped, refreshes the statistics of the tables
 * sessions are looked up in (`SessionStore.refreshStatistics`, 0.15 s after 100,000 sessions). Right after a first
 * sync of 100,000 sessions, before autovacuum came round, the next sync over the same, unchanged data took
 * 3.1-3.4 s; analysed, 1.9-2.1 s.
 */
export const STATISTICS_AFTER = 1_000

/** `effect`, unless `halted` says a stop has come first: then `null`, for a `Stream.takeWhile(isSome)` to end on. */
const unlessHalted = <A, E, R>(halted: Effect.Effect<boolean>, effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(halted, (stopNow): Effect.Effect<A | null, E, R> => (stopNow ? Effect.succeed(null) : effect))

const isSome = <A>(a: A | null): a is A => a !== null

/**
 * Runs one full sync and returns its totals. `progress` is updated as batches commit, so a caller may show it.
 * Fails only when Redis or PostgreSQL stay unreachable beyond the retry schedule, or on an unexpected error. A sync
 * that wrote `STATISTICS_AFTER` sessions or more ends with `ANALYZE` (see there).
 *
 * Once `stop` is done, no new batch starts (a batch is looked at as it would start: the pages already read are not
 * written), the batches in flight finish and are counted, no further page read starts (the reads under way end
 * unwritten), no further page of the sweep of departed sessions starts, nothing is analysed, and the totals so far
 * are returned with `stopped`.
 */
export const fullSync = (
  source: Source,
  options: FullSyncOptions,
  progress: Ref.Ref<SyncProgress>,
  stop?: Deferred.Deferred<void>
): Effect.Effect<SyncProgress, PgError | RedisError, SessionSource | SessionStore> =>
  Effect.gen(function*() {
    const redis = yield* SessionSource
    const store = yield* SessionStore
    const firstSync = yield* store.isEmpty
    // Whether a stop has come; `cut` once the stop left something out (a page, a batch, the sweep).
    let cut = false
    const halted = stop === undefined
      ? Effect.succeed(false)
      : Effect.map(Deferred.isDone(stop), (stopNow) => (cut ||= stopNow))
    yield* redis.scan(options.scanCount).pipe(
      // Pages are read and screened READ_AHEAD at a time when the projection holds sessions already: one page's
      // values cross the network while another's are hashed and looked up. One at a time, a sync over unchanged
      // data waited on a round trip most of its time. A first sync is bound by its writes, and a page read ahead
      // would only wait for them in memory (about 5 MB each): it reads one page at a time, as before.
      Stream.flatMap((ids) =>
        Stream.fromEffect(unlessHalted(halted, Effect.flatMap(redis.read(ids), (page) => screen(page, progress, firstSync)))), {
        concurrency: firstSync ? 1 : READ_AHEAD,
        bufferSize: 1
      }),
      Stream.takeWhile(isSome),
      Stream.mapConcat((changed) => toBatches(changed, options.batchSessions, options.batchBytes)),
      Stream.mapEffect(
        (batch) =>
          unlessHalted(halted, Effect.suspend(() => {
            // New sessions are decoded here, before the transaction, so the lock and connection are held only
            // for the SQL; changed ones are decoded under the lock, knowing which messages are held already.
            const observations = batch.flatMap((c) => {
              const o = observe(c.raw, c.hash)
              if (o !== null && c.unknown) decodeAhead(o)
              return o ?? []
            })
            return writeBatch(observations, source, options)
          })),
        { concurrency: options.writeConcurrency, unordered: true }
      ),
      Stream.runForEach((r) =>
        r === null ? Effect.void : Ref.update(progress, (p) => ({
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
    if (!cut) yield* sweepDeparted(source, options, progress, halted)
    const done = yield* Ref.updateAndGet(progress, (p) => ({ ...p, stopped: cut }))
    if (!cut && done.changed + done.rejected + done.departed >= STATISTICS_AFTER) {
      // A failure here (the connection lost, say) leaves what the sync wrote as it is. A role that does not own the
      // tables is not refused: PostgreSQL skips them with a warning of its own, and autovacuum analyses them later.
      yield* store.refreshStatistics.pipe(
        Effect.catchAll((e) => Effect.logWarning(`could not refresh the projection's statistics (ANALYZE): ${e.message}`))
      )
    }
    return done
  }).pipe(Effect.withSpan("FullSync.run"))

/**
 * Sessions whose key left Redis while no event said so (pub/sub lost it, or keyspace notifications are off):
 * page through the sessions the projection holds as present, ask Redis which keys still exist (EXISTS, no
 * values), and record the missing ones as expired — sessions leave Redis by their TTL. Under the session's lock
 * `decide` records each departure once.
 */
const sweepDeparted = (
  source: Source,
  options: FullSyncOptions,
  progress: Ref.Ref<SyncProgress>,
  halted: Effect.Effect<boolean>
) =>
  Effect.gen(function*() {
    const redis = yield* SessionSource
    const store = yield* SessionStore
    // The next page of present sessions is fetched while the previous pages' keys are looked up in Redis. Once a
    // stop has come no page is fetched and no lookup starts, and the stream ends as pages do: the writes under way
    // finish (ending the stream with `takeWhile` would interrupt them).
    yield* Stream.paginateEffect("0", (after: string) =>
      Effect.map(
        unlessHalted(halted, store.present(after, options.scanCount)),
        (page) => [page ?? [], page === null || page.length < options.scanCount ? Option.none() : Option.some(page[page.length - 1]!.id)] as const
      )
    ).pipe(
      Stream.filter((page) => page.length > 0),
      Stream.flatMap((page) => Stream.fromEffect(unlessHalted(halted, Effect.gen(function*() {
        const exists = yield* redis.exists(page.map((s) => s.sessionId))
        const gone = page.filter((_, i) => !exists[i])
        if (gone.length === 0) return
        const result = yield* writeBatch(
          gone.map((s) => ({ _tag: "Gone", sessionId: s.sessionId, kind: "expired" }) as const),
          source,
          options
        )
        yield* Ref.update(progress, (p) => ({
          ...p,
          departed: p.departed + result.gone,
          events: p.events + result.events,
          lastSeq: Math.max(p.lastSeq, result.lastSeq)
        }))
      }))), { concurrency: READ_AHEAD, bufferSize: 1 }),
      Stream.runDrain
    )
  })
