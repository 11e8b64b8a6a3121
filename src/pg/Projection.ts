/**
 * Writes `RowChanges` (from `core/Project.ts`) to the projection tables with set-based SQL: one statement per
 * table, whatever the number of rows, each row array sent as one PostgreSQL array parameter (`unnest`).
 * Runs inside the caller's transaction; idempotent (see `core/Project.ts`).
 */
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { RowChanges } from "../core/Project.js"
import { DEFAULT_GROUP_NAME } from "../core/Project.js"

const json = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v))

/** Applies the changes; returns how many message rows were inserted. */
export const applyChanges = (sql: SqlClient.SqlClient, changes: RowChanges) =>
  Effect.gen(function*() {
    const { users, groups, participants, sessionUpserts, stamps, messages, touches, rejections, accepted } = changes
    if (users.length > 0) {
      yield* sql`
        INSERT INTO users (id, external_id, display_name, email)
        SELECT * FROM unnest(${users.map((u) => u.id)}::bigint[], ${users.map((u) => u.externalId)}::text[],
                             ${users.map((u) => u.displayName)}::text[], ${users.map((u) => u.email)}::text[])
        ON CONFLICT DO NOTHING`
    }
    if (groups.length > 0) {
      yield* sql`
        INSERT INTO groups (id, name)
        SELECT g, ${DEFAULT_GROUP_NAME} FROM unnest(${groups}::bigint[]) AS g
        ON CONFLICT DO NOTHING`
    }
    if (participants.length > 0) {
      yield* sql`
        INSERT INTO group_participants (group_id, user_id)
        SELECT * FROM unnest(${participants.map((p) => p[0])}::bigint[], ${participants.map((p) => p[1])}::bigint[])
        ON CONFLICT DO NOTHING`
    }
    if (sessionUpserts.length > 0) {
      const rows = sessionUpserts
      yield* sql`
        INSERT INTO sessions (id, redis_session_id, topic, group_id, created_by_user_id, started_at, updated_at,
                              extra, meta_hash, first_seen_at, synced_at, expired_at, deleted_at, evicted_at, last_seq)
        SELECT id, rsid, topic, group_id, created_by, started_at, updated_at, extra, meta_hash, at, at,
               expired_at, deleted_at, evicted_at, seq
        FROM unnest(
          ${rows.map((r) => r.id)}::bigint[], ${rows.map((r) => r.redisSessionId)}::text[],
          ${rows.map((r) => r.meta.topic)}::text[], ${rows.map((r) => r.meta.group_id)}::bigint[],
          ${rows.map((r) => r.createdByUserId)}::bigint[], ${rows.map((r) => r.meta.created_at)}::timestamptz[],
          ${rows.map((r) => r.meta.updated_at)}::timestamptz[], ${rows.map((r) => json(r.meta.extra))}::jsonb[],
          ${rows.map((r) => r.meta.meta_hash)}::text[], ${rows.map((r) => r.recordedAt)}::timestamptz[],
          ${rows.map((r) => r.stamps.expiredAt)}::timestamptz[], ${rows.map((r) => r.stamps.deletedAt)}::timestamptz[],
          ${rows.map((r) => r.stamps.evictedAt)}::timestamptz[], ${rows.map((r) => r.seq)}::bigint[]
        ) AS r(id, rsid, topic, group_id, created_by, started_at, updated_at, extra, meta_hash, at,
               expired_at, deleted_at, evicted_at, seq)
        ON CONFLICT (redis_session_id) DO UPDATE SET
          topic = EXCLUDED.topic, group_id = EXCLUDED.group_id, created_by_user_id = EXCLUDED.created_by_user_id,
          started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at, extra = EXCLUDED.extra,
          meta_hash = EXCLUDED.meta_hash, synced_at = EXCLUDED.synced_at, expired_at = EXCLUDED.expired_at,
          deleted_at = EXCLUDED.deleted_at, evicted_at = EXCLUDED.evicted_at, last_seq = EXCLUDED.last_seq
        WHERE sessions.last_seq < EXCLUDED.last_seq`
    }
    if (stamps.length > 0) {
      yield* sql`
        UPDATE sessions s SET
          expired_at = COALESCE(d.expired_at, s.expired_at),
          deleted_at = COALESCE(d.deleted_at, s.deleted_at),
          evicted_at = COALESCE(d.evicted_at, s.evicted_at)
        FROM unnest(
          ${stamps.map((r) => r.redisSessionId)}::text[], ${stamps.map((r) => r.seq)}::bigint[],
          ${stamps.map((r) => r.stamps.expiredAt)}::timestamptz[], ${stamps.map((r) => r.stamps.deletedAt)}::timestamptz[],
          ${stamps.map((r) => r.stamps.evictedAt)}::timestamptz[]
        ) AS d(rsid, seq, expired_at, deleted_at, evicted_at)
        WHERE s.redis_session_id = d.rsid AND s.last_seq < d.seq`
    }
    let inserted = 0
    if (messages.length > 0) {
      const rows = yield* sql<{ inserted: string }>`
        WITH ins AS (
          INSERT INTO messages (id, session_id, message_key, ordinal, sender_user_id, content, sent_at, extra, seq)
          SELECT m.id, s.id, m.key, m.ordinal, m.sender, m.content, m.sent_at, m.extra, m.seq
          FROM unnest(
            ${messages.map((m) => m.id)}::bigint[], ${messages.map((m) => m.redisSessionId)}::text[],
            ${messages.map((m) => m.key)}::text[], ${messages.map((m) => m.ordinal)}::int[],
            ${messages.map((m) => m.senderUserId)}::bigint[], ${messages.map((m) => m.content)}::text[],
            ${messages.map((m) => m.sentAt)}::timestamptz[], ${messages.map((m) => json(m.extra))}::jsonb[],
            ${messages.map((m) => m.seq)}::bigint[]
          ) AS m(id, rsid, key, ordinal, sender, content, sent_at, extra, seq)
          JOIN sessions s ON s.redis_session_id = m.rsid
          ON CONFLICT (message_key) DO NOTHING
          RETURNING session_id
        ), counts AS (
          SELECT session_id, count(*)::int AS n FROM ins GROUP BY session_id
        ), bump AS (
          UPDATE sessions s SET message_count = s.message_count + c.n FROM counts c WHERE s.id = c.session_id
        )
        SELECT COALESCE(sum(n), 0)::text AS inserted FROM counts`
      inserted = Number(rows[0]?.inserted ?? 0)
    }
    if (touches.length > 0) {
      yield* sql`
        UPDATE sessions s SET last_seq = d.seq, synced_at = d.at, snapshot_hash = COALESCE(d.hash, s.snapshot_hash)
        FROM unnest(
          ${touches.map((t) => t.redisSessionId)}::text[], ${touches.map((t) => t.seq)}::bigint[],
          ${touches.map((t) => t.recordedAt)}::timestamptz[], ${touches.map((t) => t.snapshotHash)}::text[]
        ) AS d(rsid, seq, at, hash)
        WHERE s.redis_session_id = d.rsid AND s.last_seq <= d.seq`
    }
    if (rejections.length > 0) {
      yield* sql`
        INSERT INTO rejections (redis_session_id, snapshot_hash, reason, seq, rejected_at)
        SELECT * FROM unnest(
          ${rejections.map((r) => r.redisSessionId)}::text[], ${rejections.map((r) => r.snapshotHash)}::text[],
          ${rejections.map((r) => r.reason)}::text[], ${rejections.map((r) => r.seq)}::bigint[],
          ${rejections.map((r) => r.recordedAt)}::timestamptz[])
        ON CONFLICT (redis_session_id) DO UPDATE SET snapshot_hash = EXCLUDED.snapshot_hash,
          reason = EXCLUDED.reason, seq = EXCLUDED.seq, rejected_at = EXCLUDED.rejected_at
        WHERE rejections.seq < EXCLUDED.seq`
    }
    if (accepted.length > 0) {
      yield* sql`
        DELETE FROM rejections r
        USING unnest(${accepted.map((a) => a.redisSessionId)}::text[], ${accepted.map((a) => a.seq)}::bigint[])
          AS d(rsid, seq)
        WHERE r.redis_session_id = d.rsid AND r.seq < d.seq`
    }
    yield* sql`UPDATE projection_state SET last_seq = GREATEST(last_seq, ${changes.maxSeq})`
    return inserted
  })
