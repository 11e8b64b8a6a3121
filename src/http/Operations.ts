/**
 * What the HTTP endpoints do, one operation each, in the API's terms (`Api.ts` response shapes and errors): the
 * handlers only call these. Built once per server, in the daemon's scope: a manual sync runs in that scope, so a
 * caller that disconnects does not stop it for the callers that joined it.
 */
import type { SqlClient } from "@effect/sql"
import { Cause, Context, Deferred, Effect, Exit, Layer, Option, Ref, type Schema } from "effect"
import * as Metrics from "../Metrics.js"
import * as Database from "../pg/Database.js"
import type { PgError } from "../pg/PgError.js"
import type { SessionStore } from "../pg/SessionStore.js"
import * as RedisClient from "../redis/RedisClient.js"
import type { RedisError } from "../redis/RedisError.js"
import type { SessionSource } from "../redis/SessionSource.js"
import * as Compare from "../sync/Compare.js"
import { Daemon, type DaemonStatus } from "../sync/Daemon.js"
import { type FullSyncOptions, fullSync, type SyncProgress, zeroProgress } from "../sync/FullSync.js"
import * as Rebuild from "../sync/Rebuild.js"
import { syncSession } from "../sync/SyncSession.js"
import {
  type Comparison,
  Conflict,
  type Health,
  InternalError,
  type LedgerPage,
  type ManualSyncResult,
  NotFound,
  NotReady,
  type PauseResult,
  type Ready,
  type RebuildAccepted,
  type RebuildState,
  type RejectionPage,
  SessionNotFound,
  SessionRejected,
  type SessionSyncResult,
  ServiceUnavailable,
  type SyncStatus
} from "./Api.js"
import * as Queries from "./Queries.js"

export interface OperationsOptions {
  /** Options of a manual full sync (and the retry of single-session writes). */
  readonly fullSync: FullSyncOptions
  /** `SYNC_KEY_PREFIX`, for messages. */
  readonly keyPrefix: string
}

type Out<S extends Schema.Schema.Any> = Schema.Schema.Type<S>

export class Operations extends Context.Tag("redis-pg-sync/http/Operations")<Operations, {
  readonly manualSync: Effect.Effect<Out<typeof ManualSyncResult>, Conflict | ServiceUnavailable | InternalError>
  readonly status: Effect.Effect<Out<typeof SyncStatus>>
  readonly syncSession: (
    sessionId: string
  ) => Effect.Effect<Out<typeof SessionSyncResult>, SessionNotFound | SessionRejected | Conflict | ServiceUnavailable | InternalError>
  readonly compare: (limit: number) => Effect.Effect<Out<typeof Comparison>, ServiceUnavailable | InternalError>
  readonly pause: Effect.Effect<Out<typeof PauseResult>>
  readonly resume: Effect.Effect<Out<typeof PauseResult>>
  readonly log: (after: number, limit: number) => Effect.Effect<Out<typeof LedgerPage>, NotFound | ServiceUnavailable | InternalError>
  readonly rejections: (
    after: string | undefined,
    limit: number
  ) => Effect.Effect<Out<typeof RejectionPage>, ServiceUnavailable | InternalError>
  readonly retryRejection: (
    sessionId: string
  ) => Effect.Effect<
    Out<typeof SessionSyncResult>,
    NotFound | SessionNotFound | SessionRejected | Conflict | ServiceUnavailable | InternalError
  >
  readonly health: Effect.Effect<Out<typeof Health>>
  readonly ready: Effect.Effect<Out<typeof Ready>, NotReady>
  readonly metrics: Effect.Effect<string>
  readonly rebuild: Effect.Effect<Out<typeof RebuildAccepted>, Conflict | ServiceUnavailable | InternalError>
}>() {}

/** Redis or PostgreSQL failed: 503 when unreachable, 500 for anything else (a bug or a misconfiguration). */
export const toHttpError = (e: PgError | RedisError): ServiceUnavailable | InternalError => {
  if (e._tag === "RedisError") {
    return new ServiceUnavailable({
      component: "redis",
      message: e.reason === "connection"
        ? `Redis is unreachable (${e.message}); check REDIS_URL/REDIS_HOST and that the server is up`
        : `Redis refused a command (${e.message}); check the user's ACL permissions`
    })
  }
  return e.reason === "connection"
    ? new ServiceUnavailable({
      component: "postgresql",
      message: `PostgreSQL is unreachable (${e.message}); check DATABASE_URL and that the server is up`
    })
    : new InternalError({ message: `PostgreSQL failed: ${e.message}` })
}

/** A comparison as `GET /api/v1/sync/sessions/compare` (and `redis-pg-sync compare --json`) shows it. */
export const comparisonBody = (c: Compare.Comparison): Out<typeof Comparison> => {
  const bucket = (b: Compare.Bucket) => ({ count: b.count, session_ids: b.ids })
  return {
    redis_sessions_count: c.redisSessions,
    postgresql_sessions_count: c.postgresqlSessions,
    redis_session_ids: c.redisSessionIds,
    in_sync: bucket(c.inSync),
    missing_in_postgresql: bucket(c.missingInPostgresql),
    stale: bucket(c.stale),
    rejected: bucket(c.rejected),
    only_in_postgresql: bucket(c.onlyInPostgresql),
    departed_unrecorded: bucket(c.departedUnrecorded),
    has_drift: c.hasDrift,
    limit: c.limit,
    duration_ms: c.durationMs
  }
}

/** A read that must not hang the request: 503 after 10 s. */
const bounded = <A, E, R>(component: "redis" | "postgresql", effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.timeoutFail({
      duration: "10 seconds",
      onTimeout: () =>
        new ServiceUnavailable({
          component,
          message: `${component === "redis" ? "Redis" : "PostgreSQL"} did not answer within 10 s; try again later`
        })
    })
  )

const iso = (millis: number | null): string | null => (millis === null ? null : new Date(millis).toISOString())

const PAUSED = "sync is paused: no new write starts until POST /api/v1/sync/resume"

export const make = (options: OperationsOptions) =>
  Effect.gen(function*() {
    const daemon = yield* Daemon
    const exporter = yield* Metrics.Exporter
    const context = yield* Effect.context<SessionSource | SessionStore | SqlClient.SqlClient | RedisClient.RedisClient>()
    const scope = yield* Effect.scope
    const startedAt = Date.now()
    // The one pause state is the pipeline's (`daemon.pipeline.paused`): manual syncs and the start-up sync follow it.
    const isPaused = daemon.pipeline.isPaused
    yield* Metrics.registerSeries

    // -- lag: how long the oldest change not written yet has waited (0 when everything is written). Under steady
    // load this stays about a batch window; it grows with a backlog, whether or not batches are still finishing.
    const lagOf = (s: DaemonStatus, now: number) =>
      s.pipeline.oldestUnwrittenAt === null ? 0 : Math.max(0, now - s.pipeline.oldestUnwrittenAt) / 1000

    const withServices = <A, E>(effect: Effect.Effect<A, E, SessionSource | SessionStore | SqlClient.SqlClient | RedisClient.RedisClient>) =>
      Effect.provide(effect, context)

    const head = withServices(Queries.ledgerHead).pipe(Effect.timeout("2 seconds"), Effect.option)

    // -- manual sync: one at a time; a call made while one runs joins it. A pause stops it (`setPaused`): no new
    // batch starts, the ones in flight finish, and its callers get a 409 saying how far it came.
    interface Finished {
      readonly progress: SyncProgress
      readonly finishedAt: number
    }
    /** A manual sync stopped by a pause, with what it had written by then. */
    interface StoppedByPause {
      readonly _tag: "StoppedByPause"
      readonly progress: SyncProgress
    }
    type Run = Deferred.Deferred<Finished, PgError | RedisError | StoppedByPause>
    const current = yield* Ref.make<Option.Option<{ readonly run: Run; readonly stop: Deferred.Deferred<void> }>>(
      Option.none()
    )
    const startOrJoin: Effect.Effect<readonly [Run, boolean]> = Effect.uninterruptible(Effect.gen(function*() {
      const running = yield* Ref.get(current)
      if (Option.isSome(running)) {
        // A run a pause stopped is only finishing its batches in flight (after a quick resume, say): joined, it
        // would answer "stopped by a pause". Wait for it to end, then start afresh.
        if (!(yield* Deferred.isDone(running.value.stop))) return [running.value.run, true] as const
        yield* Effect.interruptible(Deferred.await(running.value.run)).pipe(Effect.exit)
        return yield* startOrJoin
      }
      const run: Run = yield* Deferred.make<Finished, PgError | RedisError | StoppedByPause>()
      const stop = yield* Deferred.make<void>()
      yield* Ref.set(current, Option.some({ run, stop }))
      // A pause that came since the caller looked: either it saw this run (and stops it) or it is seen here.
      if (yield* isPaused) yield* Deferred.succeed(stop, undefined)
      const progress = yield* Ref.make(zeroProgress(Date.now()))
      yield* withServices(fullSync("api", options.fullSync, progress, stop)).pipe(
        Effect.flatMap((p) =>
          p.stopped
            ? Effect.fail<StoppedByPause>({ _tag: "StoppedByPause", progress: p })
            : Effect.succeed<Finished>({ progress: p, finishedAt: Date.now() })
        ),
        Effect.onExit((exit) => Ref.set(current, Option.none()).pipe(Effect.zipRight(Deferred.done(run, exit)))),
        // Forked from the uninterruptible start: made interruptible again, so shutdown can stop it.
        Effect.interruptible,
        Effect.forkIn(scope)
      )
      return [run, false] as const
    }))

    const manualSync = Effect.gen(function*() {
      if (yield* isPaused) return yield* new Conflict({ message: `${PAUSED}; a manual sync is refused meanwhile` })
      const [run, joined] = yield* startOrJoin
      const { progress: r, finishedAt } = yield* Deferred.await(run).pipe(
        Effect.mapError((e) =>
          e._tag === "StoppedByPause"
            ? new Conflict({
              message: `the manual sync was stopped by a pause after ${e.progress.scanned} sessions scanned ` +
                `(${e.progress.changed} changed, ${e.progress.messagesInserted} messages inserted); ` +
                `${PAUSED}; run it again after that`
            })
            : toHttpError(e)
        )
      )
      const seconds = (finishedAt - r.startedAt) / 1000
      return {
        message: `Manual sync completed${joined ? " (joined the one already running)" : ""}: ${r.scanned} sessions scanned, ` +
          `${r.changed} changed, ${r.rejected} rejected, ${r.messagesInserted} messages inserted in ${seconds.toFixed(2)} s`,
        joined,
        sessions_scanned: r.scanned,
        sessions_changed: r.changed,
        sessions_unchanged: r.unchanged,
        sessions_rejected: r.rejected,
        sessions_gone: r.departed,
        keys_vanished: r.vanished,
        messages_inserted: r.messagesInserted,
        ledger_events: r.events,
        ledger_seq: r.lastSeq,
        started_at: new Date(r.startedAt).toISOString(),
        duration_seconds: seconds
      }
    })

    // -- rebuild: one at a time in this process (and, through its advisory lock, across replicas).
    interface RebuildRun {
      readonly progress: Ref.Ref<Rebuild.RebuildProgress>
      finishedAt: number | null
      error: string | null
      result: Rebuild.RebuildResult | null
    }
    const lastRebuild = yield* Ref.make<RebuildRun | null>(null)
    const rebuildState = Effect.gen(function*() {
      const run = yield* Ref.get(lastRebuild)
      if (run === null) return null
      const p = yield* Ref.get(run.progress)
      const now = run.finishedAt ?? Date.now()
      const rate = p.eventsReplayed / Math.max((now - p.startedAt) / 1000, 0.001)
      const left = Math.max(p.eventsTotal - p.eventsReplayed, 0)
      return {
        running: run.finishedAt === null,
        phase: p.phase,
        events_replayed: p.eventsReplayed,
        events_total: p.eventsTotal,
        messages_inserted: p.messagesInserted,
        events_per_second: Math.round(rate),
        eta_seconds: run.finishedAt === null && rate > 0 ? Math.round(left / rate) : null,
        started_at: new Date(p.startedAt).toISOString(),
        finished_at: iso(run.finishedAt),
        error: run.error,
        result: run.result === null ? null : {
          last_seq: run.result.lastSeq,
          lock_milliseconds: run.result.lockedMillis,
          tail_events: run.result.tailEvents,
          duration_seconds: run.result.durationMillis / 1000,
          changes: Rebuild.describeChanges(run.result)
        }
      } satisfies Out<typeof RebuildState>
    })
    const rebuild = Effect.gen(function*() {
      const run: RebuildRun = {
        progress: yield* Ref.make(Rebuild.startProgress("")),
        finishedAt: null,
        error: null,
        result: null
      }
      // Claimed in one step: two calls at once cannot both start one.
      const claimed = yield* Ref.modify(lastRebuild, (current) =>
        current !== null && current.finishedAt === null
          ? [Option.none(), current]
          : [Option.some(current), run])
      if (Option.isNone(claimed)) {
        return yield* new Conflict({ message: "a rebuild is already running; follow it in GET /api/v1/sync/status" })
      }
      const previous = claimed.value
      const started = yield* Deferred.make<void, Rebuild.RebuildError | PgError>()
      yield* withServices(Rebuild.rebuild({ onStarted: Deferred.succeed(started, undefined) }, run.progress)).pipe(
        Effect.tap((result) => Effect.sync(() => run.result = result)),
        Effect.tap((r) => Effect.logInfo(`Rebuild completed: ${r.eventsReplayed} events replayed, swapped in (writers waited ${r.lockedMillis} ms)`)),
        Effect.tapError((e) => Effect.logWarning(`Rebuild failed, the live tables are unchanged: ${e.message}`)),
        // Whatever ends it (a failure, a defect, shutdown) also answers a request still waiting for the start.
        Effect.onExit((exit) =>
          Exit.isSuccess(exit)
            ? Effect.void
            : Effect.sync(() =>
              run.error = Option.match(Cause.failureOption(exit.cause), {
                onNone: () => Cause.pretty(exit.cause).split("\n")[0]!,
                onSome: (e) => e.message
              })
            ).pipe(
              Effect.zipRight(Deferred.failCause(started, exit.cause))
            )
        ),
        Effect.ensuring(Effect.sync(() => run.finishedAt = Date.now())),
        Effect.ignore,
        Effect.interruptible,
        Effect.forkIn(scope)
      )
      yield* Deferred.await(started).pipe(
        // Refused before it started (another process holds the schema's rebuild lock): the status keeps showing
        // the last rebuild that ran, not an attempt that never did.
        Effect.tapError(() => Ref.update(lastRebuild, (current) => (current === run ? previous : current))),
        Effect.mapError((e) => e._tag === "RebuildError" ? new Conflict({ message: e.message }) : toHttpError(e))
      )
      return {
        message: "Rebuild started: the ledger is replayed into a shadow schema, checked, then swapped in; " +
          "follow it in GET /api/v1/sync/status",
        rebuild: (yield* rebuildState)!
      }
    })

    const status = Effect.gen(function*() {
      const now = Date.now()
      const s = yield* daemon.status
      const ledger = yield* head
      const pgOk = Option.isSome(ledger)
      const paused = yield* isPaused
      const p = s.pipeline
      const serviceStatus = p.state === "stopped" || p.state === "stopping"
        ? "stopped" as const
        : paused
        ? "paused" as const
        : p.state === "degraded" || !s.redisConnected || !pgOk
        ? "degraded" as const
        : "running" as const
      const lastCommit = Option.flatMap(ledger, Option.map((h) => h.recordedAt))
      return {
        sync_enabled: serviceStatus !== "stopped" && !paused,
        redis_connected: s.redisConnected,
        service_status: serviceStatus,
        postgres_connected: pgOk,
        capture_mode: s.captureMode,
        keyspace_notifications: s.notifications,
        pending_keys: p.pending,
        in_flight_batches: p.inFlightBatches,
        in_flight_sessions: p.inFlightSessions,
        last_event_at: iso(s.lastEventAt),
        last_commit_at: Option.getOrNull(lastCommit),
        lag_seconds: lagOf(s, now),
        ledger_seq: pgOk ? Option.match(Option.flatten(ledger), { onNone: () => 0, onSome: (h) => h.seq }) : null,
        startup_sync_done: s.startupSyncDone,
        startup_sync_running: s.startupSyncRunning,
        reconcile_running: p.reconcileRunning,
        last_reconcile_at: iso(p.lastReconcileAt),
        manual_sync_running: Option.isSome(yield* Ref.get(current)),
        started_at: new Date(startedAt).toISOString(),
        uptime_seconds: Math.round((now - startedAt) / 1000),
        rebuild: yield* rebuildState,
        counters: {
          events_received: { keyspace: s.eventsReceived.keyspace, channel: s.eventsReceived.channel },
          batches_flushed: p.batchesFlushed,
          sessions_flushed: p.sessionsFlushed,
          batches_dropped: p.batchesDropped,
          overflows: p.overflows,
          reconciles: p.reconciles,
          sessions_synced: yield* Metrics.totalOf(Metrics.NAMES.sessionsSynced),
          messages_inserted: yield* Metrics.totalOf(Metrics.NAMES.messagesInserted),
          rejections: yield* Metrics.totalOf(Metrics.NAMES.rejections),
          failures: yield* Metrics.totalOf(Metrics.NAMES.failures)
        }
      }
    })

    const notInRedis = (sessionId: string, extra = "") =>
      new SessionNotFound({
        session_id: sessionId,
        message: `session ${sessionId} not found in Redis (no key ${options.keyPrefix}${sessionId})${extra}`
      })

    const syncOne = (sessionId: string, force = false) =>
      Effect.gen(function*() {
        if (yield* isPaused) return yield* new Conflict({ message: PAUSED })
        return yield* withServices(syncSession(sessionId, "api", options.fullSync, force)).pipe(Effect.mapError(toHttpError))
      })

    const syncedResult = (sessionId: string, r: { events: number; messagesInserted: number; lastSeq: number }, message: string) => ({
      message,
      session_id: sessionId,
      changed: r.events > 0,
      ledger_events: r.events,
      messages_inserted: r.messagesInserted,
      ledger_seq: r.lastSeq
    })

    const syncSessionOp = (sessionId: string) =>
      Effect.gen(function*() {
        const outcome = yield* syncOne(sessionId)
        switch (outcome._tag) {
          case "NotFound":
            return yield* notInRedis(sessionId)
          case "Rejected":
            return yield* new SessionRejected({
              session_id: sessionId,
              reason: outcome.reason,
              message: `session ${sessionId} rejected: ${outcome.reason}; fix its value in Redis and sync it again`
            })
          case "Synced":
            return syncedResult(
              sessionId,
              outcome.result,
              outcome.result.events === 0
                ? `Successfully synced session ${sessionId} (already in sync: nothing to write)`
                : `Successfully synced session ${sessionId}: ${outcome.result.events} events, ` +
                  `${outcome.result.messagesInserted} messages inserted`
            )
        }
      })

    const retryRejection = (sessionId: string) =>
      Effect.gen(function*() {
        const before = yield* bounded("postgresql", withServices(Queries.standingRejection(sessionId))).pipe(
          Effect.catchTag("PgError", (e) => Effect.fail(toHttpError(e)))
        )
        if (Option.isNone(before)) {
          return yield* new NotFound({
            message: `session ${sessionId} has no standing rejection (GET /api/v1/sync/rejections lists them)`
          })
        }
        const outcome = yield* syncOne(sessionId, true)
        switch (outcome._tag) {
          case "NotFound":
            return yield* notInRedis(sessionId, "; its rejection stays on record until a good value arrives")
          case "Rejected":
            return yield* new SessionRejected({
              session_id: sessionId,
              reason: outcome.reason,
              message: `session ${sessionId} is still rejected: ${outcome.reason}; fix its value in Redis, then retry`
            })
          case "Synced": {
            const after = yield* withServices(Queries.standingRejection(sessionId)).pipe(Effect.mapError(toHttpError))
            if (Option.isSome(after)) {
              return yield* new SessionRejected({
                session_id: sessionId,
                reason: after.value.reason,
                message: `session ${sessionId} is still rejected: its value in Redis is the one rejected ` +
                  `(${after.value.reason}); an unchanged value is not written again: fix the value in Redis, then retry`
              })
            }
            return syncedResult(
              sessionId,
              outcome.result,
              `Successfully synced session ${sessionId}: its rejection is cleared (${outcome.result.events} events, ` +
                `${outcome.result.messagesInserted} messages inserted)`
            )
          }
        }
      })

    const compare = (limit: number) =>
      withServices(Compare.compare({ limit, scanCount: options.fullSync.scanCount })).pipe(
        Effect.mapError(toHttpError),
        Effect.map(comparisonBody)
      )

    const setPaused = (value: boolean) =>
      Effect.gen(function*() {
        const was = yield* value ? daemon.pipeline.pause : daemon.pipeline.resume
        // A manual sync under way stops too: it starts no new batch (`manual_sync_running` is true until the ones
        // in flight are written).
        if (value) {
          const manual = yield* Ref.get(current)
          if (Option.isSome(manual)) yield* Deferred.succeed(manual.value.stop, undefined)
        }
        const s = yield* status
        const message = value
          ? was
            ? "Sync was already paused"
            : "Sync paused: changes keep being marked and are written on POST /api/v1/sync/resume"
          : was
          ? `Sync resumed: ${s.pending_keys} pending sessions are being written`
          : "Sync was not paused"
        if (was !== value) yield* Effect.logInfo(value ? "Sync paused over HTTP" : "Sync resumed over HTTP")
        return { message, sync_enabled: s.sync_enabled, service_status: s.service_status, pending_keys: s.pending_keys }
      })

    const log = (after: number, limit: number) =>
      Effect.gen(function*() {
        // One row more than asked tells whether there is more.
        const page = yield* bounded("postgresql", withServices(Queries.readLedger(after, limit + 1))).pipe(
          Effect.catchTag("PgError", (e) => Effect.fail(toHttpError(e)))
        )
        if (Option.isNone(page)) {
          return yield* new NotFound({
            message: `no ledger row with seq ${after}: pass 0 or the next_after of a previous page`
          })
        }
        const rows = page.value.slice(0, limit)
        return {
          events: rows.map((r) => ({
            seq: r.seq,
            tx_id: r.txId,
            session_id: r.sessionId,
            event_type: r.eventType,
            source: r.source,
            snapshot_hash: r.snapshotHash,
            recorded_at: r.recordedAt,
            payload: r.payload
          })),
          next_after: rows.length > 0 ? rows[rows.length - 1]!.seq : after,
          has_more: page.value.length > limit,
          limit
        }
      })

    const rejections = (after: string | undefined, limit: number) =>
      bounded("postgresql", withServices(Queries.listRejections(after, limit + 1))).pipe(
        Effect.catchTag("PgError", (e) => Effect.fail(toHttpError(e))),
        Effect.map(({ rows, total }) => {
          const page = rows.slice(0, limit)
          return {
            rejections: page.map((r) => ({
              session_id: r.sessionId,
              reason: r.reason,
              rejected_at: r.rejectedAt,
              seq: r.seq,
              snapshot_hash: r.snapshotHash,
              excerpt: r.excerpt,
              length: r.length
            })),
            total,
            next_after: rows.length > limit ? page[page.length - 1]!.sessionId : null,
            limit
          }
        })
      )

    const health = Effect.sync(() => ({ status: "ok" as const, uptime_seconds: Math.round((Date.now() - startedAt) / 1000) }))

    const check = <E extends { readonly message: string }>(effect: Effect.Effect<string, E, SqlClient.SqlClient | RedisClient.RedisClient>) =>
      withServices(effect).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => ({ message: "no answer within 2 s" }) }),
        Effect.match({
          onFailure: (e) => ({ ok: false, detail: e.message }),
          onSuccess: (detail) => ({ ok: true, detail })
        })
      )

    const ready = Effect.gen(function*() {
      const [redis, postgresql] = yield* Effect.all([
        check(RedisClient.use("PING", (c) => c.ping())),
        check(Effect.as(Queries.ping, "reachable"))
      ], { concurrency: 2 })
      const migrations = postgresql.ok
        ? yield* check(Database.pendingMigrations.pipe(
          Effect.map((pending) => (pending.length === 0 ? "all applied" : `${pending.join(", ")} not applied`))
        )).pipe(Effect.map((c) => (c.ok && c.detail !== "all applied" ? { ok: false, detail: c.detail } : c)))
        : { ok: false, detail: "not checked: PostgreSQL unreachable" }
      const checks = { redis, postgresql, migrations }
      if (redis.ok && postgresql.ok && migrations.ok) return { status: "ready" as const, checks }
      const failed = [
        redis.ok ? [] : [`Redis: ${redis.detail}`],
        postgresql.ok ? [] : [`PostgreSQL: ${postgresql.detail}`],
        !postgresql.ok || migrations.ok ? [] : [`migrations: ${migrations.detail} (run redis-pg-sync migrate)`]
      ].flat()
      return yield* new NotReady({ message: `not ready: ${failed.join("; ")}`, checks })
    })

    const recordFigures = yield* Metrics.makeFigureRecorder
    const metrics = Effect.gen(function*() {
      const s = yield* daemon.status
      const ledger = yield* head
      yield* recordFigures({
        status: s,
        lagSeconds: lagOf(s, Date.now()),
        paused: yield* isPaused,
        postgresUp: Option.isSome(ledger),
        ledgerSeq: Option.getOrUndefined(Option.map(ledger, Option.match({ onNone: () => 0, onSome: (h) => h.seq })))
      })
      return yield* exporter.scrape
    })

    return Operations.of({
      manualSync,
      status,
      syncSession: syncSessionOp,
      compare,
      pause: setPaused(true),
      resume: setPaused(false),
      log,
      rejections,
      retryRejection,
      health,
      ready,
      metrics,
      rebuild
    })
  })

/** The operations, built in the server's scope. */
export const layer = (options: OperationsOptions) => Layer.scoped(Operations, make(options))
