/**
 * Real Redis only (no PostgreSQL) for a test file: the command connection as `RedisClient`, a fresh key prefix
 * and channel prefix, and the keys under the prefix deleted (SCAN, never KEYS) when the layer is released.
 */
import { Context, Effect, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import * as RedisClient from "../../src/redis/RedisClient.js"
import type { RedisConnectionOptions } from "../../src/redis/RedisConnection.js"
import { globEscape } from "../../src/redis/SessionSource.js"

export interface RedisEnv {
  readonly redisUrl: string
  /** `test:{name}:{random}:` */
  readonly prefix: string
  /** `test:{name}:{random}:updated:`, so PUBLISHes of parallel files never cross. */
  readonly channelPrefix: string
  readonly connection: RedisConnectionOptions
}

export class RedisEnvTag extends Context.Tag("test/RedisEnv")<RedisEnvTag, RedisEnv>() {}

export const connectionOf = (url: string): RedisConnectionOptions => ({
  url: Redacted.make(url),
  host: "",
  port: 0,
  db: 0
})

export const makeRedisEnv = (name: string): RedisEnv => {
  const base = `test:${name}:${randomBytes(4).toString("hex")}:`
  const redisUrl = inject("redisUrl")
  return { redisUrl, prefix: `${base}s:`, channelPrefix: `${base}updated:`, connection: connectionOf(redisUrl) }
}

/** Deletes every key under `prefix`. */
export const deleteKeys = (prefix: string) =>
  RedisClient.use("cleanup", async (c) => {
    let cursor = "0"
    do {
      const [next, keys] = await c.scan(cursor, "MATCH", `${globEscape(prefix)}*`, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) await c.del(...keys)
    } while (cursor !== "0")
  })

export const redisOnlyLayer = (env: RedisEnv) =>
  Layer.mergeAll(
    Layer.succeed(RedisEnvTag, env),
    Layer.scopedDiscard(Effect.addFinalizer(() => deleteKeys(env.prefix).pipe(Effect.orDie)))
  ).pipe(Layer.provideMerge(RedisClient.layer(env.connection)))
