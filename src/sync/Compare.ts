/**
 * Compare Redis with PostgreSQL (`GET /api/v1/sync/sessions/compare`, `redis-pg-sync compare`): which sessions
 * are in sync, missing from PostgreSQL, stale (PostgreSQL stands at another value than Redis holds), rejected,
 * and only in PostgreSQL (gone from Redis) — counts, and up to `limit` ids of each.
 *
 * Redis is read the way a full sync reads it (SCAN pages, MGET, the hash of the raw bytes: no decoding), each page
 * looked up in PostgreSQL at once; then the sessions PostgreSQL holds are paged through by id. Memory: the ids
 * seen in Redis (SCAN may return a key twice, so they are deduplicated; about 100 bytes per session) plus one
 * page; values are hashed and dropped page by page.
 *
 * Not a snapshot: sessions written while the comparison runs may be counted in the state they just left. A
 * session PostgreSQL holds whose key SCAN did not return is checked again with EXISTS before it is called
 * "only in PostgreSQL", so keys created during the scan are not reported as gone.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Stream } from "effect"
import { classify as classifyPg, type PgError } from "../pg/PgError.js"
import { sessionRowsOf } from "../pg/Projection.js"
import type { RedisError } from "../redis/RedisError.js"
import { SessionSource } from "../redis/SessionSource.js"
import { hashOf } from "./Observe.js"

export interface CompareOptions {
  /** At most this many ids are listed per category. */
  readonly limit: number
  /** SCAN COUNT hint, and the page size of the PostgreSQL side. */
  readonly scanCount: number
}

/** A category: how many sessions, and the `limit` first of their ids in sorted order. */
export interface Bucket {
  readonly count: number
  readonly ids: ReadonlyArray<string>
}

export interface Comparison {
  /** Distinct session keys found in Redis (with a value when read). */
  readonly redisSessions: number
  /** Rows of `sessions`, present in Redis or not. */
  readonly postgresqlSessions: number
  /** The first 10 session ids SCAN returned. */
  readonly redisSessionIds: ReadonlyArray<string>
  /** PostgreSQL stands at the very value Redis holds. */
  readonly inSync: Bucket
  /** In Redis, never synced (no session row, no rejection). */
  readonly missingInPostgresql: Bucket
  /** In Redis with another value than PostgreSQL stands at, or recorded as gone although it is back. */
  readonly stale: Bucket
  /** In Redis with the very value PostgreSQL recorded as rejected (see `GET /api/v1/sync/rejections`). */
  readonly rejected: Bucket
  /** Session rows whose key is not in Redis (expired, deleted or evicted there): PostgreSQL keeps them. */
  readonly onlyInPostgresql: Bucket
  /** Of `onlyInPostgresql`, those PostgreSQL does not yet record as gone (the next reconcile scan will). */
  readonly departedUnrecorded: Bucket
  /** Whether anything is missing, stale or departed unrecorded. */
  readonly hasDrift: boolean
  readonly limit: number
  readonly durationMs: number
}

/** What PostgreSQL holds of one session id, as far as the comparison needs it. */
export interface Held {
  readonly sessionHash: string | null
  readonly hasSession: boolean
  readonly gone: boolean
  readonly hasRejection: boolean
  readonly rejectedHash: string | null
}

export type Category = "inSync" | "missingInPostgresql" | "stale" | "rejected"

/**
 * Where a session whose Redis value hashes to `hash` stands, by the same rule the writer uses to skip unchanged
 * values: a standing rejection wins over the session row; a session row counts only while it is not gone.
 */
export const classify = (hash: string, held: Held): Category => {
  if (held.hasRejection) return held.rejectedHash === hash ? "rejected" : "stale"
  if (!held.hasSession) return "missingInPostgresql"
  if (held.gone) return "stale"
  return held.sessionHash === hash ? "inSync" : "stale"
}

/** Counts a category and keeps its `limit` smallest ids (so the listing does not depend on SCAN's order). */
const makeBucket = (limit: number) => {
  let count = 0
  const ids: Array<string> = []
  return {
    add: (id: string) => {
      count++
      if (limit === 0 || (ids.length === limit && id >= ids[limit - 1]!)) return
      let lo = 0
      let hi = ids.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if (ids[mid]! < id) lo = mid + 1
        else hi = mid
      }
      ids.splice(lo, 0, id)
      if (ids.length > limit) ids.pop()
    },
    done: (): Bucket => ({ count, ids: ids.slice() })
  }
}

interface HeldRow {
  readonly id: string
  readonly session_hash: string | null
  readonly has_session: boolean
  readonly gone: boolean
  readonly has_rejection: boolean
  readonly rejected_hash: string | null
}

/** Runs one comparison. Fails when Redis or PostgreSQL cannot be read. */
export const compare = (
  options: CompareOptions
): Effect.Effect<Comparison, PgError | RedisError, SessionSource | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const started = Date.now()
    const redis = yield* SessionSource
    const sql = yield* SqlClient.SqlClient
    const seen = new Set<string>()
    const first: Array<string> = []
    const buckets = {
      inSync: makeBucket(options.limit),
      missingInPostgresql: makeBucket(options.limit),
      stale: makeBucket(options.limit),
      rejected: makeBucket(options.limit)
    }

    const lookup = (ids: ReadonlyArray<string>) =>
      sql<HeldRow>`
        SELECT x.id, s.snapshot_hash AS session_hash, s.id IS NOT NULL AS has_session,
               (s.expired_at IS NOT NULL OR s.deleted_at IS NOT NULL OR s.evicted_at IS NOT NULL) AS gone,
               r.redis_session_id IS NOT NULL AS has_rejection, r.snapshot_hash AS rejected_hash
        FROM ${sessionRowsOf(sql, ids)}`.pipe(Effect.mapError(classifyPg))

    yield* redis.scan(options.scanCount).pipe(
      Stream.map((page) => page.filter((id) => !seen.has(id))),
      Stream.filter((page) => page.length > 0),
      Stream.mapEffect((page) => redis.read(page)),
      Stream.runForEach((reads) =>
        Effect.gen(function*() {
          const present: Array<{ readonly id: string; readonly hash: string }> = []
          for (const raw of reads) {
            const hash = hashOf(raw)
            // Gone between SCAN and MGET, or already counted (SCAN repeats keys): not counted again.
            if (hash === null || seen.has(raw.sessionId)) continue
            seen.add(raw.sessionId)
            if (first.length < 10) first.push(raw.sessionId)
            present.push({ id: raw.sessionId, hash })
          }
          if (present.length === 0) return
          const rows = yield* lookup(present.map((p) => p.id))
          const byId = new Map(rows.map((r) => [r.id, r]))
          for (const { id, hash } of present) {
            const row = byId.get(id)
            const held: Held = row === undefined
              ? { sessionHash: null, hasSession: false, gone: false, hasRejection: false, rejectedHash: null }
              : {
                sessionHash: row.session_hash,
                hasSession: row.has_session,
                gone: row.gone,
                hasRejection: row.has_rejection,
                rejectedHash: row.rejected_hash
              }
            buckets[classify(hash, held)].add(id)
          }
        })
      )
    )

    const onlyInPg = makeBucket(options.limit)
    const departed = makeBucket(options.limit)
    let postgresqlSessions = 0
    let after = "0"
    while (true) {
      const page = yield* sql<{ id: string; session_id: string; gone: boolean }>`
        SELECT id::text AS id, redis_session_id AS session_id,
               (expired_at IS NOT NULL OR deleted_at IS NOT NULL OR evicted_at IS NOT NULL) AS gone
        FROM sessions s WHERE s.id > ${after}::bigint ORDER BY s.id LIMIT ${options.scanCount}`.pipe(
        Effect.mapError(classifyPg)
      )
      if (page.length === 0) break
      after = page[page.length - 1]!.id
      postgresqlSessions += page.length
      const candidates = page.filter((s) => !seen.has(s.session_id))
      if (candidates.length === 0) continue
      const exists = yield* redis.exists(candidates.map((s) => s.session_id))
      candidates.forEach((s, i) => {
        if (exists[i]) return
        onlyInPg.add(s.session_id)
        if (!s.gone) departed.add(s.session_id)
      })
    }

    const result = {
      inSync: buckets.inSync.done(),
      missingInPostgresql: buckets.missingInPostgresql.done(),
      stale: buckets.stale.done(),
      rejected: buckets.rejected.done(),
      onlyInPostgresql: onlyInPg.done(),
      departedUnrecorded: departed.done()
    }
    return {
      redisSessions: seen.size,
      postgresqlSessions,
      redisSessionIds: first,
      ...result,
      hasDrift: result.missingInPostgresql.count + result.stale.count + result.departedUnrecorded.count > 0,
      limit: options.limit,
      durationMs: Date.now() - started
    }
  }).pipe(Effect.withSpan("Compare.run"))

const fmt = (n: number) => n.toLocaleString("en-US")

/** The comparison as lines for a person (the `compare` command). */
export const describe = (c: Comparison): string => {
  const line = (label: string, b: Bucket, note = "") =>
    `${label.padEnd(24)}${fmt(b.count).padStart(10)}${note}${b.ids.length > 0 ? `  ${b.ids.join(", ")}${b.count > b.ids.length ? ", …" : ""}` : ""}`
  return [
    `Redis: ${fmt(c.redisSessions)} sessions; PostgreSQL: ${fmt(c.postgresqlSessions)} sessions (compared in ${fmt(c.durationMs)} ms)`,
    line("in sync", c.inSync),
    line("missing in PostgreSQL", c.missingInPostgresql),
    line("stale (hash differs)", c.stale),
    line("rejected", c.rejected),
    line("only in PostgreSQL", c.onlyInPostgresql),
    line("  not yet marked gone", c.departedUnrecorded),
    c.hasDrift
      ? "Drift found: a sync (redis-pg-sync sync, or POST /api/v1/sync/manual) brings PostgreSQL up to date."
      : "No drift: PostgreSQL holds every session Redis holds, at the same value."
  ].join("\n")
}
