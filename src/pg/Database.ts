/**
 * The PostgreSQL connection: one `pg` pool whose connections use `PG_SCHEMA` as their search path, exposed as
 * `@effect/sql`'s `SqlClient`, and the migrations that create the ledger and the projection in that schema.
 */
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Redacted } from "effect"
import Pg from "pg"
import m0001 from "../../migrations/0001_sync_log.js"
import m0002 from "../../migrations/0002_projection.js"
import m0003 from "../../migrations/0003_messages_session_fk.js"
import { classify, PgError } from "./PgError.js"
import { SqlError } from "@effect/sql/SqlError"
import { showUrl } from "../Secrets.js"

export interface DatabaseOptions {
  readonly url: Redacted.Redacted<string>
  /** Schema of every table (`PG_SCHEMA`); created when missing. */
  readonly schema: string
  readonly maxConnections: number
  readonly connectTimeout?: Duration.DurationInput
  /** `application_name` of the connections (default `redis-pg-sync`). */
  readonly applicationName?: string
}

/** The migrations, by id. A new migration is a new file in `migrations/` and a new line here. */
export const migrations = {
  "0001_sync_log": m0001,
  "0002_projection": m0002,
  "0003_messages_session_fk": m0003
} as const

/**
 * The migrations that build the projection tables, in order: a rebuild creates its shadow projection with them.
 * A migration that changes a projection table belongs here too.
 */
export const projectionMigrations = [m0002, m0003] as const

export const MIGRATIONS_TABLE = "sync_migrations"

/** PostgreSQL cuts identifiers to this many bytes, quoted ones too, without a word. */
export const MAX_IDENTIFIER_BYTES = 63

/** A quoted identifier. Refuses a name PostgreSQL would cut: the cut name could be another object's. */
export const quoteIdent = (name: string) => {
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw new Error(`identifier longer than ${MAX_IDENTIFIER_BYTES} bytes: ${name}`)
  }
  return `"${name.replace(/"/g, "\"\"")}"`
}

/** `postgres://user:***@host:port/db` (and `?password=***`): a URL that can be logged. */
export const describeUrl = (url: Redacted.Redacted<string>): string => {
  try {
    return showUrl(new URL(Redacted.value(url)))
  } catch {
    return "(unparseable DATABASE_URL)"
  }
}

/**
 * Connection settings whose search path is `schema` alone. Not `schema, public`: a table missing from `schema`
 * would then resolve to `public`'s, so a process given a new `PG_SCHEMA` would find the tables (and the applied
 * migrations) of whatever an earlier run left in `public`, and write there. Server options already in the URL
 * (`?options=-c …`) are kept: `pg` lets the URL's `options` replace the pool's, so they are merged here.
 */
export const boundTo = (url: string, schema: string): { connectionString: string; options: string } => {
  const searchPath = `-c search_path=${quoteIdent(schema)}`
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return { connectionString: url, options: searchPath }
  }
  const given = parsed.searchParams.get("options")
  if (given === null) return { connectionString: url, options: searchPath }
  parsed.searchParams.delete("options")
  return { connectionString: parsed.toString(), options: `${given} ${searchPath}` }
}

/**
 * `SqlClient` (and `PgClient`) over a pool bound to `options.schema`. Fails with a `connection` `PgError` that
 * names the server when PostgreSQL cannot be reached within the connect timeout.
 */
export const layer = (options: DatabaseOptions) =>
  PgClient.layerFromPool({
    applicationName: options.applicationName ?? "redis-pg-sync",
    acquire: Effect.acquireRelease(
      Effect.gen(function*() {
        const timeout = Duration.toMillis(options.connectTimeout ?? "5 seconds")
        const pool = new Pg.Pool({
          ...boundTo(Redacted.value(options.url), options.schema),
          max: options.maxConnections,
          connectionTimeoutMillis: timeout,
          application_name: options.applicationName ?? "redis-pg-sync"
        })
        pool.on("error", () => {})
        yield* Effect.tryPromise({
          try: async () => {
            const client = await pool.connect()
            try {
              // Looked up first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
              // exists, which a role provisioned per schema (usual on managed PostgreSQL) does not have.
              const { rows } = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [options.schema])
              if (rows.length > 0) return
              await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`).catch((e) => {
                // Two processes creating it at once: the loser sees a unique violation instead of "exists".
                if (!["23505", "42P06"].includes((e as { code?: string }).code ?? "")) throw e
              })
            } finally {
              client.release()
            }
          },
          catch: (cause) =>
            new SqlError({ message: `PostgreSQL at ${describeUrl(options.url)}: ${classify(cause).message}`, cause })
        }).pipe(Effect.onError(() => Effect.promise(() => pool.end())))
        return pool
      }),
      (pool) => Effect.promise(() => pool.end()).pipe(Effect.timeoutOption("2 seconds"))
    )
  })

/** Advisory lock class of migrations (two-int form, per schema): one process migrates a schema at a time. */
const MIGRATION_LOCK_CLASS = 0x72706d67

/**
 * Applies every migration not applied yet; returns what it applied. Safe to run from several processes at once
 * (replicas starting together): they take turns on an advisory lock, and the later ones find nothing to do.
 */
export const migrate = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const conn = yield* sql.reserve
  const lock = "hashtext(current_schema())"
  yield* conn.execute(`SELECT pg_advisory_lock($1, ${lock})`, [MIGRATION_LOCK_CLASS], undefined)
  yield* Effect.addFinalizer(() =>
    conn.execute(`SELECT pg_advisory_unlock($1, ${lock})`, [MIGRATION_LOCK_CLASS], undefined).pipe(Effect.ignore)
  )
  const run = Migrator.make({})
  return yield* run({ loader: Migrator.fromRecord(migrations), table: MIGRATIONS_TABLE })
}).pipe(
  Effect.scoped,
  Effect.mapError((e) =>
    e._tag === "MigrationError"
      ? new PgError({ reason: "other", message: `migration failed: ${e.message}`, cause: e })
      : classify(e)
  ),
  Effect.withSpan("Database.migrate")
)

/** Ids of the migrations not applied yet (for `check`). */
export const pendingMigrations = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const exists = yield* sql<{ t: string | null }>`SELECT to_regclass(${MIGRATIONS_TABLE}) AS t`
  const applied = exists[0]?.t
    ? yield* sql<{ migration_id: number }>`SELECT migration_id FROM ${sql(MIGRATIONS_TABLE)}`
    : []
  const done = new Set(applied.map((r) => Number(r.migration_id)))
  return Object.keys(migrations).filter((name) => !done.has(Number(name.slice(0, 4))))
}).pipe(Effect.mapError(classify))
