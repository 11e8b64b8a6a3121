/**
 * Replaying the ledger (DESIGN §3, Rebuild): `sync_log` rows read back as committed events, folded by the same
 * `project` and written by the same `applyChanges` as the live writer, into the projection tables of another
 * schema. The target schema comes first in the transaction's search path and the ledger's schema second, so
 * the projection's unqualified names resolve to the target's tables and `sync_log` to the live ledger.
 *
 * Which rows a replay reads is said with PostgreSQL snapshots, not seq ranges: a writer draws its seqs before
 * it commits, so "every seq up to N" can still grow after it was read. The rows of transactions visible in a
 * snapshot are a fixed set once the snapshot is taken; the rows of transactions not visible in it are exactly
 * the rest. Per session, events commit in seq order (the writer holds the session's lock from drawing its seqs
 * to its commit), so every event of a session visible in a snapshot precedes every one that is not.
 */
import { SqlClient } from "@effect/sql"
import { createHash } from "node:crypto"
import { Effect } from "effect"
import type { CommittedEvent } from "../core/Events.js"
import { project } from "../core/Project.js"
import { MAX_IDENTIFIER_BYTES, projectionMigrations, quoteIdent } from "./Database.js"
import { classify, type PgError, transaction } from "./PgError.js"
import { applyChanges } from "./Projection.js"

/** The projection's tables, referenced before referencing, with the columns that identify a row. */
export const PROJECTION_TABLES = [
  { name: "users", key: ["id"] },
  { name: "groups", key: ["id"] },
  { name: "group_participants", key: ["group_id", "user_id"] },
  { name: "sessions", key: ["id"] },
  { name: "messages", key: ["id"] },
  { name: "rejections", key: ["redis_session_id"] },
  { name: "projection_state", key: ["id"] }
] as const

export type ProjectionTable = (typeof PROJECTION_TABLES)[number]["name"]

export { quoteIdent }

/**
 * `{base}_{suffix}`, within PostgreSQL's 63 bytes: when too long, `base` is shortened and followed by a hash of
 * it, so that the name stays distinct from `base` itself (a cut `{schema}_rebuild` could BE the live schema) and
 * from the names derived from other bases.
 */
export const derivedName = (base: string, suffix: string): string => {
  const full = `${base}_${suffix}`
  if (Buffer.byteLength(full) <= MAX_IDENTIFIER_BYTES) return full
  const hash = createHash("sha256").update(base).digest("hex").slice(0, 8)
  let head = base
  while (head.length > 0 && Buffer.byteLength(`${head}_${hash}_${suffix}`) > MAX_IDENTIFIER_BYTES) head = head.slice(0, -1)
  return `${head}_${hash}_${suffix}`
}

/** Which ledger rows to read. Every condition given must hold. */
export interface EventFilter {
  /** Rows of transactions visible in this snapshot (`pg_snapshot` text). */
  readonly visibleIn?: string
  /** Rows of transactions not visible in this snapshot. */
  readonly notVisibleIn?: string
  /** Rows with `seq <= untilSeq`. */
  readonly untilSeq?: number
}

/** The schema the connection's unqualified names resolve to: the ledger's (`PG_SCHEMA`). */
export const ledgerSchema: Effect.Effect<string, PgError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ schema: string }>`SELECT current_schema() AS schema`
  return row!.schema
}).pipe(Effect.mapError(classify))

/** `pg_current_snapshot()`, as text: every transaction committed before now is visible in it. */
export const currentSnapshot: Effect.Effect<string, PgError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ snapshot: string }>`SELECT pg_current_snapshot()::text AS snapshot`
  return row!.snapshot
}).pipe(Effect.mapError(classify))

/**
 * The first transaction id this server has not given out (as of the statement's snapshot): every transaction of
 * its own that a statement can see is below it. A `tx_id` at or above it comes with a ledger restored from another
 * cluster (`pg_dump`, logical replication) whose counter was ahead; such rows were all committed before any
 * snapshot taken here, so they count as visible in every one. Read as not visible, they were skipped by the
 * rebuild's first pass and replayed last, under the swap's lock and out of seq order: sessions got other ids.
 */
const SERVER_XMAX = "pg_snapshot_xmax(pg_current_snapshot())"

const conditions = (sql: SqlClient.SqlClient, filter: EventFilter) => {
  const parts = [sql`true`]
  if (filter.visibleIn !== undefined) {
    const visible = sql`pg_visible_in_snapshot(tx_id, ${filter.visibleIn}::pg_snapshot)`
    parts.push(sql`(${visible} OR tx_id >= ${sql.literal(SERVER_XMAX)})`)
  }
  if (filter.notVisibleIn !== undefined) {
    // Not visible means begun at or after the snapshot's xmin, and given out by this server: the bounds let the
    // (tx_id, seq) index find them.
    parts.push(sql`tx_id >= pg_snapshot_xmin(${filter.notVisibleIn}::pg_snapshot)`)
    parts.push(sql`tx_id < ${sql.literal(SERVER_XMAX)}`)
    parts.push(sql`NOT pg_visible_in_snapshot(tx_id, ${filter.notVisibleIn}::pg_snapshot)`)
  }
  if (filter.untilSeq !== undefined) parts.push(sql`seq <= ${filter.untilSeq}`)
  return sql.and(parts)
}

/** The seq just before the first event recorded after `time` (ISO-8601); undefined when there is none. */
export const lastSeqBefore = (time: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ first: string | null }>`
      SELECT min(seq)::text AS first FROM sync_log WHERE recorded_at > ${time}::timestamptz`
    return row!.first === null ? undefined : Number(row!.first) - 1
  }).pipe(Effect.mapError(classify))

/** How many rows, and messages in them, the filter selects after `afterSeq` (for progress and ETA). */
export const countEvents = (afterSeq: number, filter: EventFilter) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ events: string; last: string | null }>`
      SELECT count(*)::text AS events, max(seq)::text AS last
      FROM sync_log WHERE seq > ${afterSeq} AND ${conditions(sql, filter)}`
    return { events: Number(row!.events), lastSeq: row!.last === null ? 0 : Number(row!.last) }
  }).pipe(Effect.mapError(classify))

interface EventRow {
  /** bigint, as text (node-postgres) */
  readonly seq: string
  readonly session_id: string
  readonly event_type: CommittedEvent["type"]
  readonly snapshot_hash: string | null
  readonly at: string
  readonly payload: any
  readonly messages: number
}

/** A page of events read back from the ledger, and how many messages they hold. */
export interface EventPage {
  readonly events: ReadonlyArray<CommittedEvent>
  readonly messages: number
}

/**
 * The next rows after `afterSeq` that the filter selects, in seq order: at most `limit` rows, and no more rows
 * once `maxMessages` messages are reached (a page always has at least one row when there is one).
 *
 * A `messages_appended` payload comes back with only each message's `sender`: that is all `project` reads of a
 * message. The messages themselves are expanded by `applyChanges` in PostgreSQL straight from the ledger row,
 * as on the live path, so they never cross the wire during a replay.
 */
export const readEvents = (afterSeq: number, filter: EventFilter, limit: number, maxMessages: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<EventRow>`
      SELECT seq, session_id, event_type, snapshot_hash, at, payload, messages FROM (
        SELECT seq, session_id, event_type, snapshot_hash,
               to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at,
               CASE WHEN event_type = 'messages_appended'
                 THEN jsonb_set(payload, '{messages}', COALESCE(
                   (SELECT jsonb_agg(jsonb_build_object('sender', m->'sender'))
                    FROM jsonb_array_elements(payload->'messages') AS m), '[]'::jsonb))
                 ELSE payload END AS payload,
               m.n AS messages,
               sum(m.n) OVER (ORDER BY seq) - m.n AS before
        FROM sync_log
        CROSS JOIN LATERAL (SELECT CASE WHEN event_type = 'messages_appended'
                                   THEN jsonb_array_length(payload->'messages') ELSE 0 END AS n) AS m
        WHERE seq > ${afterSeq} AND ${conditions(sql, filter)}
        ORDER BY seq
        LIMIT ${limit}
      ) page
      WHERE before < ${maxMessages} OR before = 0
      ORDER BY seq`
    let messages = 0
    const events = rows.map((r) => {
      messages += Number(r.messages)
      return {
        type: r.event_type,
        sessionId: r.session_id,
        snapshotHash: r.snapshot_hash,
        payload: r.payload,
        seq: Number(r.seq),
        recordedAt: r.at
      } as CommittedEvent
    })
    return { events, messages } satisfies EventPage
  }).pipe(Effect.mapError(classify))

/**
 * Runs `effect` with `path` as the search path, then restores the one before, within the caller's transaction
 * (`set_config(…, true)` is `SET LOCAL`: it would otherwise last until the end of an enclosing transaction).
 */
const withSearchPath = <A, E, R>(sql: SqlClient.SqlClient, path: string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const [row] = yield* sql<{ old: string }>`SELECT current_setting('search_path') AS old`
    yield* sql`SELECT set_config('search_path', ${path}, true)`
    const result = yield* effect
    yield* sql`SELECT set_config('search_path', ${row!.old}, true)`
    return result
  })

/**
 * Creates `schema` with empty projection tables, built by the very migrations that built the live ones. Fails
 * when the schema already exists.
 */
export const createProjectionSchema = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* transaction(sql, Effect.gen(function*() {
      yield* sql.unsafe(`CREATE SCHEMA ${quoteIdent(schema)}`)
      yield* withSearchPath(sql, quoteIdent(schema), Effect.forEach(projectionMigrations, (m) => m, { discard: true }))
    }))
  })

/** Drops `schema` and everything in it, if it exists. */
export const dropSchema = (schema: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)).pipe(
    Effect.asVoid,
    Effect.mapError(classify)
  )

/** Whether `schema` exists. */
export const schemaExists = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ one: number }>`SELECT 1 AS one FROM pg_namespace WHERE nspname = ${schema}`
    return rows.length > 0
  }).pipe(Effect.mapError(classify))

/**
 * Applies `events` (in seq order) to the projection in `target`, reading message payloads from the ledger in
 * `ledger`. Returns messages inserted.
 *
 * - `"ownAsync"`: in a transaction of its own, committed without waiting for the WAL flush (`synchronous_commit =
 *   off`): only for a projection that is thrown away and built again if the server crashes (a shadow schema).
 * - `"caller"`: in the caller's transaction, as its statements (no savepoint: thousands of pages in one
 *   transaction would pile up subtransactions, which slows every snapshot on the server).
 */
export const applyEvents = (
  target: string,
  ledger: string,
  events: ReadonlyArray<CommittedEvent>,
  mode: "ownAsync" | "caller"
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const apply = withSearchPath(sql, `${quoteIdent(target)}, ${quoteIdent(ledger)}`, applyChanges(sql, project(events)))
    if (mode === "caller") return yield* Effect.mapError(apply, classify)
    return yield* transaction(
      sql,
      Effect.zipRight(sql`SET LOCAL synchronous_commit = off`, apply)
    )
  })

/** Row counts of every projection table of `schema`. */
export const countRows = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql.unsafe<Record<ProjectionTable, string>>(
      `SELECT ${PROJECTION_TABLES.map((t) => `(SELECT count(*) FROM ${quoteIdent(schema)}.${quoteIdent(t.name)})::text AS ${t.name}`).join(", ")}`
    )
    return new Map(PROJECTION_TABLES.map((t) => [t.name, Number(row![t.name])] as const))
  }).pipe(Effect.mapError(classify))

// ---------------------------------------------------------------------------------------------------------------
// Comparing two projections

/** How one table of two projections differs. */
export interface TableDiff {
  readonly table: ProjectionTable
  readonly rows: readonly [left: number, right: number]
  readonly same: boolean
  /** Rows only on the left, only on the right, and present on both with other values (0 when `same`). */
  readonly onlyLeft: number
  readonly onlyRight: number
  readonly changed: number
  /** Keys of up to 5 rows that differ, as PostgreSQL prints a row. */
  readonly sample: ReadonlyArray<string>
}

const columnsOf = (schema: string, table: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ name: string }>`
      SELECT attname AS name FROM pg_attribute
      WHERE attrelid = (quote_ident(${schema}) || '.' || quote_ident(${table}))::regclass
        AND attnum > 0 AND NOT attisdropped
      ORDER BY attnum`
    return rows.map((r) => r.name)
  })

/**
 * Compares every projection table of `left` with the same table of `right`, column for column (the columns of
 * `right`'s table, in order): row counts and an order-independent checksum of the rows; for a table that
 * differs, which rows do. Runs in the caller's transaction when there is one (a consistent view of both).
 */
export const compareProjections = (left: string, right: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const diffs: Array<TableDiff> = []
    for (const { name, key } of PROJECTION_TABLES) {
      const columns = (yield* columnsOf(right, name)).map(quoteIdent).join(", ")
      const keyList = key.map(quoteIdent).join(", ")
      const digest = (schema: string) =>
        sql.unsafe<{ n: string; sum: string }>(
          `SELECT count(*)::text AS n,
                  COALESCE(sum(('x' || left(md5(ROW(${columns})::text), 15))::bit(60)::bigint::numeric), 0)::text AS sum
           FROM ${quoteIdent(schema)}.${quoteIdent(name)}`
        )
      const [[l], [r]] = [yield* digest(left), yield* digest(right)]
      const rows = [Number(l!.n), Number(r!.n)] as const
      if (l!.n === r!.n && l!.sum === r!.sum) {
        diffs.push({ table: name, rows, same: true, onlyLeft: 0, onlyRight: 0, changed: 0, sample: [] })
        continue
      }
      const side = (schema: string) =>
        `SELECT ${keyList}, ROW(${keyList})::text AS k, md5(ROW(${columns})::text) AS h FROM ${quoteIdent(schema)}.${quoteIdent(name)}`
      const [d] = yield* sql.unsafe<{ only_left: string; only_right: string; changed: string; sample: Array<string> | null }>(
        `SELECT count(*) FILTER (WHERE b.h IS NULL)::text AS only_left,
                count(*) FILTER (WHERE a.h IS NULL)::text AS only_right,
                count(*) FILTER (WHERE a.h <> b.h)::text AS changed,
                (array_agg(COALESCE(a.k, b.k) ORDER BY COALESCE(a.k, b.k))
                   FILTER (WHERE a.h IS DISTINCT FROM b.h))[1:5] AS sample
         FROM (${side(left)}) a FULL JOIN (${side(right)}) b USING (${keyList})`
      )
      diffs.push({
        table: name,
        rows,
        same: false,
        onlyLeft: Number(d!.only_left),
        onlyRight: Number(d!.only_right),
        changed: Number(d!.changed),
        sample: d!.sample ?? []
      })
    }
    return diffs
  }).pipe(Effect.mapError(classify))

/**
 * Internal checks of a projection: what it must satisfy whatever the ledger holds. Empty when it does.
 * `thorough`: also count every session's messages (reads the whole messages table).
 */
export const checkProjection = (schema: string, ledgerLastSeq: number, thorough = true) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const s = quoteIdent(schema)
    const miscounted = thorough
      ? `(SELECT count(*) FROM ${s}.sessions x
          WHERE x.message_count <> (SELECT count(*) FROM ${s}.messages m WHERE m.session_id = x.id))::text`
      : "'0'"
    const [row] = yield* sql.unsafe<{ miscounted: string; last_seq: string }>(
      `SELECT ${miscounted} AS miscounted, (SELECT last_seq FROM ${s}.projection_state)::text AS last_seq`
    )
    const problems: Array<string> = []
    if (row!.miscounted !== "0") problems.push(`${row!.miscounted} sessions whose message_count is not their number of messages`)
    if (Number(row!.last_seq) !== ledgerLastSeq) {
      problems.push(`projection_state.last_seq is ${row!.last_seq}, the ledger's last seq is ${ledgerLastSeq}`)
    }
    return problems
  }).pipe(Effect.mapError(classify))
