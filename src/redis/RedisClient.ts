/**
 * The command connection to Redis as a service, and what `check` asks of it.
 */
import { Context, Effect, Layer } from "effect"
import type { Redis } from "ioredis"
import { acquire, type RedisConnectionOptions } from "./RedisConnection.js"
import { fromCause, type RedisError } from "./RedisError.js"

export class RedisClient extends Context.Tag("redis-pg-sync/redis/RedisClient")<RedisClient, {
  readonly client: Redis
  readonly options: RedisConnectionOptions
}>() {}

export const layer = (options: RedisConnectionOptions) =>
  Layer.scoped(RedisClient, Effect.map(acquire(options), (client) => ({ client, options })))

/** Runs one ioredis call, failing with a `RedisError` that says what was attempted. */
export const use = <A>(what: string, f: (client: Redis) => Promise<A>): Effect.Effect<A, RedisError, RedisClient> =>
  Effect.flatMap(RedisClient, ({ client }) =>
    Effect.tryPromise({ try: () => f(client), catch: (cause) => fromCause(cause, what) }))

/** The flags keyspace capture needs (DESIGN §1): K keyspace channel, $ strings, g generic (del, rename, expire), x expired, e evicted. */
export const REQUIRED_NOTIFY_FLAGS = "K$gxe"

/** Whether a `notify-keyspace-events` value covers the required flags (`A` stands for `g$lshzxetd`). */
export const coversNotifyFlags = (flags: string): boolean => {
  const expanded = flags.replace("A", "g$lshzxetd")
  return Array.from(REQUIRED_NOTIFY_FLAGS).every((f) => expanded.includes(f))
}
