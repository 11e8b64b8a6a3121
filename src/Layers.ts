/**
 * The wired layers: each built once from configuration (see `Config.ts`), shared by the CLI commands.
 */
import { Effect, Layer } from "effect"
import { databaseUrl, keyPrefix, pgSchema, redisConfig, syncConfig } from "./Config.js"
import * as Database from "./pg/Database.js"
import * as SessionStore from "./pg/SessionStore.js"
import * as RedisClient from "./redis/RedisClient.js"
import * as SessionSource from "./redis/SessionSource.js"

export const DatabaseLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const url = yield* databaseUrl
    const schema = yield* pgSchema
    const { pgMaxConnections } = yield* syncConfig
    return Database.layer({ url, schema, maxConnections: pgMaxConnections })
  })
)

/** The database with every migration applied. */
export const MigratedDatabaseLive = Layer.effectDiscard(Database.migrate).pipe(Layer.provideMerge(DatabaseLive))

export const RedisClientLive = Layer.unwrapEffect(Effect.map(redisConfig, RedisClient.layer))

export const SessionSourceLive = Layer.effect(
  SessionSource.SessionSource,
  Effect.gen(function*() {
    const { client } = yield* RedisClient.RedisClient
    return SessionSource.make(client, yield* keyPrefix)
  })
).pipe(Layer.provideMerge(RedisClientLive))

export const SessionStoreLive = SessionStore.layer.pipe(Layer.provideMerge(MigratedDatabaseLive))

/** What a sync needs: Redis in, PostgreSQL (migrated) out. */
export const SyncLive = Layer.mergeAll(SessionSourceLive, SessionStoreLive)
