/**
 * The read-only PostgreSQL queries behind the HTTP API: the ledger head, a gap-safe page of the ledger, the
 * standing rejections, a probe. (They belong with the other SQL in `src/pg/`; they are here only because this
 * slice of work could add files under `src/http/` alone.)
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { classify, type PgError } from "../pg/PgError.js"

export interface LedgerHead {
  readonly seq: number
  readonly recordedAt: string
}

/** The newest ledger row (its seq and transaction time), none when the ledger is empty. */
export const ledgerHead: Effect.Effect<Option.Option<LedgerHead>, PgError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ seq: string; recorded_at: string }>`
    SELECT seq::text AS seq, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS recorded_at
    FROM sync_log l ORDER BY l.seq DESC LIMIT 1`
  return Option.map(Option.fromNullable(rows[0]), (r) => ({ seq: Number(r.seq), recordedAt: r.recorded_at }))
}).pipe(Effect.mapError(classify))

export interface LedgerRow {
  readonly seq: number
  readonly txId: string
  readonly sessionId: string
  readonly eventType: string
  readonly source: string
  readonly snapshotHash: string | null
  readonly recordedAt: string
  readonly payload: unknown
}

/**
 * Up to `limit` ledger rows committed after the row `after` (0: from the start), gap-safely (DESIGN §2).
 *
 * `seq` is drawn before commit, so concurrent writers commit out of seq order: reading `seq > after` could step
 * over a row committed late, forever. Instead rows are read in (tx_id, seq) order and only from transactions
 * that ended before every transaction still running began (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`):
 * no row can ever appear before the position of a row already read. The position of row `after` is its
 * (tx_id, seq); `none` when there is no such row. Rows therefore come in commit order, not strictly seq order.
 */
export const readLedger = (
  after: number,
  limit: number
): Effect.Effect<Option.Option<ReadonlyArray<LedgerRow>>, PgError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let txId = "0"
    if (after > 0) {
      const at = yield* sql<{ tx_id: string }>`SELECT tx_id::text AS tx_id FROM sync_log WHERE seq = ${after}::bigint`
      if (at.length === 0) return Option.none()
      txId = at[0]!.tx_id
    }
    const rows = yield* sql<{
      seq: string
      tx_id: string
      session_id: string
      event_type: string
      source: string
      snapshot_hash: string | null
      recorded_at: string
      payload: unknown
    }>`
      SELECT seq::text AS seq, tx_id::text AS tx_id, session_id, event_type, source, snapshot_hash,
             to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS recorded_at, payload
      FROM sync_log l
      WHERE (l.tx_id, l.seq) > (${txId}::xid8, ${after}::bigint)
        AND l.tx_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY l.tx_id, l.seq
      LIMIT ${limit}`
    return Option.some(rows.map((r) => ({
      seq: Number(r.seq),
      txId: r.tx_id,
      sessionId: r.session_id,
      eventType: r.event_type,
      source: r.source,
      snapshotHash: r.snapshot_hash,
      recordedAt: r.recorded_at,
      payload: r.payload
    })))
  }).pipe(Effect.mapError(classify))

export interface RejectionRow {
  readonly sessionId: string
  readonly reason: string
  readonly rejectedAt: string
  readonly seq: number
  readonly snapshotHash: string | null
  readonly excerpt: string | null
  readonly length: number | null
}

/** Standing rejections by session id after `after`, with the excerpt their ledger event kept; and their total. */
export const listRejections = (
  after: string | undefined,
  limit: number
): Effect.Effect<{ readonly rows: ReadonlyArray<RejectionRow>; readonly total: number }, PgError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      session_id: string
      reason: string
      rejected_at: string
      seq: string
      snapshot_hash: string | null
      excerpt: string | null
      length: number | null
    }>`
      SELECT r.redis_session_id AS session_id, r.reason, r.seq::text AS seq, r.snapshot_hash,
             to_char(r.rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS rejected_at,
             l.payload->>'excerpt' AS excerpt, (l.payload->>'length')::int AS length
      FROM rejections r LEFT JOIN sync_log l ON l.seq = r.seq
      WHERE ${after ?? null}::text IS NULL OR r.redis_session_id > ${after ?? null}::text
      ORDER BY r.redis_session_id
      LIMIT ${limit}`
    const [count] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM rejections`
    return {
      rows: rows.map((r) => ({
        sessionId: r.session_id,
        reason: r.reason,
        rejectedAt: r.rejected_at,
        seq: Number(r.seq),
        snapshotHash: r.snapshot_hash,
        excerpt: r.excerpt,
        length: r.length
      })),
      total: Number(count?.n ?? 0)
    }
  }).pipe(Effect.mapError(classify))

/** The standing rejection of one session, if any. */
export const standingRejection = (
  sessionId: string
): Effect.Effect<Option.Option<{ readonly seq: number; readonly reason: string }>, PgError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ seq: string; reason: string }>`
      SELECT seq::text AS seq, reason FROM rejections WHERE redis_session_id = ${sessionId}`
    return Option.map(Option.fromNullable(rows[0]), (r) => ({ seq: Number(r.seq), reason: r.reason }))
  }).pipe(Effect.mapError(classify))

/** `SELECT 1`: PostgreSQL answers. */
export const ping: Effect.Effect<void, PgError, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`SELECT 1`
).pipe(Effect.asVoid, Effect.mapError(classify))
