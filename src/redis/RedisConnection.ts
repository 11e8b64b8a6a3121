/**
 * One ioredis connection as a scoped resource: connected (or failed with a message naming the server) when
 * acquired, closed when the scope closes. Secrets stay inside ioredis; `describe` is what may be logged.
 */
import { Effect, Redacted } from "effect"
import { Redis, type RedisOptions } from "ioredis"
import { showUrl } from "../Secrets.js"
import { fromCause, type RedisError } from "./RedisError.js"

export interface RedisConnectionOptions {
  /** `redis://` or `rediss://` (TLS) URL; when set it wins over host/port/db. */
  readonly url?: Redacted.Redacted<string> | undefined
  readonly host: string
  readonly port: number
  readonly db: number
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
}

/** Where we connect, without credentials. */
export const describe = (o: RedisConnectionOptions): string => {
  if (o.url !== undefined) {
    try {
      return showUrl(new URL(Redacted.value(o.url)))
    } catch {
      return "(unparseable REDIS_URL)"
    }
  }
  return `redis://${o.host}:${o.port}/${o.db}`
}

/** The db number the connection uses (for keyspace channels). */
export const dbOf = (o: RedisConnectionOptions): number => {
  if (o.url === undefined) return o.db
  const path = new URL(Redacted.value(o.url)).pathname.slice(1)
  return path === "" ? 0 : Number(path)
}

const ioredisOptions = (o: RedisConnectionOptions, extra: RedisOptions): RedisOptions => ({
  lazyConnect: true,
  connectTimeout: 5000,
  maxRetriesPerRequest: 2,
  retryStrategy: (times) => Math.min(times * 200, 2000),
  ...(o.url === undefined
    ? {
      host: o.host,
      port: o.port,
      db: o.db,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: Redacted.value(o.password) } : {})
    }
    : {}),
  ...extra
})

/** A connected client, quit when the scope closes. */
export const acquire = (
  o: RedisConnectionOptions,
  extra: RedisOptions = {}
): Effect.Effect<Redis, RedisError, import("effect").Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const client = o.url !== undefined
          ? new Redis(Redacted.value(o.url), ioredisOptions(o, extra))
          : new Redis(ioredisOptions(o, extra))
        // Failures surface through the commands; an 'error' event must never crash the process. The last one
        // says why a connect failed better than ioredis' own "Connection is closed.".
        let lastError: unknown
        client.on("error", (e) => {
          lastError = e
        })
        try {
          await client.connect()
        } catch (e) {
          client.disconnect()
          throw lastError ?? e
        }
        return client
      },
      catch: (cause) => fromCause(cause, `Redis at ${describe(o)} is unreachable`)
    }),
    (client) =>
      Effect.promise(() => client.quit().catch(() => client.disconnect())).pipe(
        Effect.timeoutOption("2 seconds"),
        Effect.ensuring(Effect.sync(() => client.disconnect()))
      )
  )
