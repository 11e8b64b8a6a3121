/**
 * The dirty-key set of the live pipeline (DESIGN §4): the session ids that may have changed since they were last
 * written, each with the latest hint of what happened to it. Marking is synchronous and O(1), so it can be called
 * straight from a Redis pub/sub handler, which must never block.
 *
 * Memory is bounded by `maxPending` distinct ids. Marking a new id past that drops the whole set, counts an
 * overflow and reports it to the caller, who schedules a reconcile scan: nothing is lost, the scan covers every
 * key. Ids handed out by `take` are "in flight" until `release`: marking one meanwhile keeps it dirty, but `take`
 * skips it, so one session is never in two batches at once.
 */
import type { GoneKind } from "../core/Events.js"
import { Effect } from "effect"

export type { GoneKind }

/** What a mark says about a session: written (`changed`) or gone. Only a hint: the writer always reads the key. */
export type Hint = "changed" | GoneKind

/** One session of a batch, with the latest hint marked for it. */
export interface DirtyEntry {
  readonly sessionId: string
  readonly hint: Hint
}

/**
 * What a mark did: `added` a new dirty id, `coalesced` into an id already dirty (its hint replaced), or
 * `overflow`: the set was full, so it was dropped and restarted with this id alone.
 */
export type MarkResult = "added" | "coalesced" | "overflow"

export interface DirtyKeysOptions {
  /** At most this many distinct dirty ids are held (in-flight ids that were not marked again do not count). */
  readonly maxPending: number
}

export interface DirtyKeys {
  /** Marks a session dirty; the latest hint wins. Synchronous, never blocks, never fails. */
  readonly mark: (sessionId: string, hint: Hint) => MarkResult
  /**
   * Takes up to `max` dirty entries that are not in flight, oldest mark first, and puts them in flight. They leave
   * the set; marking them again before `release` makes them dirty again (for a later batch).
   */
  readonly take: (max: number) => ReadonlyArray<DirtyEntry>
  /** Ends the flight of these ids; those marked again meanwhile become takeable. */
  readonly release: (sessionIds: Iterable<string>) => void
  /** Distinct dirty ids, including those waiting for their in-flight batch to end. */
  readonly size: () => number
  /** Dirty ids that `take` would hand out now (not in flight). */
  readonly ready: () => number
  /** Ids in flight. */
  readonly inFlight: () => number
  /** Overflows so far. */
  readonly overflows: () => number
  /** Clock time (millis) of the oldest mark among the ready ids, `undefined` when none is ready. */
  readonly oldestReadyAt: () => number | undefined
  /**
   * Clock time (millis) of the oldest change not written yet: dirty, or taken and still in flight; `undefined`
   * when there is none. How far the pipeline is behind is the time since then.
   */
  readonly oldestUnwrittenAt: () => number | undefined
}

interface Entry {
  hint: Hint
  /** When the id became dirty; later marks of a dirty id do not move it. */
  readonly markedAt: number
}

/** A dirty-key set reading mark times from `now` (millis). Prefer `make`, which uses the Effect `Clock`. */
export const unsafeMake = (options: DirtyKeysOptions, now: () => number): DirtyKeys => {
  if (!(options.maxPending >= 1)) throw new RangeError(`maxPending must be at least 1, got ${options.maxPending}`)
  // Insertion order is mark order: an id keeps its place while dirty and is deleted when taken.
  const entries = new Map<string, Entry>()
  // In flight, with when the change they carry was first marked.
  const flying = new Map<string, number>()
  // Dirty ids that are also in flight.
  let blocked = 0
  let overflows = 0

  const add = (sessionId: string, hint: Hint) => {
    entries.set(sessionId, { hint, markedAt: now() })
    if (flying.has(sessionId)) blocked++
  }

  return {
    mark: (sessionId, hint) => {
      const entry = entries.get(sessionId)
      if (entry !== undefined) {
        // The key is read anyway; the hint only says how it left if the read finds it missing. A "changed" that
        // follows a departure (the app publishing after its DEL, the pre-expiry sweep) must not make a deleted or
        // evicted session pass for expired.
        if (hint !== "changed" || entry.hint === "changed") entry.hint = hint
        return "coalesced"
      }
      if (entries.size >= options.maxPending) {
        entries.clear()
        blocked = 0
        overflows++
        add(sessionId, hint)
        return "overflow"
      }
      add(sessionId, hint)
      return "added"
    },
    take: (max) => {
      const batch: Array<DirtyEntry> = []
      if (max <= 0) return batch
      for (const [sessionId, entry] of entries) {
        if (flying.has(sessionId)) continue
        batch.push({ sessionId, hint: entry.hint })
        entries.delete(sessionId)
        flying.set(sessionId, entry.markedAt)
        if (batch.length >= max) break
      }
      return batch
    },
    release: (sessionIds) => {
      for (const sessionId of sessionIds) {
        if (flying.delete(sessionId) && entries.has(sessionId)) blocked--
      }
    },
    size: () => entries.size,
    ready: () => entries.size - blocked,
    inFlight: () => flying.size,
    overflows: () => overflows,
    oldestReadyAt: () => {
      for (const [sessionId, entry] of entries) {
        if (!flying.has(sessionId)) return entry.markedAt
      }
      return undefined
    },
    oldestUnwrittenAt: () => {
      // The first entry is the oldest dirty one (insertion order is mark order).
      let oldest: number | undefined = entries.values().next().value?.markedAt
      for (const markedAt of flying.values()) if (oldest === undefined || markedAt < oldest) oldest = markedAt
      return oldest
    }
  }
}

/** A dirty-key set whose mark times come from the current `Clock` (the `TestClock` in tests). */
export const make = (options: DirtyKeysOptions): Effect.Effect<DirtyKeys> =>
  Effect.map(Effect.clock, (clock) => unsafeMake(options, () => clock.unsafeCurrentTimeMillis()))
