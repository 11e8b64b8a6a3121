/**
 * Test data helpers on the real servers: put session documents into Redis under the test's prefix, read the
 * projection and the ledger back.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Ref } from "effect"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { defaultFullSyncOptions, fullSync, type FullSyncOptions, zeroProgress } from "../../src/sync/FullSync.js"
import { TestEnvTag, testWriteOptions } from "./Servers.js"

/** SETs a session document (an object is JSON-encoded, a string is stored as is). */
export const put = (id: string, doc: unknown) =>
  Effect.gen(function*() {
    const { prefix } = yield* TestEnvTag
    const value = typeof doc === "string" ? doc : JSON.stringify(doc)
    yield* RedisClient.use("SET", (c) => c.set(prefix + id, value))
  })

export const del = (id: string) =>
  Effect.gen(function*() {
    const { prefix } = yield* TestEnvTag
    yield* RedisClient.use("DEL", (c) => c.del(prefix + id))
  })

/** A full sync with test-friendly options. */
export const syncAll = (options: Partial<FullSyncOptions> = {}) =>
  Effect.gen(function*() {
    const progress = yield* Ref.make(zeroProgress(0))
    return yield* fullSync("reconcile", { ...defaultFullSyncOptions(testWriteOptions.retry), ...options }, progress)
  })

/** Every projection table of `schema` (default: the connection's), rows ordered by key: equal dumps mean equal tables. */
export const dumpTablesOf = (schema?: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const q = (table: string, order: string) =>
      sql.unsafe(`SELECT * FROM ${schema === undefined ? "" : `"${schema}".`}${table} ORDER BY ${order}`)
    return {
      users: yield* q("users", "id"),
      groups: yield* q("groups", "id"),
      group_participants: yield* q("group_participants", "group_id, user_id"),
      sessions: yield* q("sessions", "id"),
      messages: yield* q("messages", "id"),
      rejections: yield* q("rejections", "redis_session_id"),
      projection_state: yield* q("projection_state", "id")
    }
  })

export const dumpTables = dumpTablesOf()

export interface LedgerRow {
  readonly seq: number
  readonly session_id: string
  readonly event_type: string
  readonly payload: any
  readonly source: string
}

export const ledger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<LedgerRow>`SELECT seq::int AS seq, session_id, event_type, payload, source FROM sync_log ORDER BY seq`
  return rows
})

/**
 * Waits until every committed ledger row is visible to a gap-safe reader (DESIGN §2): xmin is cluster-wide, so a
 * transaction of another test file running in parallel holds such readers back until it ends. Uses the real clock.
 */
export const ledgerSettled = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  for (let attempt = 0; attempt < 400; attempt++) {
    const [row] = yield* sql<{ settled: boolean }>`
      SELECT coalesce(max(tx_id) < pg_snapshot_xmin(pg_current_snapshot()), true) AS settled FROM sync_log`
    if (row!.settled) return
    yield* Effect.sleep("25 millis")
  }
  return yield* Effect.dieMessage("the ledger did not settle within 10 s: a transaction somewhere stays open")
})

export const messagesOf = (redisSessionId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ ordinal: number; content: string | null; sender_user_id: string | null; sent_at: Date | null; message_key: string }>`
      SELECT m.ordinal, m.content, m.sender_user_id, m.sent_at, m.message_key
      FROM messages m JOIN sessions s ON s.id = m.session_id
      WHERE s.redis_session_id = ${redisSessionId} ORDER BY m.ordinal`
  })

/**
 * The invariants that must hold after any sync, finished or not: every session's `message_count` equals its
 * rows, every message in a ledger payload has exactly one row, `projection_state.last_seq` is the ledger's
 * last seq.
 */
export const assertConsistent = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const counts = yield* sql<{ bad: string }>`
    SELECT count(*)::text AS bad FROM sessions s
    WHERE s.message_count <> (SELECT count(*) FROM messages m WHERE m.session_id = s.id)`
  const ledgerMessages = yield* sql<{ n: string }>`
    SELECT COALESCE(sum(jsonb_array_length(payload->'messages')), 0)::text AS n
    FROM sync_log WHERE event_type = 'messages_appended'`
  const rows = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM messages`
  const state = yield* sql<{ last: string; max: string }>`
    SELECT (SELECT last_seq FROM projection_state)::text AS last, COALESCE((SELECT max(seq) FROM sync_log), 0)::text AS max`
  return {
    sessionsWithWrongCount: Number(counts[0]!.bad),
    ledgerMessages: Number(ledgerMessages[0]!.n),
    messageRows: Number(rows[0]!.n),
    projectionLastSeq: Number(state[0]!.last),
    ledgerLastSeq: Number(state[0]!.max)
  }
})
