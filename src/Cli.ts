/**
 * The command line (DESIGN §5): `redis-pg-sync <command>`. Each command builds only the layers it needs.
 */
import { Args, Command, Options } from "@effect/cli"
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Cause, Config, ConfigError, Console, Data, Effect, Layer, Option, Ref, Schedule } from "effect"
import { formatConfigError, keyPrefix, liveConfig, redisConfig, syncConfig } from "./Config.js"
import { DatabaseLive, RedisClientLive, SyncLive } from "./Layers.js"
import { boundHeapGrowth } from "./Heap.js"
import { ensureLocalServices } from "./LocalServices.js"
import * as Database from "./pg/Database.js"
import { classify, PgError } from "./pg/PgError.js"
import { RedisError } from "./redis/RedisError.js"
import * as RedisClient from "./redis/RedisClient.js"
import { describe as describeRedis } from "./redis/RedisConnection.js"
import { defaultFullSyncOptions, describeProgress, fullSync, zeroProgress } from "./sync/FullSync.js"
import * as Daemon from "./sync/Daemon.js"
import { syncSession } from "./sync/SyncSession.js"
import { retrySchedule } from "./sync/Writer.js"
import { httpConfig } from "./http/HttpConfig.js"
import * as HttpApi from "./http/Server.js"
import { comparisonBody } from "./http/Operations.js"
import * as Metrics from "./Metrics.js"
import * as Compare from "./sync/Compare.js"
import * as Rebuild from "./sync/Rebuild.js"
import { VERSION } from "./Version.js"

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

/** A failure already explained to the person on stderr: exit 1 without printing it again. */
class Reported extends Data.TaggedError("Reported")<{}> {}

/** One line for a person, whatever failed: our tagged errors carry their message; configuration errors name the variable. */
export const describeFailure = (error: unknown): string => {
  if (ConfigError.isConfigError(error)) return `configuration: ${formatConfigError(error).replaceAll("\n", "; ")}`
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}

/** Whether a failure is Redis or PostgreSQL being unreachable (worth waiting for), rather than anything else. */
const isConnectionFailure = (e: unknown): boolean =>
  e instanceof RedisError
    ? e.reason === "connection"
    : e instanceof PgError || e instanceof SqlError
    ? classify(e).reason === "connection"
    : false

/** Turns any failure into a message a person can act on, printed on stderr, and a failed exit. */
const reportFailure = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, Reported, R> =>
  effect.pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Cause.squash(cause) instanceof Reported
        ? Effect.fail(new Reported())
        : Console.error(`redis-pg-sync: ${describeFailure(Cause.squash(cause))}`).pipe(
          Effect.zipRight(Effect.fail(new Reported()))
        )
    )
  )

/** Prints progress on a terminal every second while `effect` runs. */
const withProgress = <P, A, E, R>(
  progress: Ref.Ref<P>,
  effect: Effect.Effect<A, E, R>,
  describe: (p: P, now: number) => string
) => {
  if (!process.stderr.isTTY) return effect
  const tick = Effect.flatMap(Ref.get(progress), (p) =>
    Effect.sync(() => process.stderr.write(`\r\x1b[K${describe(p, Date.now())}`)))
  return Effect.zipLeft(
    effect.pipe(Effect.raceFirst(Effect.forever(Effect.zipRight(Effect.sleep("1 second"), tick)).pipe(Effect.as(undefined as never)))),
    Effect.sync(() => process.stderr.write("\r\x1b[K"))
  )
}

const writeOptions = Effect.map(syncConfig, (c) => ({ ...c, retry: retrySchedule(c.retryMaxDelay, 8) }))

const migrate = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const applied = yield* Database.migrate
    yield* Console.log(
      applied.length === 0
        ? "migrations: up to date"
        : applied.map(([id, name]) => `applied migration ${String(id).padStart(4, "0")}_${name}`).join("\n")
    )
  }).pipe(Effect.provide(DatabaseLive), reportFailure)).pipe(
    Command.withDescription("Create or update the ledger and projection tables (every other command does it too)")
  )

/**
 * The daemon (DESIGN §4): migrations, then the live pipeline fed by keyspace notifications, the application's
 * channel and reconcile scans, with a start-up full sync, until SIGTERM/SIGINT: intake stops, the batches in
 * flight finish (within SYNC_SHUTDOWN_TIMEOUT), connections close, exit 0.
 */
const start = Command.make("start", {}, () =>
  Effect.gen(function*() {
    const config = yield* syncConfig
    yield* Effect.sync(() => boundHeapGrowth(config.heapGrowthPercent, true))
    const live = yield* liveConfig
    const prefix = yield* keyPrefix
    const fullSyncOptions = { ...defaultFullSyncOptions(retrySchedule(config.retryMaxDelay, 10)), ...config }
    const daemon = Daemon.layer({
      keyPrefix: prefix,
      channelPrefix: live.channelPrefix,
      keyspaceNotifications: live.keyspaceNotifications,
      expirySweepWindow: live.expirySweepWindow,
      fullSync: fullSyncOptions,
      pipeline: {
        batchSize: live.batchSize,
        batchWindow: live.batchWindow,
        maxBatchesPerSecond: live.maxBatchesPerSecond,
        concurrency: config.writeConcurrency,
        maxPending: live.maxPending,
        retryMaxDelay: config.retryMaxDelay,
        reconcileInterval: config.reconcileInterval,
        shutdownTimeout: live.shutdownTimeout
      }
    })
    // -- HTTP API (issue 4): served while the daemon runs (HTTP_HOST, HTTP_PORT, SYNC_API_TOKEN); every write of
    //    the daemon and of the API goes through Metrics.instrument, which feeds GET /metrics.
    const http = HttpApi.layer({ fullSync: fullSyncOptions, keyPrefix: prefix, ...yield* httpConfig })
    // A server that is not up yet at start (a compose or Kubernetes rollout) is waited for, as an outage while
    // running is: connection errors are retried with the same capped backoff, forever; anything else stops.
    const services = SyncLive.pipe(
      Layer.tapError((e) =>
        isConnectionFailure(e)
          ? Effect.logWarning(`Waiting for the servers: ${describeFailure(e)}; retrying`)
          : Effect.void
      ),
      Layer.retry(retrySchedule(config.retryMaxDelay, Number.MAX_SAFE_INTEGER).pipe(Schedule.whileInput(isConnectionFailure)))
    )
    return yield* Layer.launch(http.pipe(
      Layer.provideMerge(daemon),
      Layer.provide(Metrics.instrument),
      Layer.provide(services)
    ))
    // -- end HTTP API
  }).pipe(
    Effect.onInterrupt(() => Effect.logInfo("Stopped: batches in flight finished, connections closed")),
    reportFailure
  )).pipe(Command.withDescription("Run the sync daemon (with no configuration: on throwaway local Redis and PostgreSQL)"))

const json = Options.boolean("json").pipe(Options.withDescription("print the summary as one JSON object"))

const sync = Command.make("sync", { json }, ({ json }) =>
  Effect.gen(function*() {
    const config = yield* writeOptions
    const progress = yield* Ref.make(zeroProgress(Date.now()))
    const options = { ...defaultFullSyncOptions(config.retry), ...config }
    const result = yield* withProgress(progress, fullSync("reconcile", options, progress), describeProgress)
    const seconds = (Date.now() - result.startedAt) / 1000
    const peakRssMb = process.resourceUsage().maxRSS / 1024
    if (json) {
      const { startedAt: _, ...totals } = result
      return yield* Console.log(JSON.stringify({ ...totals, seconds, peakRssMb: Math.round(peakRssMb) }))
    }
    yield* Console.log(`Manual sync completed in ${seconds.toFixed(1)} s: ${describeProgress(result, Date.now())}` +
      (result.vanished > 0 ? `; ${fmt(result.vanished)} keys vanished while scanning` : "") +
      `; ledger at seq ${result.lastSeq || "unchanged"}; peak RSS ${fmt(peakRssMb)} MB`)
  }).pipe(Effect.provide(SyncLive), reportFailure)).pipe(
    Command.withDescription("Sync every session in Redis into PostgreSQL once, then exit")
  )

const sessionId = Args.text({ name: "session-id" }).pipe(Args.withDescription("the id after the key prefix"))

const syncOne = Command.make("sync-session", { sessionId }, ({ sessionId }) =>
  Effect.gen(function*() {
    const config = yield* writeOptions
    const prefix = yield* keyPrefix
    const outcome = yield* syncSession(sessionId, "api", config)
    switch (outcome._tag) {
      case "NotFound":
        return yield* Effect.fail(new Error(`session ${sessionId} not found in Redis (no key ${prefix}${sessionId})`))
      case "Rejected":
        return yield* Effect.fail(new Error(`session ${sessionId} rejected: ${outcome.reason}`))
      case "Synced":
        yield* Console.log(
          outcome.result.events === 0
            ? `Session ${sessionId} already in sync`
            : `Successfully synced session ${sessionId}: ${outcome.result.events} events, ` +
              `${outcome.result.messagesInserted} messages inserted (ledger seq ${outcome.result.lastSeq})`
        )
    }
  }).pipe(Effect.provide(SyncLive), reportFailure)).pipe(Command.withDescription("Sync one session now"))

// -- compare (issue 4) ---------------------------------------------------------------------------------------------
const compareLimit = Options.integer("limit").pipe(
  Options.withDescription("ids listed per category, 0 to 1000"),
  Options.withDefault(20)
)

const compare = Command.make("compare", { json, limit: compareLimit }, ({ json, limit }) =>
  Effect.gen(function*() {
    if (!(limit >= 0 && limit <= 1000)) return yield* Effect.fail(new Error(`--limit must be from 0 to 1000, got ${limit}`))
    const { scanCount } = yield* syncConfig
    const comparison = yield* Compare.compare({ limit, scanCount })
    yield* Console.log(json ? JSON.stringify(comparisonBody(comparison), null, 2) : Compare.describe(comparison))
  }).pipe(Effect.provide(SyncLive), reportFailure)).pipe(
    Command.withDescription(
      "Compare Redis with PostgreSQL: sessions in sync, missing, stale, rejected, only in PostgreSQL (as GET /api/v1/sync/sessions/compare)"
    )
  )
// -- end compare

// -- rebuild and verify (issue 5) ------------------------------------------------------------------------------------
const untilSeq = Options.integer("until-seq").pipe(
  Options.withDescription("replay the ledger up to this seq only (with --into)"),
  Options.optional
)
const untilTime = Options.text("until-time").pipe(
  Options.withDescription("replay the events recorded up to this time only, ISO-8601 (with --into)"),
  Options.optional
)
const into = Options.text("into").pipe(
  Options.withDescription("build into this new schema for inspection; the live tables are left alone"),
  Options.optional
)
const diff = Options.boolean("diff").pipe(
  Options.withDescription("before the swap, compare the rebuilt tables with the live ones row by row, as verify does (slower)")
)
const keepPrevious = Options.boolean("keep-previous").pipe(
  Options.withDescription("keep the replaced tables in the schema {PG_SCHEMA}_previous instead of dropping them")
)

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/

const rebuild = Command.make("rebuild", { untilSeq, untilTime, into, diff, keepPrevious, json }, (args) =>
  Effect.gen(function*() {
    const target = Option.getOrUndefined(args.into)
    const seq = Option.getOrUndefined(args.untilSeq)
    const time = Option.getOrUndefined(args.untilTime)
    if (target !== undefined && !SCHEMA_NAME.test(target)) {
      return yield* Effect.fail(new Error(`--into must be a plain schema name (letters, digits, _; at most 63), got ${JSON.stringify(target)}`))
    }
    if ((seq !== undefined || time !== undefined) && target === undefined) {
      return yield* Effect.fail(new Error("--until-seq and --until-time build a past state for inspection: give --into SCHEMA too"))
    }
    if (seq !== undefined && seq < 0) return yield* Effect.fail(new Error(`--until-seq must be 0 or more, got ${seq}`))
    if (time !== undefined && Number.isNaN(Date.parse(time))) {
      return yield* Effect.fail(new Error(`--until-time must be an ISO-8601 time such as 2026-11-26T12:00:00Z, got ${JSON.stringify(time)}`))
    }
    const progress = yield* Ref.make(Rebuild.startProgress(target ?? ""))
    const result = yield* withProgress(
      progress,
      Rebuild.rebuild({ into: target, untilSeq: seq, untilTime: time, diff: args.diff, keepPrevious: args.keepPrevious }, progress),
      Rebuild.describeProgress
    )
    if (args.json) return yield* Console.log(JSON.stringify(result))
    const secs = result.durationMillis / 1000
    const totals = `${fmt(result.eventsReplayed)} events replayed up to seq ${result.lastSeq}, ` +
      `${fmt(result.messagesInserted)} messages, in ${secs.toFixed(1)} s (${fmt(result.eventsReplayed / Math.max(secs, 0.001))} events/s)`
    if (!result.swapped) return yield* Console.log(`Projection built in schema ${result.target}: ${totals}`)
    const changes = Rebuild.describeChanges(result)
    const same = result.diff === null
      ? "  the rebuilt tables have as many rows as the ones they replaced (--diff compares every row)"
      : "  the rebuilt tables are identical to the ones they replaced"
    yield* Console.log([
      `Rebuilt the projection in schema ${result.target}: ${totals}`,
      `  writers waited ${fmt(result.lockedMillis)} ms for the swap (${fmt(result.tailEvents)} events replayed under its lock)`,
      changes.length === 0 ? same : `  what changed:\n${changes.map((l) => `    ${l}`).join("\n")}`,
      result.previous === null ? "" : `  the replaced tables are in schema ${result.previous}`
    ].filter((l) => l !== "").join("\n"))
  }).pipe(Effect.provide(DatabaseLive), reportFailure)).pipe(
    Command.withDescription(
      "Rebuild the projection tables from the ledger and swap them in (or, with --into, build a past state for inspection)"
    )
  )

const verify = Command.make("verify", { json }, ({ json }) =>
  Effect.gen(function*() {
    const progress = yield* Ref.make(Rebuild.startProgress(""))
    const result = yield* withProgress(progress, Rebuild.verify({}, progress), Rebuild.describeProgress)
    if (json) yield* Console.log(JSON.stringify(result))
    else if (result.same) {
      yield* Console.log(
        `The live tables are exactly a replay of the ledger (${fmt(result.eventsReplayed)} events, up to seq ${result.lastSeq}; ` +
          `${result.diff.map((d) => `${d.table} ${fmt(d.rows[0])}`).join(", ")}) — checked in ${(result.durationMillis / 1000).toFixed(1)} s`
      )
    } else {
      yield* Console.log([
        `The live tables differ from a replay of the ledger (${fmt(result.eventsReplayed)} events, up to seq ${result.lastSeq}):`,
        ...Rebuild.describeDiff(result.diff).map((l) => `  ${l}`),
        ...result.problems.map((p) => `  replay: ${p}`),
        "Run redis-pg-sync rebuild to replace them with the replay."
      ].join("\n"))
    }
    if (!result.same) return yield* Effect.fail(new Reported())
  }).pipe(Effect.provide(DatabaseLive), reportFailure)).pipe(
    Command.withDescription("Compare the live projection tables with a replay of the ledger; exit 1 and a diff when they differ")
  )
// -- end rebuild and verify

const check = Command.make("check", {}, () =>
  Effect.gen(function*() {
    let failures = 0
    const line = (ok: boolean | "warn", what: string, detail: string) => {
      if (ok === false) failures++
      return Console.log(`${ok === true ? "OK  " : ok === "warn" ? "WARN" : "FAIL"} ${what}: ${detail}`)
    }
    const redis = yield* Effect.either(redisConfig)
    if (redis._tag === "Left") {
      yield* line(false, "configuration", formatConfigError(redis.left).replaceAll("\n", "; "))
    } else {
      yield* line(true, "configuration", `Redis ${describeRedis(redis.right)}, key prefix ${yield* keyPrefix}`)
    }
    // Everything else `start` reads: a value it would refuse fails here too, named.
    const rest = yield* Effect.either(Config.all([keyPrefix, syncConfig, liveConfig, httpConfig]))
    if (rest._tag === "Left") yield* line(false, "configuration", formatConfigError(rest.left).replaceAll("\n", "; "))
    const redisCheck = Effect.gen(function*() {
      const info = yield* RedisClient.use("INFO", (c) => c.info("server"))
      const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "?"
      yield* line(true, "Redis", `reachable, version ${version}`)
      const flags = yield* RedisClient.use("CONFIG GET", (c) => c.config("GET", "notify-keyspace-events")).pipe(
        Effect.map((r) => Option.some(String((r as Array<string>)[1] ?? ""))),
        // Refused (NOPERM, unknown command): a managed Redis. A lost connection is a failure of the Redis check.
        Effect.catchIf((e) => e.reason === "command", () => Effect.succeed(Option.none<string>()))
      )
      if (Option.isNone(flags)) {
        yield* line("warn", "keyspace notifications", "CONFIG GET is refused (managed Redis?): the flags cannot be seen; the daemon subscribes anyway, and relies on the session_updated channel and reconcile scans if the service sends no notifications")
      } else if (RedisClient.coversNotifyFlags(flags.value)) {
        yield* line(true, "keyspace notifications", `enabled ("${flags.value}")`)
      } else {
        yield* line("warn", "keyspace notifications", `"${flags.value}" lacks ${RedisClient.REQUIRED_NOTIFY_FLAGS}; the daemon sets it at start when CONFIG SET is allowed, or run: redis-cli CONFIG SET notify-keyspace-events '${RedisClient.REQUIRED_NOTIFY_FLAGS}'`)
      }
    }).pipe(
      Effect.provide(RedisClientLive),
      Effect.catchAll((e) => line(false, "Redis", describeFailure(e)))
    )
    yield* redisCheck
    const pgCheck = Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ v: string }>`SELECT current_setting('server_version') AS v`
      yield* line(true, "PostgreSQL", `reachable, version ${row?.v ?? "?"}`)
      const pending = yield* Database.pendingMigrations
      yield* pending.length === 0
        ? line(true, "migrations", "all applied")
        : line(false, "migrations", `${pending.join(", ")} not applied: run redis-pg-sync migrate`)
    }).pipe(
      Effect.provide(DatabaseLive),
      Effect.catchAll((e) => line(false, "PostgreSQL", describeFailure(e)))
    )
    yield* pgCheck
    if (failures > 0) return yield* Effect.fail(new Error(`${failures} check(s) failed`))
  }).pipe(reportFailure)).pipe(
    Command.withDescription("Check configuration, Redis and PostgreSQL connectivity, keyspace notifications, migrations")
  )

const COMMANDS: ReadonlyArray<string> = ["start", "sync", "sync-session", "compare", "rebuild", "verify", "check", "migrate"]

const root = Command.make("redis-pg-sync", {}).pipe(
  Command.withDescription("Keeps chat sessions from Redis durably in PostgreSQL through an append-only ledger"),
  Command.withSubcommands([start, sync, syncOne, compare, rebuild, verify, check, migrate])
)

const run = Command.run(root, { name: "redis-pg-sync", version: VERSION })

/** Runs the CLI on `argv`, starting throwaway local services first when nothing is configured. */
export const cli = (argv: ReadonlyArray<string>) => {
  const wantsHelp = argv.slice(2).some((a) => a === "--help" || a === "-h" || a === "--version") || argv.length <= 2
  // A mistyped command is reported at once, without installing or starting servers first.
  const known = COMMANDS.includes(argv[2] ?? "")
  return (wantsHelp || !known ? Effect.void : reportFailure(ensureLocalServices)).pipe(
    Effect.zipRight(run(argv))
  )
}
