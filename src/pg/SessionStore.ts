/**
 * The writer (DESIGN §2–§4): a batch of observations becomes ledger rows and their projection in ONE
 * transaction. Under a transaction-level advisory lock per session it loads what the projection holds, lets
 * `decide` choose the events, appends them to `sync_log` and applies `project` of exactly those events.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer } from "effect"
import { decide, initialState, type Observation, type ProjectedSession, type SessionState } from "../core/Decide.js"
import { HeldKeys, KeyMemo } from "../core/MessageKey.js"
import { type CommittedEvent, type GoneKind, ledgerRows, type Source, type SyncEvent } from "../core/Events.js"
import { project, type RowChanges } from "../core/Project.js"
import { applyChanges, MESSAGE_KEY_CONSTRAINT, sessionRowsOf } from "./Projection.js"
import { classify, type PgError, transaction } from "./PgError.js"
import { SessionCache } from "./SessionCache.js"

/**
 * The hash of the value a session stands at: its standing rejection's, or else its last synced one while it
 * has not left Redis. A value with this hash changes nothing, so a full sync may skip it without a lock.
 */
export type StandingHash = string

/** What one batch did. `changed` counts sessions that appended at least one event. */
export interface BatchResult {
  readonly sessions: number
  readonly changed: number
  readonly rejected: number
  readonly gone: number
  readonly events: number
  readonly messagesInserted: number
  readonly lastSeq: number
  /** The events appended, in `seq` order (for the caller's logs and metrics). */
  readonly committed: ReadonlyArray<CommittedEvent>
}

export const emptyBatch: BatchResult = {
  sessions: 0,
  changed: 0,
  rejected: 0,
  gone: 0,
  events: 0,
  messagesInserted: 0,
  lastSeq: 0,
  committed: []
}

/** The source of every event of a batch, or of each session's events. */
export type SourceOf = Source | ((sessionId: string) => Source)

const sourceFn = (source: SourceOf): (sessionId: string) => Source =>
  typeof source === "function" ? source : () => source

export class SessionStore extends Context.Tag("redis-pg-sync/pg/SessionStore")<SessionStore, {
  /** Whether the projection holds no session and no rejection yet (a first sync: nothing can be unchanged). */
  readonly isEmpty: Effect.Effect<boolean, PgError>
  /** The standing hash of each given session that has one. */
  readonly standingHashes: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, StandingHash>, PgError>
  /**
   * Decides, appends and projects one batch in one transaction. When several observations name one session,
   * the last wins. Fails with a `PgError`; the transaction is then rolled back whole.
   */
  readonly apply: (observations: ReadonlyArray<Observation>, source: SourceOf) => Effect.Effect<BatchResult, PgError>
  /**
   * Refreshes the planner's statistics of the tables sessions are looked up in (`sessions`, `rejections`): after a
   * sync that wrote many sessions into tables PostgreSQL has not analysed yet, its lookups were planned blind.
   */
  readonly refreshStatistics: Effect.Effect<void, PgError>
  /** A page of sessions the projection believes are still in Redis, by `id` after `afterId`. */
  readonly present: (
    afterId: string,
    limit: number
  ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly sessionId: string }>, PgError>
}>() {}

/** A unique violation of a message key: a message the projection held although its keys did not show it. */
const isDuplicateMessage = (e: PgError): boolean => {
  const cause = e.cause as { readonly code?: unknown; readonly constraint?: unknown } | undefined
  return cause?.code === "23505" && cause.constraint === MESSAGE_KEY_CONSTRAINT
}

/**
 * How long a cached session must have gone unused before a new one may take its room (see `SessionCache`): longer
 * than an overloaded pipeline takes to come round to a session again.
 */
const MIN_IDLE_MS = 60_000

/**
 * Memoised messages held at most, over all sessions (about 75 bytes each with its key). In `bench/live`'s burst
 * (630,000 keys), a bound of 400,000 (on the key cache of the time, before the memos vouched for keys) made about a
 * third of the sessions reload all their keys from PostgreSQL for every write (up to 240 ms of a transaction's
 * time), and the last message came 7.6–10 s or more after the writes; with 700,000, 4.8–6.6 s after.
 */
const KEY_MEMO_LIMIT = 700_000

/** What a memo's place to append counts for against `KEY_MEMO_LIMIT`, in memoised messages (about 75 bytes each). */
const APPEND_POINT_WEIGHT = 4

/** A session's memo, and the projection state at which its keys were last seen committed. */
interface MemoEntry {
  readonly memo: KeyMemo
  /** `sessions.last_seq` when the memo's keys were committed, and the memo's `version` then (-1: never). */
  vouchedSeq: number
  vouchedVersion: number
}

/**
 * Per session, the keys of its last decoded snapshot (`MessageKey.KeyMemo`): a live update re-reads a whole
 * session, and serialising and hashing every old message's identity again was the largest part of decoding it.
 * A key depends only on the identity, so a memo never goes stale as a shortcut to keys.
 *
 * A memo also vouches for the projection. Once the transaction that wrote its snapshot has committed, every key it
 * holds is in `messages` as of the session's `last_seq` then; while the projection's `last_seq` is still that one
 * and the memo has taken no other snapshot since (its `version`), the writer needs no key from PostgreSQL for the
 * messages the memo holds. Loading every key of a changed session for each new message was the largest part of a
 * live write; a separate cache of those key sets was a fifth of the daemon's heap.
 *
 * At most `limit` messages are held, counting one more per session (see `SessionCache` for which sessions); a
 * session turned away gets a memo of its own that is not kept. A rebuild swaps in other tables with the same last
 * seqs but possibly other messages (that is what a rebuild is for): the store forgets every memo then (`clear`).
 */
const makeKeyMemos = (limit: number) => {
  const entries = new SessionCache<MemoEntry>(limit, MIN_IDLE_MS)
  return {
    clear: () => entries.clear(),
    /** Where the memo of `id` takes appends, if it has a memo and that place; the memo is not touched. */
    pointOf: (id: string) => entries.peek(id)?.memo.appendPoint,
    of: (id: string): MemoEntry => {
      const held = entries.get(id)
      if (held !== undefined) return held
      const entry: MemoEntry = { memo: new KeyMemo(), vouchedSeq: -1, vouchedVersion: -1 }
      entries.set(id, entry, 1)
      return entry
    },
    /** Accounts for what the memos of `ids` grew by. */
    settle: (ids: Iterable<string>) => {
      // An entry counts one more than its keys (a session with no message still takes room), and a few more with a
      // place to append (`Snapshot.AppendPoint`: the value's hash and metadata, about 300 bytes).
      for (const id of ids) {
        entries.reweigh(id, (e) => e.memo.size + 1 + (e.memo.appendPoint === undefined ? 0 : APPEND_POINT_WEIGHT))
      }
    }
  }
}

/** The keys `entry`'s memo vouches are in the projection while the session's `last_seq` is `lastSeq`. */
const vouched = (entry: MemoEntry, lastSeq: number): ReadonlyArray<string> | undefined =>
  entry.vouchedSeq === lastSeq && entry.vouchedVersion === entry.memo.version ? entry.memo.keys : undefined

/**
 * The keys of messages the projection holds of one session at `lastSeq`: all of them, or when `partial`, at least
 * those of the messages of its memo's last snapshot.
 */
interface KnownKeys {
  readonly lastSeq: number
  /** The `sessions` table's oid they were known in (a rebuild swaps in others with the same last seqs). */
  readonly projection: string
  readonly keys: HeldKeys
  readonly partial: boolean
}

/** A memo that took a session's snapshot in a transaction, with its `version` then and the session's `last_seq` before. */
interface Decoded {
  readonly id: string
  readonly entry: MemoEntry
  readonly version: number
  readonly lastSeq: number
}

/**
 * After the commit of `committed`: each memo of `decoded` that has taken no other snapshot since (another
 * transaction of this process may have decoded the session once the lock was free) vouches for its keys as of the
 * session's last seq (its last event's, or the one it had when the batch appended nothing for it).
 */
const vouch = (committed: ReadonlyArray<CommittedEvent>, decoded: ReadonlyArray<Decoded>) => {
  const last = new Map<string, number>()
  for (const e of committed) last.set(e.sessionId, e.seq)
  for (const d of decoded) {
    if (d.entry.memo.version !== d.version) continue
    d.entry.vouchedSeq = last.get(d.id) ?? d.lastSeq
    d.entry.vouchedVersion = d.version
  }
}

/** Users, groups and memberships remembered as committed, at most (about 100 bytes each). */
const SHARED_ROWS_LIMIT = 200_000

/** The shared-rows cache is forgotten this often, so that a row deleted by hand comes back when next named. */
const SHARED_ROWS_MAX_AGE_MS = 5 * 60_000

/**
 * The users, groups and group memberships this process has seen committed in the projection. Every batch names
 * the senders and groups of its messages, and inserting them again (`ON CONFLICT DO NOTHING`) was three of a live
 * batch's statements, and in a full sync 4.7 s of PostgreSQL's time and a wait on each other batch's uncommitted
 * membership rows. Those rows are only ever inserted, never changed, so a row seen committed is skipped. A rebuild
 * swaps in other tables (the store forgets everything then, `clear`). A row deleted behind the daemon's back makes
 * a batch that refers to it by a foreign key (a session's group or creator, a new membership) fail; the store then
 * forgets everything and writes the batch again. A user named only as a sender (`messages.sender_user_id` has no
 * foreign key) or a membership comes back when next named after the cache is forgotten, every `maxAgeMs`.
 */
export const makeSharedRows = (limit: number, maxAgeMs: number, now: () => number = Date.now) => {
  const users = new Set<string>()
  const groups = new Set<string>()
  const memberships = new Set<string>()
  let since = now()
  const clear = () => {
    users.clear()
    groups.clear()
    memberships.clear()
    since = now()
  }
  return {
    clear,
    /** `changes` without the shared rows already committed. */
    unseen: (changes: RowChanges): RowChanges => {
      if (now() - since > maxAgeMs) clear()
      return {
        ...changes,
        users: changes.users.filter((u) => !users.has(u.id)),
        groups: changes.groups.filter((g) => !groups.has(g)),
        participants: changes.participants.filter(([g, u]) => !memberships.has(`${g}/${u}`))
      }
    },
    /** Call after the commit of a transaction that wrote (or skipped as present) these rows. */
    remember: (changes: RowChanges) => {
      if (users.size + groups.size + memberships.size > limit) clear()
      for (const u of changes.users) users.add(u.id)
      for (const g of changes.groups) groups.add(g)
      for (const [g, u] of changes.participants) memberships.add(`${g}/${u}`)
    }
  }
}

/**
 * Calls `forget` whenever the `sessions` table's oid is not the one last seen: what a store remembers of the
 * projection (key memos, shared rows) was seen in one set of tables, and a rebuild swaps in others.
 */
export const forgetOnSwap = (forget: () => void) => {
  let projection: string | null = null
  return (table: string) => {
    if (table === projection) return
    forget()
    projection = table
  }
}

/** A foreign key violation: a row the batch refers to is not there. */
const isForeignKeyViolation = (e: PgError): boolean => (e.cause as { readonly code?: unknown } | undefined)?.code === "23503"

interface StateRow {
  readonly id: string
  readonly snapshot_hash: string | null
  readonly meta_hash: string | null
  readonly updated_at_micros: string | null
  readonly message_count: number | null
  readonly gone: GoneKind | null
  readonly rejected_hash: string | null
  /** Whether the session has a `rejections` row (its hash may be null). */
  readonly rejected: boolean
  readonly exists: boolean
  readonly last_seq: string | null
  /** oid of the `sessions` table read (changes when a rebuild swaps the tables). */
  readonly projection: string
}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const keyMemos = makeKeyMemos(KEY_MEMO_LIMIT)
  const shared = makeSharedRows(SHARED_ROWS_LIMIT, SHARED_ROWS_MAX_AGE_MS)
  const bindTo = forgetOnSwap(() => {
    keyMemos.clear()
    shared.clear()
  })

  const standingHashes = (ids: ReadonlyArray<string>) =>
    sql<{ id: string; hash: string }>`
      SELECT x.id, COALESCE(r.snapshot_hash,
               CASE WHEN s.expired_at IS NULL AND s.deleted_at IS NULL AND s.evicted_at IS NULL
                    THEN s.snapshot_hash END) AS hash
      FROM ${sessionRowsOf(sql, ids)}
      WHERE s.id IS NOT NULL OR r.redis_session_id IS NOT NULL`.pipe(
      Effect.map((rows) => new Map(rows.flatMap((r) => (r.hash === null ? [] : [[r.id, r.hash] as const])))),
      Effect.mapError(classify)
    )

  const isEmpty = sql<{ empty: boolean }>`
    SELECT NOT EXISTS (SELECT 1 FROM sessions) AND NOT EXISTS (SELECT 1 FROM rejections) AS empty`.pipe(
    Effect.map((rows) => rows[0]!.empty),
    Effect.mapError(classify)
  )

  const loadStates = (observations: ReadonlyArray<Observation>, carried: ReadonlyMap<string, KnownKeys>) =>
    Effect.gen(function*() {
      const ids = observations.map((o) => o.sessionId)
      const rows = yield* sql<StateRow>`
        SELECT x.id, s.snapshot_hash, s.meta_hash, s.message_count, s.id IS NOT NULL AS exists, s.last_seq::text,
               (extract(epoch FROM s.updated_at) * 1000000)::bigint::text AS updated_at_micros,
               CASE WHEN greatest(s.expired_at, s.deleted_at, s.evicted_at) IS NULL THEN NULL
                    WHEN greatest(s.expired_at, s.deleted_at, s.evicted_at) = s.expired_at THEN 'expired'
                    WHEN greatest(s.expired_at, s.deleted_at, s.evicted_at) = s.deleted_at THEN 'deleted'
                    ELSE 'evicted' END AS gone,
               r.snapshot_hash AS rejected_hash, r.redis_session_id IS NOT NULL AS rejected,
               'sessions'::regclass::oid::text AS projection
        FROM ${sessionRowsOf(sql, ids)}`
      if (rows.length > 0) bindTo(rows[0]!.projection)
      // Message keys are needed for the sessions that exist and that `decide` will look into: all but those
      // whose value is the one last synced while nothing happened since (not rejected, not gone, not forced).
      const byId = new Map(rows.map((r) => [r.id, r]))
      const changed = new Set(
        observations.flatMap((o) => {
          const row = byId.get(o.sessionId)
          if (o._tag !== "Snapshot" || row === undefined || !row.exists) return []
          const unchanged = row.snapshot_hash === o.hash && row.rejected_hash === null && row.gone === null && o.force !== true
          return unchanged ? [] : [o.sessionId]
        })
      )
      // The keys of each changed session: those an earlier attempt of the same batch knew at the same last seq in
      // the same tables, or vouched for by its memo, or else loaded. Vouched keys are complete when they are as
      // many as the projection counts; fewer, and the projection also holds messages the memo's snapshot no
      // longer had (trimmed away), which `recheck` asks PostgreSQL about; more, and a message the memo vouches for
      // is not there (deleted by hand): they are not trusted.
      const known = new Map<string, KnownKeys>()
      const memos = new Map<string, MemoEntry>()
      const toLoad: Array<string> = []
      for (const id of changed) {
        const row = byId.get(id)!
        const lastSeq = Number(row.last_seq)
        const entry = keyMemos.of(id)
        memos.set(id, entry)
        const before = carried.get(id)
        if (before?.lastSeq === lastSeq && before.projection === row.projection) {
          known.set(id, before)
          continue
        }
        const count = Number(row.message_count)
        const held = vouched(entry, lastSeq)
        const trusted = held !== undefined && held.length <= count ? held : undefined
        if (trusted === undefined) toLoad.push(id)
        known.set(id, {
          lastSeq,
          projection: row.projection,
          keys: new HeldKeys(trusted ?? []),
          partial: trusted !== undefined && trusted.length < count
        })
      }
      if (toLoad.length > 0) {
        const keyRows = yield* sql<{ id: string; message_key: string }>`
          SELECT s.redis_session_id AS id, m.message_key
          FROM sessions s JOIN messages m ON m.session_id = s.id
          WHERE s.redis_session_id = ANY(${toLoad}::text[])`
        for (const r of keyRows) known.get(r.id)!.keys.add(r.message_key)
      }
      const states = new Map<string, SessionState>()
      for (const r of rows) {
        const session: ProjectedSession | null = r.exists
          ? {
            snapshotHash: r.snapshot_hash,
            metaHash: r.meta_hash,
            updatedAtMicros: r.updated_at_micros === null ? null : Number(r.updated_at_micros),
            messageCount: Number(r.message_count ?? 0),
            gone: r.gone,
            messageKeys: known.get(r.id)?.keys ?? new Set(),
            ...(changed.has(r.id) ? { keyMemo: memos.get(r.id)!.memo } : {})
          }
          : null
        states.set(r.id, { session, rejectedHash: r.rejected_hash })
      }
      const rejected = new Set(rows.flatMap((r) => (r.rejected ? [r.id] : [])))
      return { states, known, memos, rejected }
    })

  /**
   * The messages `decide` took as new in sessions whose keys were known only in part (see `loadStates`) that the
   * projection holds after all: those keys are added to the sessions' sets (the ones their states hold), and those
   * sessions decided again.
   */
  const recheck = (
    latest: ReadonlyArray<Observation>,
    decided: ReadonlyArray<ReadonlyArray<SyncEvent>>,
    known: ReadonlyMap<string, KnownKeys>,
    stateOf: (o: Observation) => SessionState
  ) =>
    Effect.gen(function*() {
      const ids: Array<string> = []
      const asked: Array<string> = []
      latest.forEach((o, i) => {
        if (known.get(o.sessionId)?.partial !== true) return
        for (const e of decided[i]!) {
          if (e.type !== "messages_appended") continue
          for (const m of e.payload.messages) {
            ids.push(o.sessionId)
            asked.push(m.key)
          }
        }
      })
      if (asked.length === 0) return decided
      const held = yield* sql<{ id: string; key: string }>`
        SELECT k.id, k.key
        FROM unnest(${ids}::text[], ${asked}::text[]) AS k(id, key)
        JOIN sessions s ON s.redis_session_id = k.id
        JOIN messages m ON m.session_id = s.id AND m.message_key = k.key`
      if (held.length === 0) return decided
      for (const r of held) known.get(r.id)!.keys.add(r.key)
      const again = new Set(held.map((r) => r.id))
      return latest.map((o, i) => again.has(o.sessionId) ? decide(o, stateOf(o)) : decided[i]!)
    })

  const append = (events: ReadonlyArray<SyncEvent>, source: (sessionId: string) => Source) =>
    Effect.gen(function*() {
      const json = ledgerRows(events, source)
      // One statement draws the seqs and appends (drawn first in a statement of their own, they were a round trip
      // of every batch). Rows are inserted in the events' order, so the seqs, drawn as each row is inserted,
      // ascend in it. jsonb_array_elements, not json_to_recordset: the latter re-parses every field by name and
      // was 2–3 times slower on ledger-sized payloads.
      const rows = yield* sql<{ seq: string; at: string }>`
        INSERT INTO sync_log (session_id, event_type, payload, source, snapshot_hash)
        SELECT e->>'session_id', e->>'event_type', e->'payload', e->>'source', e->>'snapshot_hash'
        FROM jsonb_array_elements(${json}::jsonb) WITH ORDINALITY AS x(e, i)
        ORDER BY i
        RETURNING seq::text, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`
      const seqs = rows.map((r) => Number(r.seq)).sort((a, b) => a - b)
      const recordedAt = rows[0]!.at
      return events.map((e, i): CommittedEvent => ({ ...e, seq: seqs[i]!, recordedAt }))
    })

  const apply = (observations: ReadonlyArray<Observation>, source: SourceOf) => {
    const latest = Array.from(new Map(observations.map((o) => [o.sessionId, o])).values())
    if (latest.length === 0) return Effect.succeed(emptyBatch)
    // The memos that took this batch's snapshots, to vouch for once it has committed (see `makeKeyMemos`).
    let decoded: Array<Decoded> = []
    // The keys known in the last attempt: a retry that finds a session at the same last seq knows the same ones, so
    // a message written behind the writer's back (the duplicate a retry is for) is still appended to the ledger.
    let carried: ReadonlyMap<string, KnownKeys> = new Map()
    let written: RowChanges | undefined
    const attempt = (exact: boolean) =>
      transaction(sql, Effect.gen(function*() {
        written = undefined
        decoded = []
        yield* sql`SELECT sync_lock_sessions(${latest.map((o) => o.sessionId)}::text[])`
        const { known, memos, rejected, states } = yield* loadStates(latest, carried)
        carried = known
        const before = new Map(Array.from(memos, ([id, entry]) => [id, entry.memo.version]))
        const stateOf = (o: Observation) => states.get(o.sessionId) ?? initialState
        const decided = yield* recheck(latest, latest.map((o) => decide(o, stateOf(o))), known, stateOf)
        // A memo that took a snapshot now holds its keys, all in the projection once this commits, unless the value
        // was rejected (then none of them is).
        latest.forEach((o, i) => {
          const entry = memos.get(o.sessionId)
          if (entry === undefined || entry.memo.version === before.get(o.sessionId)) return
          if (decided[i]!.some((e) => e.type === "snapshot_rejected")) return
          decoded.push({ id: o.sessionId, entry, version: entry.memo.version, lastSeq: known.get(o.sessionId)!.lastSeq })
        })
        const events = decided.flat()
        if (events.length === 0) return { ...emptyBatch, sessions: latest.length }
        const committed = yield* append(events, sourceFn(source))
        const changes = project(committed)
        // An accepted session clears its rejection; one that had none under its lock has none to clear (only this
        // writer, under that lock, records one): a DELETE less per batch, every batch of a first sync.
        const accepted = changes.accepted.filter((a) => rejected.has(a.redisSessionId))
        const messagesInserted = yield* applyChanges(sql, shared.unseen({ ...changes, accepted }), { exact })
        written = changes
        const changedSessions = new Set(committed.map((e) => e.sessionId))
        return {
          sessions: latest.length,
          changed: changedSessions.size,
          rejected: committed.filter((e) => e.type === "snapshot_rejected").length,
          gone: committed.filter((e) => e.type.startsWith("session_") && e.type !== "session_upserted").length,
          events: committed.length,
          messagesInserted,
          lastSeq: committed[committed.length - 1]!.seq,
          committed
        } satisfies BatchResult
      }))
    // `decide` appends only messages whose keys the projection does not hold, so the exact write is the rule.
    // A duplicate means the projection holds a message its keys did not show (rows written behind the daemon's
    // back): the batch is written again, skipping messages already there, as a replay would.
    // A foreign key failure means a user or group the shared-rows cache vouched for is gone (deleted by hand): the
    // cache is forgotten and the same attempt made again, naming every user and group.
    const healed = (exact: boolean) =>
      attempt(exact).pipe(
        Effect.catchIf(isForeignKeyViolation, (e) =>
          Effect.logWarning(
            `a user or group this batch refers to is not in the projection (${e.message}); writing the batch ` +
              "again with every user and group it names"
          ).pipe(Effect.zipRight(Effect.suspend(() => {
            shared.clear()
            return attempt(exact)
          }))))
      )
    // Before the transaction, so that no lock waits on hashing: a value that appends to its memo's snapshot is
    // hashed in one pass with the bytes its decoding checks (`Observation.hashAlong`).
    const hashAlong = Effect.sync(() => {
      for (const o of latest) {
        if (o._tag !== "Snapshot" || o.hashAlong === undefined) continue
        const point = keyMemos.pointOf(o.sessionId)
        if (point !== undefined) o.hashAlong(point.end, point.rest)
      }
    })
    return hashAlong.pipe(
      Effect.zipRight(healed(true)),
      Effect.catchIf(isDuplicateMessage, (e) =>
        Effect.logWarning(
          `a message of this batch was already in the projection (${e.message}); writing the batch again, ` +
            "skipping the messages already there"
        ).pipe(Effect.zipRight(healed(false)))),
      // Committed: the memos vouch for their keys as of each session's new last seq (never before the commit).
      Effect.tap((result) =>
        Effect.sync(() => {
          vouch(result.committed, decoded)
          if (written !== undefined) shared.remember(written)
        })
      ),
      Effect.ensuring(Effect.sync(() => keyMemos.settle(latest.map((o) => o.sessionId)))),
      Effect.withSpan("SessionStore.apply")
    )
  }

  const present = (afterId: string, limit: number) =>
    sql<{ id: string; sessionId: string }>`
      SELECT id::text AS id, redis_session_id AS "sessionId" FROM sessions
      WHERE id > ${afterId}::bigint AND expired_at IS NULL AND deleted_at IS NULL AND evicted_at IS NULL
      ORDER BY sessions.id LIMIT ${limit}`.pipe(Effect.mapError(classify))

  const refreshStatistics = sql`ANALYZE sessions, rejections`.pipe(Effect.asVoid, Effect.mapError(classify))

  return SessionStore.of({ isEmpty, standingHashes, apply, refreshStatistics, present })
})

/** The PostgreSQL store; needs a `SqlClient` whose search path is the projection's schema. */
export const layer = Layer.effect(SessionStore, make)
