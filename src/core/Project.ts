/**
 * project: committed ledger events → the row changes that bring the projection tables up to them.
 *
 * Pure and deterministic: every value comes from the events (their `seq`, `recorded_at` and payload), so the
 * live writer and a replay of the ledger produce the same rows, ids included. Events are folded per session in
 * `seq` order, so one batch of changes may stand for many events. Applying the same changes twice changes
 * nothing: every session-level write is guarded by `sessions.last_seq`, every insert is keyed.
 */
import { createHash } from "node:crypto"
import type { CommittedEvent, GoneKind, SessionUpsertedPayload } from "./Events.js"
import { canonicalInteger } from "./Snapshot.js"

export interface UserRow {
  readonly id: string
  readonly externalId: string
  readonly displayName: string
  readonly email: string | null
}

export interface SessionUpsertRow {
  /** `seq` of the session's first `session_upserted`: used only when the row is inserted. */
  readonly id: number
  /** `recorded_at` of that first `session_upserted`: used only when the row is inserted. */
  readonly firstSeenAt: string
  readonly redisSessionId: string
  readonly meta: SessionUpsertedPayload
  readonly createdByUserId: string | null
  /** `seq` of the upsert this row carries. */
  readonly seq: number
  readonly recordedAt: string
  readonly stamps: Stamps
}

export interface Stamps {
  readonly expiredAt: string | null
  readonly deletedAt: string | null
  readonly evictedAt: string | null
}

export interface StampRow {
  readonly redisSessionId: string
  readonly seq: number
  readonly stamps: Stamps
}

/**
 * The messages of `messages_appended` events are projected by PostgreSQL straight from the ledger rows (no
 * second copy of every message crosses the wire): these are the events to expand and how to map their
 * senders. A message's id is `seq * MESSAGES_PER_EVENT + its index in the event`.
 */
export interface AppendedMessages {
  /** `seq` of every `messages_appended` event in the batch. */
  readonly seqs: ReadonlyArray<number>
  /** External sender id → `users.id`, for every sender named by those events. */
  readonly senders: Readonly<Record<string, string>>
  /** How many messages the events hold. */
  readonly count: number
  /** How many of them each session's events hold. */
  readonly bySession: ReadonlyMap<string, number>
}

export interface TouchRow {
  readonly redisSessionId: string
  /** The last `seq` of the session in this batch. */
  readonly seq: number
  readonly recordedAt: string
  /** Hash of the last snapshot applied in this batch, or null when none was. */
  readonly snapshotHash: string | null
}

export interface RejectionRow {
  readonly redisSessionId: string
  readonly seq: number
  readonly snapshotHash: string | null
  readonly reason: string
  readonly recordedAt: string
}

export interface RowChanges {
  readonly users: ReadonlyArray<UserRow>
  readonly groups: ReadonlyArray<string>
  readonly participants: ReadonlyArray<readonly [groupId: string, userId: string]>
  readonly sessionUpserts: ReadonlyArray<SessionUpsertRow>
  readonly stamps: ReadonlyArray<StampRow>
  readonly appended: AppendedMessages
  readonly touches: ReadonlyArray<TouchRow>
  readonly rejections: ReadonlyArray<RejectionRow>
  /** Sessions accepted after a rejection: their `rejections` row goes if older than `seq`. */
  readonly accepted: ReadonlyArray<{ readonly redisSessionId: string; readonly seq: number }>
  readonly maxSeq: number
}

const SEEDED_NAMES: ReadonlyMap<string, string> = new Map([["1", "Default User"], ["2", "AI Assistant"]])

/**
 * `users.id` for an external id: the number itself when it is an integer, otherwise a negative id derived from
 * a hash of the external id (stable, and never clashing with a numeric one).
 */
export const userIdOf = (externalId: string): string => {
  const int = canonicalInteger(externalId)
  if (int !== undefined && int === externalId) return int
  const h = BigInt("0x" + createHash("sha256").update(externalId).digest("hex").slice(0, 15))
  return (-(h + 1n)).toString()
}

/** The placeholder user created for an unknown sender (DESIGN §3). */
export const placeholderUser = (externalId: string): UserRow => {
  const id = userIdOf(externalId)
  return {
    id,
    externalId,
    displayName: SEEDED_NAMES.get(externalId) ?? `User${externalId}`,
    email: id.startsWith("-") ? null : `user${id}@placeholder.invalid`
  }
}

export const DEFAULT_GROUP_NAME = "Default Group"

const noStamps: Stamps = { expiredAt: null, deletedAt: null, evictedAt: null }
const stamp = (stamps: Stamps, kind: GoneKind, at: string): Stamps =>
  kind === "expired"
    ? { ...stamps, expiredAt: at }
    : kind === "deleted"
    ? { ...stamps, deletedAt: at }
    : { ...stamps, evictedAt: at }

interface Fold {
  upsert: SessionUpsertRow | null
  firstUpsertSeq: number | null
  firstUpsertAt: string | null
  stamps: Stamps
  stampSeq: number | null
  touch: TouchRow | null
  rejection: RejectionRow | null
  acceptedSeq: number | null
}

/** Folds committed events (in `seq` order) into row changes. */
export const project = (events: ReadonlyArray<CommittedEvent>): RowChanges => {
  const users = new Map<string, UserRow>()
  const groups = new Set<string>()
  const participants = new Map<string, readonly [string, string]>()
  const appendedSeqs: Array<number> = []
  // A Map, not an object literal: a sender named "__proto__" would not be kept as a key of one.
  const senders = new Map<string, string>()
  const bySession = new Map<string, number>()
  let appendedCount = 0
  const folds = new Map<string, Fold>()
  let maxSeq = 0

  const addUser = (externalId: string | null, groupId: string | null): string | null => {
    if (externalId === null) return null
    let user = users.get(externalId)
    if (user === undefined) {
      user = placeholderUser(externalId)
      users.set(externalId, user)
    }
    if (groupId !== null) participants.set(`${groupId}/${user.id}`, [groupId, user.id])
    return user.id
  }

  for (const event of events) {
    maxSeq = Math.max(maxSeq, event.seq)
    const sid = event.sessionId
    let fold = folds.get(sid)
    if (fold === undefined) {
      fold = {
        upsert: null,
        firstUpsertSeq: null,
        firstUpsertAt: null,
        stamps: noStamps,
        stampSeq: null,
        touch: null,
        rejection: null,
        acceptedSeq: null
      }
      folds.set(sid, fold)
    }
    switch (event.type) {
      case "session_upserted": {
        const meta = event.payload
        if (meta.group_id !== null) groups.add(meta.group_id)
        fold.firstUpsertSeq ??= event.seq
        fold.firstUpsertAt ??= event.recordedAt
        fold.stamps = noStamps
        fold.stampSeq = null
        fold.upsert = {
          id: fold.firstUpsertSeq,
          firstSeenAt: fold.firstUpsertAt,
          redisSessionId: sid,
          meta,
          createdByUserId: addUser(meta.created_by, meta.group_id),
          seq: event.seq,
          recordedAt: event.recordedAt,
          stamps: noStamps
        }
        fold.touch = { redisSessionId: sid, seq: event.seq, recordedAt: event.recordedAt, snapshotHash: event.snapshotHash }
        fold.acceptedSeq = event.seq
        break
      }
      case "messages_appended": {
        const { group_id, messages: appended } = event.payload
        if (group_id !== null) groups.add(group_id)
        appendedSeqs.push(event.seq)
        appendedCount += appended.length
        bySession.set(sid, (bySession.get(sid) ?? 0) + appended.length)
        for (const m of appended) {
          const userId = addUser(m.sender, group_id)
          if (m.sender !== null && userId !== null) senders.set(m.sender, userId)
        }
        fold.touch = { redisSessionId: sid, seq: event.seq, recordedAt: event.recordedAt, snapshotHash: event.snapshotHash }
        fold.acceptedSeq = event.seq
        break
      }
      case "session_expired":
      case "session_deleted":
      case "session_evicted": {
        const kind: GoneKind = event.type === "session_expired"
          ? "expired"
          : event.type === "session_deleted"
          ? "deleted"
          : "evicted"
        fold.stamps = stamp(fold.stamps, kind, event.recordedAt)
        fold.stampSeq = event.seq
        fold.touch = {
          redisSessionId: sid,
          seq: event.seq,
          recordedAt: event.recordedAt,
          snapshotHash: fold.touch?.snapshotHash ?? null
        }
        break
      }
      case "snapshot_rejected": {
        fold.rejection = {
          redisSessionId: sid,
          seq: event.seq,
          snapshotHash: event.snapshotHash,
          reason: event.payload.reason,
          recordedAt: event.recordedAt
        }
        break
      }
      default: {
        const _exhaustive: never = event
        return _exhaustive
      }
    }
  }

  const sessionUpserts: Array<SessionUpsertRow> = []
  const stamps: Array<StampRow> = []
  const touches: Array<TouchRow> = []
  const rejections: Array<RejectionRow> = []
  const accepted: Array<{ redisSessionId: string; seq: number }> = []
  for (const [sid, fold] of folds) {
    if (fold.upsert !== null) {
      sessionUpserts.push({ ...fold.upsert, stamps: fold.stamps })
    } else if (fold.stampSeq !== null) {
      stamps.push({ redisSessionId: sid, seq: fold.stampSeq, stamps: fold.stamps })
    }
    if (fold.touch !== null) touches.push(fold.touch)
    if (fold.rejection !== null && (fold.acceptedSeq === null || fold.rejection.seq > fold.acceptedSeq)) {
      rejections.push(fold.rejection)
    } else if (fold.acceptedSeq !== null) {
      accepted.push({ redisSessionId: sid, seq: fold.acceptedSeq })
    }
  }
  return {
    users: Array.from(users.values()),
    groups: Array.from(groups),
    participants: Array.from(participants.values()),
    sessionUpserts,
    stamps,
    appended: { seqs: appendedSeqs, senders: Object.fromEntries(senders), count: appendedCount, bySession },
    touches,
    rejections,
    accepted,
    maxSeq
  }
}
