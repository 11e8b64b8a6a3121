/**
 * Real Redis and PostgreSQL for a test file: a fresh PostgreSQL schema (migrated, dropped at the end) and a
 * fresh Redis key prefix, so test files never see each other's data.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import * as Database from "../../src/pg/Database.js"
import * as SessionStore from "../../src/pg/SessionStore.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as SessionSource from "../../src/redis/SessionSource.js"
import { retrySchedule } from "../../src/sync/Writer.js"

export interface TestEnv {
  readonly schema: string
  readonly prefix: string
  readonly redisUrl: string
  readonly databaseUrl: string
}

export class TestEnvTag extends Context.Tag("test/TestEnv")<TestEnvTag, TestEnv>() {}

export const makeTestEnv = (name: string): TestEnv => {
  const suffix = randomBytes(4).toString("hex")
  return {
    schema: `t_${name}_${suffix}`,
    prefix: `test:${name}:${suffix}:`,
    redisUrl: inject("redisUrl"),
    databaseUrl: inject("databaseUrl")
  }
}

/** Drops the schema and the keys of a test env when the layer is released. */
const cleanup = (env: TestEnv) =>
  Layer.scopedDiscard(Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`DROP SCHEMA IF EXISTS "${env.schema}" CASCADE`)
      const { client } = yield* RedisClient.RedisClient
      const keys = yield* Effect.promise(() => client.keys(`${SessionSource.globEscape(env.prefix)}*`))
      if (keys.length > 0) yield* Effect.promise(() => client.del(...keys))
    }).pipe(Effect.orDie)
  ))

/** Everything a sync needs, on the real servers, in `env`'s schema and prefix. */
export const serversLayer = (env: TestEnv) => {
  const db = Database.layer({
    url: Redacted.make(env.databaseUrl),
    schema: env.schema,
    maxConnections: 6,
    applicationName: env.schema
  })
  const migrated = Layer.effectDiscard(Database.migrate).pipe(Layer.provideMerge(db))
  const redis = RedisClient.layer({ url: Redacted.make(env.redisUrl), host: "", port: 0, db: 0 })
  const source = Layer.effect(
    SessionSource.SessionSource,
    Effect.map(RedisClient.RedisClient, ({ client }) => SessionSource.make(client, env.prefix))
  )
  return Layer.mergeAll(source, SessionStore.layer, cleanup(env), Layer.succeed(TestEnvTag, env)).pipe(
    Layer.provideMerge(Layer.merge(migrated, redis))
  )
}

/** Writes fast in tests: connection errors retried quickly, a few times. */
export const testWriteOptions = { retry: retrySchedule("50 millis", 5) }
