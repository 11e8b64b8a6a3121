/**
 * Every environment variable the program reads, in one place (DESIGN §5). Values come from the environment and
 * from a `.env` file in the working directory (the environment wins). A missing or malformed value fails with
 * a `ConfigError` naming the variable; secrets are `Redacted` and never printed.
 */
import { Config, ConfigError, Duration, Either, Option, Redacted } from "effect"
import type { RedisConnectionOptions } from "./redis/RedisConnection.js"

const urlWithScheme = (name: string, schemes: ReadonlyArray<string>) =>
  Config.redacted(name).pipe(
    Config.mapOrFail((url) => {
      const value = Redacted.value(url)
      let scheme: string
      try {
        scheme = new URL(value).protocol
      } catch {
        return Either.left(ConfigError.InvalidData([name], `expected a URL like ${schemes[0]}//host:port/..., got something unparseable`))
      }
      return schemes.includes(scheme)
        ? Either.right(url)
        : Either.left(ConfigError.InvalidData([name], `expected a ${schemes.join(" or ")} URL, got a ${scheme} one`))
    })
  )

const DB_RANGE = "a database number from 0 to 15"

/**
 * `REDIS_URL` with its database checked as `REDIS_DB` is: ioredis would SELECT `NaN` for `/abc` (a raw Redis error)
 * and quietly stay on database 0 for a number Redis does not have, while the daemon listened on that number's
 * keyspace channel, which never fires.
 */
const redisUrl = urlWithScheme("REDIS_URL", ["redis:", "rediss:"]).pipe(
  Config.mapOrFail((url) => {
    const path = new URL(Redacted.value(url)).pathname
    return path === "" || path === "/" || /^\/([0-9]|1[0-5])$/.test(path)
      ? Either.right(url)
      : Either.left(ConfigError.InvalidData(["REDIS_URL"], `expected ${DB_RANGE} as its path (/0 to /15, or none)`))
  })
)

/**
 * A whole number in range; a blank value counts as unset (so a fallback applies), as `NAME=` in `.env` means
 * (Effect's `Config.integer` reads a blank as 0).
 */
export const whole = (name: string, max: number, min: number, expected = `a whole number from ${min} to ${max}`) =>
  Config.string(name).pipe(
    Config.mapOrFail((text) => {
      if (text.trim() === "") return Either.left(ConfigError.MissingData([], `${name} is blank`))
      const n = Number(text)
      return Number.isInteger(n) && n >= min && n <= max
        ? Either.right(n)
        : Either.left(ConfigError.InvalidData([], `expected ${expected}`))
    })
  )

/** Redis: `REDIS_URL` (`redis://`, `rediss://` for TLS), or the seed's `REDIS_HOST`/`PORT`/`USERNAME`/`PASSWORD`/`DB`. */
export const redisConfig: Config.Config<RedisConnectionOptions> = Config.all({
  url: Config.option(redisUrl),
  host: Config.string("REDIS_HOST").pipe(Config.withDefault("localhost")),
  port: whole("REDIS_PORT", 65535, 1, "a port number from 1 to 65535").pipe(Config.withDefault(6379)),
  db: whole("REDIS_DB", 15, 0, DB_RANGE).pipe(Config.withDefault(0)),
  username: Config.option(Config.string("REDIS_USERNAME")),
  password: Config.option(Config.redacted("REDIS_PASSWORD"))
}).pipe(Config.map((c) => ({
  url: Option.getOrUndefined(c.url),
  host: c.host,
  port: c.port,
  db: c.db,
  username: Option.getOrUndefined(c.username),
  password: Option.getOrUndefined(c.password)
})))

export const databaseUrl = urlWithScheme("DATABASE_URL", ["postgres:", "postgresql:"])

/** `PG_SCHEMA`: a plain identifier, so it can be named in SQL without surprises. */
export const pgSchema = Config.string("PG_SCHEMA").pipe(
  Config.validate({
    message: "expected a schema name of letters, digits and _ (not starting with a digit, at most 63)",
    validation: (s) => /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(s)
  }),
  Config.withDefault("public")
)

export const keyPrefix = Config.string("SYNC_KEY_PREFIX").pipe(
  Config.validate({ message: "expected a non-empty key prefix", validation: (s) => s.length > 0 }),
  Config.withDefault("chat:session:")
)

const positive = (name: string, fallback: number, max = 1_000_000, min = 1) =>
  whole(name, max, min).pipe(Config.withDefault(fallback))

/** `SYNC_HEAP_GROWTH_PERCENT` (see `Heap.ts`): 0 leaves the growth to V8; unset, the daemon's bound is the fallback. */
export const HEAP_GROWTH_PERCENT = { variable: "SYNC_HEAP_GROWTH_PERCENT", fallback: 50, min: 0, max: 1000 } as const

/** The heap growth as set, with no fallback: `Heap` applies it before any command reads its configuration. */
export const heapGrowthSetting = whole(HEAP_GROWTH_PERCENT.variable, HEAP_GROWTH_PERCENT.max, HEAP_GROWTH_PERCENT.min)

/**
 * A duration such as `500 millis` or `2 minutes` (Effect's format), longer than zero, or at least zero with
 * `orZero`: a negative one was taken as zero, and a zero interval failed later without naming its variable.
 */
const duration = (name: string, fallback: Duration.DurationInput, orZero = false) =>
  Config.duration(name).pipe(
    Config.validate({
      message: `expected a duration ${orZero ? "of zero or more" : "longer than zero"}, like "500 millis" or "2 minutes"`,
      validation: (d) => (orZero ? Duration.toMillis(d) >= 0 : Duration.toMillis(d) > 0)
    }),
    Config.withDefault(Duration.decode(fallback))
  )

/** Tuning of full syncs and the writer. */
export const syncConfig = Config.all({
  scanCount: positive("SYNC_SCAN_COUNT", 1000, 100_000),
  batchSessions: positive("SYNC_BATCH_SIZE", 500, 10_000),
  batchBytes: positive("SYNC_BATCH_BYTES", 1_000_000, 100_000_000),
  writeConcurrency: positive("SYNC_WRITE_CONCURRENCY", 3, 32),
  retryMaxDelay: duration("SYNC_RETRY_MAX_DELAY", "10 seconds"),
  reconcileInterval: duration("SYNC_RECONCILE_INTERVAL", "5 minutes"),
  // At least 2: migrating holds one connection for its lock while the migrator works on another.
  pgMaxConnections: positive("PG_POOL_MAX", 10, 1000, 2),
  // Applied by `Heap.boundHeapGrowth` (a one-shot command's at start-up, before this is read; the daemon's when it
  // starts, from this value); read here too, so that a bad value stops the program with the variable's name.
  heapGrowthPercent: heapGrowthSetting.pipe(Config.withDefault(HEAP_GROWTH_PERCENT.fallback))
})

/** The live daemon (DESIGN §4). */
export const liveConfig = Config.all({
  batchSize: positive("SYNC_BATCH_SIZE", 500, 10_000),
  batchWindow: duration("SYNC_BATCH_WINDOW", "100 millis", true),
  maxBatchesPerSecond: positive("SYNC_MAX_BATCHES_PER_SECOND", 50, 10_000),
  maxPending: positive("SYNC_MAX_PENDING", 100_000, 100_000_000),
  expirySweepWindow: duration("SYNC_EXPIRY_SWEEP_WINDOW", "2 minutes", true),
  shutdownTimeout: duration("SYNC_SHUTDOWN_TIMEOUT", "10 seconds"),
  channelPrefix: Config.string("SYNC_CHANNEL_PREFIX").pipe(Config.withDefault("session_updated:")),
  keyspaceNotifications: Config.boolean("SYNC_KEYSPACE_NOTIFICATIONS").pipe(Config.withDefault(true))
})

/** Variables whose absence, all together, means "no configuration": start throwaway local services. */
export const CONNECTION_VARIABLES = ["REDIS_URL", "REDIS_HOST", "DATABASE_URL"] as const

/** A `ConfigError` as one line per problem: `DATABASE_URL: expected a postgres: URL, got a http: one`. */
export const formatConfigError = (error: ConfigError.ConfigError): string => {
  const lines: Array<string> = []
  const walk = (e: ConfigError.ConfigError): void => {
    switch (e._op) {
      case "And":
      case "Or":
        walk(e.left)
        walk(e.right)
        return
      case "MissingData":
        lines.push(`${e.path.join("_")} is not set`)
        return
      case "InvalidData":
      case "SourceUnavailable":
      case "Unsupported":
        lines.push(`${e.path.join("_")}: ${e.message}`)
        return
    }
  }
  walk(error)
  return Array.from(new Set(lines)).join("\n")
}
