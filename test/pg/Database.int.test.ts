import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { inject } from "vitest"
import * as Database from "../../src/pg/Database.js"

/** A throwaway database of its own, so that its `public` schema can hold tables without touching other tests. */
const withDatabase = <A, E>(use: (url: string) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const name = `t_db_${randomBytes(4).toString("hex")}`
      const admin = new pg.Client({ connectionString: inject("databaseUrl") })
      await admin.connect()
      await admin.query(`CREATE DATABASE ${name}`)
      await admin.end()
      const url = new URL(inject("databaseUrl"))
      url.pathname = `/${name}`
      return { name, url: url.toString() }
    }),
    ({ url }) => use(url),
    ({ name }) =>
      Effect.promise(async () => {
        const admin = new pg.Client({ connectionString: inject("databaseUrl") })
        await admin.connect()
        await admin.query(`DROP DATABASE ${name} WITH (FORCE)`)
        await admin.end()
      })
  )

const layerOf = (url: string, schema: string) =>
  Database.layer({ url: Redacted.make(url), schema, maxConnections: 2, applicationName: schema })

describe("Database (real PostgreSQL)", () => {
  it.effect("a new PG_SCHEMA gets its own tables, even when public holds them from an earlier run", () =>
    withDatabase((url) =>
      Effect.gen(function*() {
        // An earlier run with the default schema.
        yield* Effect.scoped(Layer.build(layerOf(url, "public")).pipe(
          Effect.flatMap((ctx) => Effect.provide(Database.migrate, ctx))
        ))
        // A run given another schema must migrate that schema, and write there.
        const result = yield* Effect.gen(function*() {
          const applied = yield* Database.migrate
          const sql = yield* SqlClient.SqlClient
          const tables = yield* sql<{ schema: string }>`
            SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'sessions' ORDER BY 1`
          const [where] = yield* sql<{ path: string; schema: string }>`
            SELECT current_setting('search_path') AS path, current_schema() AS schema`
          return { applied: applied.length, tables: tables.map((t) => t.schema), where: where! }
        }).pipe(Effect.provide(layerOf(url, "other")))
        assert.isAbove(result.applied, 0, "the migrations were applied to the new schema")
        assert.deepStrictEqual(result.tables, ["other", "public"])
        assert.strictEqual(result.where.schema, "other")
        assert.strictEqual(result.where.path, `"other"`)
      })
    ))

  it.effect("server options given in DATABASE_URL are kept alongside the schema's search path", () =>
    Effect.gen(function*() {
      const url = new URL(inject("databaseUrl"))
      url.searchParams.set("options", "-c statement_timeout=12345")
      const schema = `t_opts_${randomBytes(4).toString("hex")}`
      const [row] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ timeout: string; schema: string }>`
          SELECT current_setting('statement_timeout') AS timeout, current_schema() AS schema`
        yield* sql.unsafe(`DROP SCHEMA "${schema}"`)
        return rows
      }).pipe(Effect.provide(layerOf(url.toString(), schema)))
      assert.strictEqual(row!.timeout, "12345ms")
      assert.strictEqual(row!.schema, schema)
    }))

  it.effect("a role with rights on its schema only (none to create schemas) can use it", () =>
    withDatabase((url) =>
      Effect.gen(function*() {
        const role = `t_role_${randomBytes(4).toString("hex")}`
        yield* Effect.promise(async () => {
          const admin = new pg.Client({ connectionString: url })
          await admin.connect()
          await admin.query(`CREATE ROLE ${role} LOGIN`)
          await admin.query(`REVOKE CREATE ON DATABASE ${new URL(url).pathname.slice(1)} FROM PUBLIC`)
          await admin.query(`CREATE SCHEMA app AUTHORIZATION ${role}`)
          await admin.end()
        })
        const asRole = new URL(url)
        asRole.username = role
        // The role is the cluster's, not the throwaway database's: dropped whatever happens.
        const dropRole = Effect.promise(async () => {
          const admin = new pg.Client({ connectionString: url })
          await admin.connect()
          await admin.query(`DROP SCHEMA app CASCADE`)
          await admin.query(`DROP ROLE ${role}`)
          await admin.end()
        })
        const applied = yield* Database.migrate.pipe(Effect.provide(layerOf(asRole.toString(), "app")), Effect.ensuring(dropRole))
        assert.isAbove(applied.length, 0)
      })
    ))

  it("boundTo leaves a URL without options as it is, and merges the options of one that has them", () => {
    assert.deepStrictEqual(Database.boundTo("postgres://u@h:5/db", "s"), {
      connectionString: "postgres://u@h:5/db",
      options: `-c search_path="s"`
    })
    const merged = Database.boundTo("postgres://u@h:5/db?sslmode=disable&options=-c%20work_mem%3D64MB", "s")
    assert.strictEqual(merged.options, `-c work_mem=64MB -c search_path="s"`)
    assert.strictEqual(merged.connectionString, "postgres://u@h:5/db?sslmode=disable")
  })
})
