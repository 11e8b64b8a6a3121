import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Redacted } from "effect"
import { describeFailure } from "../../src/Cli.js"
import { databaseUrl, liveConfig, pgSchema, redisConfig, syncConfig } from "../../src/Config.js"
import { httpConfig } from "../../src/http/HttpConfig.js"
import { describeUrl } from "../../src/pg/Database.js"
import { describe as describeRedis } from "../../src/redis/RedisConnection.js"
import { logFormat, logLevel } from "../../src/Logging.js"
import { LogLevel } from "effect"

const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
const failureOf = <A, E>(effect: Effect.Effect<A, E>, env: Record<string, string>) =>
  effect.pipe(withEnv(env), Effect.either, Effect.map((r) => (Either.isLeft(r) ? describeFailure(r.left) : "no failure")))

describe("configuration", () => {
  it.effect("the seed's defaults: Redis on localhost:6379 db 0, schema public, 3 writers", () =>
    Effect.gen(function*() {
      const redis = yield* redisConfig.pipe(withEnv({}))
      assert.deepStrictEqual(redis, { url: undefined, host: "localhost", port: 6379, db: 0, username: undefined, password: undefined })
      assert.strictEqual(yield* pgSchema.pipe(withEnv({})), "public")
      const sync = yield* syncConfig.pipe(withEnv({}))
      assert.strictEqual(sync.writeConcurrency, 3)
      assert.strictEqual(sync.batchSessions, 500)
      assert.strictEqual(sync.heapGrowthPercent, 50)
    }))

  it.effect("a malformed value stops with a message naming the variable", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* failureOf(redisConfig, { REDIS_PORT: "abc" }), "configuration: REDIS_PORT: expected a port number from 1 to 65535")
      assert.strictEqual(yield* failureOf(redisConfig, { REDIS_DB: "42" }), "configuration: REDIS_DB: expected a database number from 0 to 15")
      assert.strictEqual(yield* failureOf(pgSchema, { PG_SCHEMA: "drop table;" }), "configuration: PG_SCHEMA: expected a schema name of letters, digits and _ (not starting with a digit, at most 63)")
      assert.strictEqual(yield* failureOf(redisConfig, { REDIS_URL: "http://x" }), "configuration: REDIS_URL: expected a redis: or rediss: URL, got a http: one")
      assert.strictEqual(yield* failureOf(databaseUrl, {}), "configuration: DATABASE_URL is not set")
      assert.strictEqual(yield* failureOf(syncConfig, { SYNC_WRITE_CONCURRENCY: "0" }), "configuration: SYNC_WRITE_CONCURRENCY: expected a whole number from 1 to 32")
      // Migrating holds one connection for its lock and needs another.
      assert.strictEqual(yield* failureOf(syncConfig, { PG_POOL_MAX: "1" }), "configuration: PG_POOL_MAX: expected a whole number from 2 to 1000")
      assert.strictEqual(yield* failureOf(syncConfig, { SYNC_HEAP_GROWTH_PERCENT: "-5" }), "configuration: SYNC_HEAP_GROWTH_PERCENT: expected a whole number from 0 to 1000")
      assert.strictEqual(yield* failureOf(syncConfig, { SYNC_BATCH_SIZE: "lots" }), "configuration: SYNC_BATCH_SIZE: expected a whole number from 1 to 10000")
    }))

  it.effect("a blank whole number is unset (`NAME=` in .env): its default applies, not 0", () =>
    Effect.gen(function*() {
      const sync = yield* syncConfig.pipe(withEnv({ SYNC_BATCH_SIZE: "", SYNC_HEAP_GROWTH_PERCENT: " " }))
      assert.strictEqual(sync.batchSessions, 500)
      assert.strictEqual(sync.heapGrowthPercent, 50)
      // Not a random port (HTTP_PORT=0 asks for one), nor database 0 by accident of parsing.
      assert.strictEqual((yield* httpConfig.pipe(withEnv({ HTTP_PORT: "" }))).port, 8000)
      assert.strictEqual((yield* httpConfig.pipe(withEnv({ HTTP_PORT: "0" }))).port, 0)
      assert.strictEqual((yield* redisConfig.pipe(withEnv({ REDIS_DB: " ", REDIS_PORT: "" }))).db, 0)
      assert.strictEqual((yield* redisConfig.pipe(withEnv({ REDIS_PORT: "" }))).port, 6379)
      assert.strictEqual((yield* redisConfig.pipe(withEnv({ REDIS_DB: "3" }))).db, 3)
      assert.strictEqual(
        yield* failureOf(httpConfig, { HTTP_PORT: "http" }),
        "configuration: HTTP_PORT: expected a port number from 0 to 65535 (0: any free port)"
      )
    }))

  it.effect("secrets never appear in errors or in what is logged", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(databaseUrl, { DATABASE_URL: "mysql://app:s3cret@db/x" })
      assert.notInclude(error, "s3cret")
      assert.include(error, "DATABASE_URL")
      const url = yield* databaseUrl.pipe(withEnv({ DATABASE_URL: "postgres://app:s3cret@db:5432/x" }))
      assert.strictEqual(String(url), "<redacted>")
      assert.strictEqual(describeUrl(url), "postgres://app:***@db:5432/x")
      const redis = yield* redisConfig.pipe(withEnv({ REDIS_URL: "rediss://user:hunter2@cache:6380/2", REDIS_PASSWORD: "pw" }))
      assert.strictEqual(describeRedis(redis), "rediss://user:***@cache:6380/2")
      assert.strictEqual(describeRedis({ ...redis, url: undefined, password: Redacted.make("pw") }), "redis://localhost:6379/0")
      // Both clients also take a password as a query parameter.
      const inQuery = yield* redisConfig.pipe(withEnv({ REDIS_URL: "redis://cache:6379/0?password=hunter2redis&family=4" }))
      assert.strictEqual(describeRedis(inQuery), "redis://cache:6379/0?password=***&family=4")
      assert.strictEqual(
        describeUrl(Redacted.make("postgres://u@db/x?password=hunter2pg&sslmode=require")),
        "postgres://u@db/x?password=***&sslmode=require"
      )
    }))

  it.effect("REDIS_URL's database is checked as REDIS_DB is", () =>
    Effect.gen(function*() {
      for (const path of ["/abc", "/99", "/%201", "/1/2"]) {
        assert.strictEqual(
          yield* failureOf(redisConfig, { REDIS_URL: `redis://cache:6379${path}` }),
          "configuration: REDIS_URL: expected a database number from 0 to 15 as its path (/0 to /15, or none)",
          path
        )
      }
      for (const path of ["", "/", "/0", "/15"]) {
        const redis = yield* redisConfig.pipe(withEnv({ REDIS_URL: `redis://cache:6379${path}` }))
        assert.isDefined(redis.url, path)
      }
    }))

  it.effect("durations must be longer than zero (a batch window or sweep window may be zero)", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* failureOf(syncConfig, { SYNC_RECONCILE_INTERVAL: "-5 seconds" }),
        "configuration: SYNC_RECONCILE_INTERVAL: expected a duration longer than zero, like \"500 millis\" or \"2 minutes\""
      )
      assert.include(yield* failureOf(liveConfig, { SYNC_SHUTDOWN_TIMEOUT: "0 seconds" }), "SYNC_SHUTDOWN_TIMEOUT: expected a duration longer than zero")
      assert.include(yield* failureOf(liveConfig, { SYNC_BATCH_WINDOW: "30s" }), "SYNC_BATCH_WINDOW")
      const live = yield* liveConfig.pipe(withEnv({ SYNC_BATCH_WINDOW: "0 millis", SYNC_EXPIRY_SWEEP_WINDOW: "0 seconds" }))
      assert.strictEqual(Duration.toMillis(live.batchWindow), 0)
      assert.strictEqual(Duration.toMillis((yield* syncConfig.pipe(withEnv({}))).reconcileInterval), 300_000)
    }))

  it.effect("LOG_LEVEL takes lower-case names, LOG_FORMAT pretty, json or logfmt", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* logLevel.pipe(withEnv({ LOG_LEVEL: "warning" })), LogLevel.Warning)
      assert.strictEqual(yield* logLevel.pipe(withEnv({})), LogLevel.Info)
      assert.strictEqual(yield* failureOf(logLevel, { LOG_LEVEL: "loud" }), "configuration: LOG_LEVEL: expected one of trace, debug, info, warning, warn, error, fatal, none")
      assert.strictEqual(yield* logFormat.pipe(withEnv({ LOG_FORMAT: "json" })), "json")
      assert.strictEqual(yield* logFormat.pipe(withEnv({})), "pretty")
    }))
})
