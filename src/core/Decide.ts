/**
 * decide: what a new observation of a session means for the ledger, given what the projection holds.
 * Pure and total; the caller loads the state under the session's lock and appends the events it returns.
 */
import { Either } from "effect"
import { hash as digest } from "node:crypto"
import {
  type AppendedMessage,
  goneEventType,
  type GoneKind,
  MESSAGES_PER_EVENT,
  type SessionUpsertedPayload,
  type SyncEvent
} from "./Events.js"
import { type KeyMemo, leadingHeld } from "./MessageKey.js"
import type { Rejection, SessionMeta, Snapshot } from "./Snapshot.js"

/** What the projection holds of one session, as far as deciding needs it. */
export interface ProjectedSession {
  readonly snapshotHash: string | null
  readonly metaHash: string | null
  /** `updated_at` in microseconds since the epoch, or null. */
  readonly updatedAtMicros: number | null
  readonly messageCount: number
  readonly gone: GoneKind | null
  readonly messageKeys: ReadonlySet<string>
  /** Keys computed before for this session, if the caller keeps them (see `MessageKey.KeyMemo`). */
  readonly keyMemo?: KeyMemo
}

export interface SessionState {
  /** The session as projected, or null when it was never synced. */
  readonly session: ProjectedSession | null
  /** Hash of the last rejected value, while the session stands rejected. */
  readonly rejectedHash: string | null
}

const NONE: ReadonlySet<string> = new Set()

export const initialState: SessionState = { session: null, rejectedHash: null }

export type Observation =
  | {
    readonly _tag: "Snapshot"
    readonly sessionId: string
    readonly hash: string
    /**
     * Decodes the value; `known` are the keys of messages the projection holds, which need no decoding beyond
     * their identity (see `decodeSnapshot`).
     */
    readonly decode: (known: ReadonlySet<string>, memo?: KeyMemo) => Either.Either<Snapshot, Rejection>
    /**
     * Offered the place to append of the session's memo before `hash` is read: an observation that hashes its
     * value only when asked may take the hash an append is checked against in the same pass
     * (`MessageKey.snapshotHashWithPrefix`), for `decode` to use.
     */
    readonly hashAlong?: (end: number, rest: Uint8Array) => void
    /**
     * An explicit retry: decide again even when the value is the standing rejection (the rejection may have
     * come from PostgreSQL, whose constraint has since been fixed).
     */
    readonly force?: boolean
    /** Bounded excerpt and full length of the raw value, for a rejection. */
    readonly excerpt: string
    readonly length: number
  }
  | { readonly _tag: "Gone"; readonly sessionId: string; readonly kind: GoneKind }

export type SnapshotObservation = Extract<Observation, { readonly _tag: "Snapshot" }>

/**
 * A copy of `o` with `changes`. An observation may be an instance whose methods and getters a spread would drop
 * (`Observe.observe` makes them so): copy one with this, never with `{ ...o }`.
 */
export const withChanges = (
  o: SnapshotObservation,
  changes: { readonly decode?: SnapshotObservation["decode"]; readonly excerpt?: string; readonly force?: boolean }
): SnapshotObservation => ({
  _tag: "Snapshot",
  sessionId: o.sessionId,
  hash: o.hash,
  decode: changes.decode ?? ((known, memo) => o.decode(known, memo)),
  // Read from `o` when read (an excerpt or a length may decode the value), unless given.
  get excerpt() {
    return changes.excerpt ?? o.excerpt
  },
  get length() {
    return o.length
  },
  ...(changes.force ?? o.force ? { force: true } : {})
})

/**
 * The metadata hash, per decoded metadata. A value decoded from its appended text keeps the metadata object of the
 * one before (see `Snapshot.AppendPoint`), so a live session's metadata is hashed once, not for every message.
 */
const metaHashes = new WeakMap<SessionMeta, string>()

const metaPayload = (snapshot: Snapshot): SessionUpsertedPayload => {
  const { meta, warnings } = snapshot
  const fields = {
    topic: meta.topic,
    group_id: meta.groupId,
    created_by: meta.createdBy,
    created_at: meta.createdAt?.iso ?? null,
    updated_at: meta.updatedAt?.iso ?? null,
    extra: meta.extra
  }
  let meta_hash = metaHashes.get(meta)
  if (meta_hash === undefined) {
    meta_hash = digest("sha256", JSON.stringify(fields), "hex").slice(0, 32)
    metaHashes.set(meta, meta_hash)
  }
  return warnings.length > 0 ? { v: 1, ...fields, meta_hash, warnings } : { v: 1, ...fields, meta_hash }
}

/**
 * No regression (DESIGN §4): a snapshot is older than the projection when its `updated_at` is earlier, or, with
 * equal or missing `updated_at`, when it has fewer messages than the projection holds and brings none it lacks.
 * A snapshot that brings new messages is no read from before the projection's: with fewer messages in all, the
 * app trimmed the oldest (a session capped at its last N messages), and its metadata is the newest there is.
 */
const isOlder = (snapshot: Snapshot, projected: ProjectedSession, bringsNew: boolean): boolean => {
  const at = snapshot.meta.updatedAt
  if (at !== null && projected.updatedAtMicros !== null && at.micros !== projected.updatedAtMicros) {
    return at.micros < projected.updatedAtMicros
  }
  return !bringsNew && snapshot.messages.length < projected.messageCount
}

/**
 * The events an observation adds to the ledger:
 * - a value whose hash equals the standing rejection, or the last synced value of a session that is neither
 *   rejected nor gone since: nothing;
 * - a value that cannot be a session: `snapshot_rejected`;
 * - a session: `session_upserted` when first seen, or, when not older than the projection, back after leaving
 *   Redis or changed; then `messages_appended` with every message whose key the projection does not hold yet, in
 *   snapshot order, numbered on from the projection's count;
 * - a key that left Redis: `session_<kind>`, once, for a session the projection knows.
 */
export const decide = (observation: Observation, state: SessionState): ReadonlyArray<SyncEvent> => {
  const { sessionId } = observation
  const projected = state.session
  if (observation._tag === "Gone") {
    if (projected === null || projected.gone === observation.kind) return []
    return [{ type: goneEventType(observation.kind), sessionId, snapshotHash: null, payload: { v: 1 } }]
  }
  const { hash } = observation
  if (hash === state.rejectedHash && observation.force !== true) return []
  // The same value as last synced changes nothing, unless the session has since been rejected or left Redis:
  // then it is back, and that must be recorded.
  if (hash === projected?.snapshotHash && state.rejectedHash === null && projected.gone === null) return []
  const decoded = observation.decode(projected?.messageKeys ?? NONE, projected?.keyMemo)
  if (Either.isLeft(decoded)) {
    return [{
      type: "snapshot_rejected",
      sessionId,
      snapshotHash: hash,
      payload: { v: 1, reason: decoded.left.reason, excerpt: observation.excerpt, length: observation.length }
    }]
  }
  const snapshot = decoded.right
  const events: Array<SyncEvent> = []
  const upsert = metaPayload(snapshot)
  // The leading messages held by position (a live write's, whose keys are its memo's) are not looked up.
  const fresh = projected === null
    ? snapshot.messages
    : snapshot.messages.slice(leadingHeld(projected.messageKeys, snapshot.messages)).filter((m) =>
      !projected.messageKeys.has(m.key)
    )
  // Keys are unique within a snapshot by construction (occurrence numbers). Two equal ones would be a defect in
  // message identity, and the projection would keep only one of the two messages: the value is rejected instead,
  // loudly, and the rest of the batch goes on.
  const keys = new Set<string>()
  for (const m of fresh) {
    if (keys.has(m.key)) {
      return [{
        type: "snapshot_rejected",
        sessionId,
        snapshotHash: hash,
        payload: {
          v: 1,
          reason: `two messages share the key ${m.key} (a defect in message identity: please report it)`,
          excerpt: observation.excerpt,
          length: observation.length
        }
      }]
    }
    keys.add(m.key)
  }
  // An older snapshot of a session that left Redis is a read from before it left, committed after (a reconcile
  // racing the live path): it adds its missing messages but neither rolls metadata back nor brings the session
  // back, so that the two orders of the same events end the same.
  const older = projected !== null && isOlder(snapshot, projected, fresh.length > 0)
  if (
    projected === null ||
    (!older && (projected.gone !== null || upsert.meta_hash !== projected.metaHash || fresh.length === 0))
  ) {
    events.push({ type: "session_upserted", sessionId, snapshotHash: hash, payload: upsert })
  }
  const base = projected?.messageCount ?? 0
  const appended: Array<AppendedMessage> = fresh.map((m, i) => ({
    key: m.key,
    ordinal: base + i,
    sender: m.sender,
    content: m.content,
    sent_at: m.sentAt?.iso ?? null,
    extra: m.extra
  }))
  for (let i = 0; i < appended.length; i += MESSAGES_PER_EVENT) {
    events.push({
      type: "messages_appended",
      sessionId,
      snapshotHash: hash,
      payload: { v: 1, group_id: snapshot.meta.groupId, messages: appended.slice(i, i + MESSAGES_PER_EVENT) }
    })
  }
  return events
}
