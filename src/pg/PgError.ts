/**
 * The one error of the PostgreSQL shell. `reason` decides what the pipeline does with it (DESIGN §4):
 * `connection` is retried with backoff, `data` rejects the session that caused it, `other` is a bug or a
 * misconfiguration and stops the operation with its message.
 */
import type { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Data, Effect, Option } from "effect"

export type PgErrorReason = "connection" | "data" | "other"

export class PgError extends Data.TaggedError("PgError")<{
  readonly reason: PgErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH",
  "ENETUNREACH", "EADDRNOTAVAIL"
])

/**
 * SQLSTATEs that say nothing about the data, only that the attempt failed and a later one may not: connection
 * exceptions (08), insufficient resources (53), operator intervention (57P: shutdown, crash recovery), a statement
 * cancelled or timed out (57014), a lock not granted in time (55P03), a read-only transaction (25006: the server
 * is a standby, as during a failover), serialisation failures and deadlocks (40001, 40P01). Retried with backoff.
 */
const TRANSIENT_SQLSTATE = /^(08|53|57P|57014|55P03|25006|40001|40P01)/

/** SQLSTATE of a node-postgres error, if any. */
const sqlState = (cause: unknown): string | undefined => {
  const code = (cause as { code?: unknown } | null)?.code
  return typeof code === "string" ? code : undefined
}

const innermost = (e: SqlError | unknown): unknown => {
  let cause: unknown = e
  while (typeof cause === "object" && cause !== null && "cause" in cause && (cause as { cause: unknown }).cause) {
    cause = (cause as { cause: unknown }).cause
  }
  return cause
}

/** Classifies any error raised by `@effect/sql` or `pg`. */
export const classify = (error: unknown): PgError => {
  const cause = innermost(error)
  const code = sqlState(cause)
  const detail = cause instanceof Error ? cause.message : String(cause)
  const message = code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? `${detail} (SQLSTATE ${code})` : detail
  if (
    (code !== undefined && (CONNECTION_CODES.has(code) || TRANSIENT_SQLSTATE.test(code))) ||
    /Connection terminated|connection timeout|Connection timed out|Client has encountered a connection error|not queryable|timeout exceeded when trying to connect/i
      .test(detail)
  ) {
    return new PgError({ reason: "connection", message, cause })
  }
  if (code !== undefined && /^(22|23|54)/.test(code)) return new PgError({ reason: "data", message, cause })
  return new PgError({ reason: "other", message, cause })
}

/**
 * `sql.withTransaction` with every failure as a `PgError`. @effect/sql turns a failed COMMIT or ROLLBACK into a
 * defect; a connection killed at that moment is an ordinary connection error for us (the retry finds the
 * commit, if it happened, through the snapshot hashes), so such defects become `PgError`s too.
 */
export const transaction = <A, E, R>(sql: SqlClient.SqlClient, effect: Effect.Effect<A, E, R>) =>
  sql.withTransaction(effect).pipe(
    Effect.mapError(classify),
    Effect.catchSomeDefect((defect) =>
      defect instanceof SqlError ? Option.some(Effect.fail(classify(defect))) : Option.none()
    )
  )
