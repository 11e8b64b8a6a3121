/**
 * Ledger events (DESIGN §2). Payloads are self-contained — replay never needs Redis — and use the JSON field
 * names stored in `sync_log.payload`. `v` versions the payload shape.
 */

/** Where the daemon learned of a change (`sync_log.source`). */
export type Source = "keyspace" | "channel" | "reconcile" | "api" | "startup"

/** How a key left Redis. */
export type GoneKind = "expired" | "deleted" | "evicted"

export interface SessionUpsertedPayload {
  readonly v: 1
  readonly topic: string | null
  readonly group_id: string | null
  readonly created_by: string | null
  readonly created_at: string | null
  readonly updated_at: string | null
  readonly extra: Readonly<Record<string, unknown>> | null
  /** Hash of the fields above: lets `decide` see a metadata change without loading the metadata. */
  readonly meta_hash: string
  readonly warnings?: ReadonlyArray<string>
}

export interface AppendedMessage {
  readonly key: string
  readonly ordinal: number
  readonly sender: string | null
  readonly content: string | null
  readonly sent_at: string | null
  readonly extra: Readonly<Record<string, unknown>> | null
}

export interface MessagesAppendedPayload {
  readonly v: 1
  /** The session's group when the messages were seen: senders become its participants. */
  readonly group_id: string | null
  readonly messages: ReadonlyArray<AppendedMessage>
}

export interface SessionGonePayload {
  readonly v: 1
}

export interface SnapshotRejectedPayload {
  readonly v: 1
  readonly reason: string
  /** The first characters of the raw value, for a person to look at. */
  readonly excerpt: string
  /** Length of the raw value in characters. */
  readonly length: number
}

export type SyncEvent =
  | { readonly type: "session_upserted"; readonly sessionId: string; readonly snapshotHash: string; readonly payload: SessionUpsertedPayload }
  | { readonly type: "messages_appended"; readonly sessionId: string; readonly snapshotHash: string; readonly payload: MessagesAppendedPayload }
  | { readonly type: "session_expired" | "session_deleted" | "session_evicted"; readonly sessionId: string; readonly snapshotHash: null; readonly payload: SessionGonePayload }
  | { readonly type: "snapshot_rejected"; readonly sessionId: string; readonly snapshotHash: string | null; readonly payload: SnapshotRejectedPayload }

export type EventType = SyncEvent["type"]

export const goneEventType = (kind: GoneKind): "session_expired" | "session_deleted" | "session_evicted" =>
  kind === "expired" ? "session_expired" : kind === "deleted" ? "session_deleted" : "session_evicted"

/** An event as committed to the ledger: its position and the transaction time. */
export type CommittedEvent = SyncEvent & {
  readonly seq: number
  /** `recorded_at`, ISO-8601 as PostgreSQL returned it. */
  readonly recordedAt: string
}

/** At most this many messages go into one `messages_appended` event; message ids are `seq * this + index`. */
export const MESSAGES_PER_EVENT = 10_000

/**
 * The ledger rows of `events`, as the one JSON parameter `SessionStore` appends them with (bench/tools/instructions
 * counts the same).
 */
export const ledgerRows = (events: ReadonlyArray<SyncEvent>, source: (sessionId: string) => Source): string =>
  JSON.stringify(events.map((e) => ({
    session_id: e.sessionId,
    event_type: e.type,
    payload: e.payload,
    snapshot_hash: e.snapshotHash,
    source: source(e.sessionId)
  })))
