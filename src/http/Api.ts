/**
 * The HTTP contract (DESIGN §5): every endpoint with its parameters, responses and errors, as Schemas. The
 * handlers are in `Handlers.ts`, the server in `Server.ts`. Response keys are snake_case, the seed's first
 * (`message`, `sync_enabled`, `redis_connected`, `service_status`, `redis_sessions_count`, …).
 *
 * Errors are JSON `{ "_tag": …, "message": … }` with the status on their schema; a request that does not
 * match the schemas gets 400 `HttpApiDecodeError` with the offending parameter in `issues`.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

// -- errors --------------------------------------------------------------------------------------------------------

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401, description: "SYNC_API_TOKEN is set and the request lacks it" })
) {}

export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()(
  "SessionNotFound",
  { session_id: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404, description: "The session has no key in Redis" })
) {}

export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409, description: "The daemon is paused: it writes nothing until resumed" })
) {}

export class SessionRejected extends Schema.TaggedError<SessionRejected>()(
  "SessionRejected",
  { session_id: Schema.String, reason: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 422, description: "The session's value in Redis cannot be a session" })
) {}

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { component: Schema.Literal("redis", "postgresql"), message: Schema.String },
  HttpApiSchema.annotations({ status: 503, description: "Redis or PostgreSQL cannot be reached" })
) {}

export class InternalError extends Schema.TaggedError<InternalError>()(
  "InternalError",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 500 })
) {}

const Check = Schema.Struct({ ok: Schema.Boolean, detail: Schema.String })
const Checks = Schema.Struct({ redis: Check, postgresql: Check, migrations: Check })

export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { message: Schema.String, checks: Checks },
  HttpApiSchema.annotations({ status: 503, description: "Redis or PostgreSQL unreachable, or migrations not applied" })
) {}

// -- parameters ----------------------------------------------------------------------------------------------------

const SESSION_ID_RULE = "session_id must be 1 to 256 characters, none of them a control character"

/** A Redis session id as it follows the key prefix: any text but control characters (spaces, unicode, `:` are fine). */
export const SessionId = Schema.String.pipe(
  Schema.minLength(1, { message: () => SESSION_ID_RULE }),
  Schema.maxLength(256, { message: () => SESSION_ID_RULE }),
  Schema.pattern(/^[^\u0000-\u001f\u007f]*$/, { message: () => SESSION_ID_RULE }),
  Schema.annotations({ identifier: "SessionId", description: "The id after the key prefix (chat:session:{session_id})" })
)

/** A whole number in `[min, max]` given as a decimal string (query parameters arrive as strings). */
const intParam = (name: string, min: number, max: number, description: string) => {
  const message = () => `${name} must be a whole number from ${min} to ${max}`
  return Schema.String.pipe(
    Schema.pattern(/^\d{1,16}$/, { message }),
    Schema.compose(Schema.NumberFromString),
    Schema.filter((n) => Number.isSafeInteger(n) && n >= min && n <= max, { message }),
    Schema.annotations({ description })
  )
}

const SessionPath = Schema.Struct({ session_id: SessionId })

export const COMPARE_DEFAULT_LIMIT = 20
export const PAGE_DEFAULT_LIMIT = 100

const CompareParams = Schema.Struct({
  limit: Schema.optionalWith(intParam("limit", 0, 1000, "Ids listed per category (default 20)"), {
    exact: true,
    default: () => COMPARE_DEFAULT_LIMIT
  })
})

const LogParams = Schema.Struct({
  after: Schema.optionalWith(
    intParam("after", 0, Number.MAX_SAFE_INTEGER, "0 (the default) or the `next_after` of the previous page"),
    { exact: true, default: () => 0 }
  ),
  limit: Schema.optionalWith(intParam("limit", 1, 1000, "Events per page (default 100)"), {
    exact: true,
    default: () => PAGE_DEFAULT_LIMIT
  })
})

const RejectionParams = Schema.Struct({
  after: Schema.optionalWith(
    SessionId.annotations({ description: "The `next_after` of the previous page (a session id)" }),
    { exact: true }
  ),
  limit: Schema.optionalWith(intParam("limit", 1, 1000, "Rejections per page (default 100)"), {
    exact: true,
    default: () => PAGE_DEFAULT_LIMIT
  })
})

// -- responses -----------------------------------------------------------------------------------------------------

const Timestamp = Schema.NullOr(Schema.String).annotations({ description: "ISO-8601 UTC, or null" })

export const ManualSyncResult = Schema.Struct({
  message: Schema.String,
  joined: Schema.Boolean.annotations({ description: "true: this call joined a manual sync already running" }),
  sessions_scanned: Schema.Number,
  sessions_changed: Schema.Number,
  sessions_unchanged: Schema.Number,
  sessions_rejected: Schema.Number,
  sessions_gone: Schema.Number.annotations({ description: "Sessions found gone from Redis and recorded as expired" }),
  keys_vanished: Schema.Number.annotations({ description: "Keys SCAN listed that were gone when read" }),
  messages_inserted: Schema.Number,
  ledger_events: Schema.Number,
  ledger_seq: Schema.Number.annotations({ description: "Last seq this sync appended (0: none)" }),
  started_at: Schema.String,
  duration_seconds: Schema.Number
}).annotations({ identifier: "ManualSyncResult" })

export const RebuildState = Schema.Struct({
  running: Schema.Boolean,
  phase: Schema.Literal("replaying", "catching up", "verifying", "swapping", "done", "failed"),
  events_replayed: Schema.Number,
  events_total: Schema.Number.annotations({ description: "As far as known: the live writer may add more until the swap" }),
  messages_inserted: Schema.Number,
  events_per_second: Schema.Number,
  eta_seconds: Schema.NullOr(Schema.Number),
  started_at: Schema.String,
  finished_at: Timestamp,
  error: Schema.NullOr(Schema.String),
  result: Schema.NullOr(Schema.Struct({
    last_seq: Schema.Number,
    lock_milliseconds: Schema.Number.annotations({ description: "How long writers waited for the swap" }),
    tail_events: Schema.Number.annotations({ description: "Events replayed under the swap's lock" }),
    duration_seconds: Schema.Number,
    changes: Schema.Array(Schema.String).annotations({ description: "Tables whose row count the rebuild changed, a line each" })
  }))
}).annotations({ identifier: "RebuildState", description: "The running or last rebuild of this process" })

export const RebuildAccepted = Schema.Struct({
  message: Schema.String,
  rebuild: RebuildState
}).annotations({ identifier: "RebuildAccepted" })

export const ServiceStatus = Schema.Literal("running", "degraded", "paused", "stopped")

export const SyncStatus = Schema.Struct({
  sync_enabled: Schema.Boolean.annotations({ description: "false while paused or stopping" }),
  redis_connected: Schema.Boolean.annotations({ description: "The change subscriber's connection is up" }),
  service_status: ServiceStatus,
  postgres_connected: Schema.Boolean,
  capture_mode: Schema.String,
  keyspace_notifications: Schema.String,
  pending_keys: Schema.Number.annotations({ description: "Dirty sessions waiting for a batch (not those in flight)" }),
  in_flight_batches: Schema.Number,
  in_flight_sessions: Schema.Number.annotations({ description: "Sessions in the batches being written (or retried)" }),
  last_event_at: Timestamp,
  last_commit_at: Timestamp,
  lag_seconds: Schema.Number.annotations({
    description: "How long the oldest change not written yet has waited (dirty or in flight); 0 when every change is written"
  }),
  ledger_seq: Schema.NullOr(Schema.Number).annotations({ description: "Last seq in sync_log; null when PostgreSQL is unreachable" }),
  startup_sync_done: Schema.Boolean,
  startup_sync_running: Schema.Boolean,
  reconcile_running: Schema.Boolean,
  last_reconcile_at: Timestamp,
  manual_sync_running: Schema.Boolean,
  started_at: Schema.String,
  uptime_seconds: Schema.Number,
  rebuild: Schema.NullOr(RebuildState).annotations({ description: "The running or last rebuild of this process; null: none yet" }),
  counters: Schema.Struct({
    events_received: Schema.Struct({ keyspace: Schema.Number, channel: Schema.Number }),
    batches_flushed: Schema.Number,
    sessions_flushed: Schema.Number,
    batches_dropped: Schema.Number,
    overflows: Schema.Number,
    reconciles: Schema.Number,
    sessions_synced: Schema.Number,
    messages_inserted: Schema.Number,
    rejections: Schema.Number,
    failures: Schema.Number
  }).annotations({ description: "Since the daemon started (sessions_synced … failures: every writer of this process)" })
}).annotations({ identifier: "SyncStatus" })

export const SessionSyncResult = Schema.Struct({
  message: Schema.String,
  session_id: Schema.String,
  changed: Schema.Boolean.annotations({ description: "false: PostgreSQL already stood at this value" }),
  ledger_events: Schema.Number,
  messages_inserted: Schema.Number,
  ledger_seq: Schema.Number.annotations({ description: "Last seq appended (0: none)" })
}).annotations({ identifier: "SessionSyncResult" })

const Bucket = Schema.Struct({
  count: Schema.Number,
  session_ids: Schema.Array(Schema.String).annotations({ description: "The `limit` first ids in sorted order" })
})

export const Comparison = Schema.Struct({
  redis_sessions_count: Schema.Number,
  postgresql_sessions_count: Schema.Number,
  redis_session_ids: Schema.Array(Schema.String).annotations({ description: "The first 10 ids SCAN returned" }),
  in_sync: Bucket,
  missing_in_postgresql: Bucket,
  stale: Bucket.annotations({ description: "In Redis at another value than PostgreSQL stands at (or back after being recorded gone)" }),
  rejected: Bucket.annotations({ description: "In Redis at the value PostgreSQL recorded as rejected" }),
  only_in_postgresql: Bucket.annotations({ description: "Kept by PostgreSQL, gone from Redis (expired or deleted)" }),
  departed_unrecorded: Bucket.annotations({ description: "Of only_in_postgresql: not yet recorded as gone" }),
  has_drift: Schema.Boolean.annotations({ description: "Anything missing, stale or departed unrecorded" }),
  limit: Schema.Number,
  duration_ms: Schema.Number
}).annotations({ identifier: "Comparison" })

export const PauseResult = Schema.Struct({
  message: Schema.String,
  sync_enabled: Schema.Boolean,
  service_status: ServiceStatus,
  pending_keys: Schema.Number
}).annotations({ identifier: "PauseResult" })

export const LedgerEvent = Schema.Struct({
  seq: Schema.Number,
  tx_id: Schema.String,
  session_id: Schema.String,
  event_type: Schema.String,
  source: Schema.String,
  snapshot_hash: Schema.NullOr(Schema.String),
  recorded_at: Schema.String,
  payload: Schema.Unknown
}).annotations({ identifier: "LedgerEvent" })

export const LedgerPage = Schema.Struct({
  events: Schema.Array(LedgerEvent),
  next_after: Schema.Number.annotations({ description: "Pass as `after` to read on (the last event's seq)" }),
  has_more: Schema.Boolean,
  limit: Schema.Number
}).annotations({ identifier: "LedgerPage" })

export const Rejection = Schema.Struct({
  session_id: Schema.String,
  reason: Schema.String,
  rejected_at: Schema.String,
  seq: Schema.Number,
  snapshot_hash: Schema.NullOr(Schema.String),
  excerpt: Schema.NullOr(Schema.String).annotations({ description: "The first 200 characters of the rejected value" }),
  length: Schema.NullOr(Schema.Number)
}).annotations({ identifier: "Rejection" })

export const RejectionPage = Schema.Struct({
  rejections: Schema.Array(Rejection),
  total: Schema.Number.annotations({ description: "Sessions standing rejected" }),
  next_after: Schema.NullOr(Schema.String),
  limit: Schema.Number
}).annotations({ identifier: "RejectionPage" })

export const Health = Schema.Struct({ status: Schema.Literal("ok"), uptime_seconds: Schema.Number })

export const Ready = Schema.Struct({ status: Schema.Literal("ready"), checks: Checks })

// -- security ------------------------------------------------------------------------------------------------------

/**
 * `Authorization: Bearer <SYNC_API_TOKEN>` on the endpoints that change something or show session data; a
 * no-op when SYNC_API_TOKEN is not set.
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("redis-pg-sync/http/Authorization", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

// -- endpoints -----------------------------------------------------------------------------------------------------

export class SyncGroup extends HttpApiGroup.make("sync")
  .add(
    HttpApiEndpoint.post("manual", "/manual")
      .addSuccess(ManualSyncResult)
      .addError(Conflict)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Full sync now; a call made while one runs joins it")
  )
  .add(
    HttpApiEndpoint.get("status", "/status")
      .addSuccess(SyncStatus)
      .annotate(OpenApi.Summary, "Daemon status, capture mode, lag, ledger position, counters")
  )
  .add(
    HttpApiEndpoint.post("syncSession", "/session/:session_id")
      .setPath(SessionPath)
      .addSuccess(SessionSyncResult)
      .addError(SessionNotFound)
      .addError(SessionRejected)
      .addError(Conflict)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Sync one session now")
  )
  .add(
    HttpApiEndpoint.get("compare", "/sessions/compare")
      .setUrlParams(CompareParams)
      .addSuccess(Comparison)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Compare Redis with PostgreSQL: in sync, missing, stale, rejected, only in PostgreSQL")
  )
  .add(
    HttpApiEndpoint.post("pause", "/pause")
      .addSuccess(PauseResult)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Stop writing to PostgreSQL; changes keep being marked (nothing is lost)")
  )
  .add(
    HttpApiEndpoint.post("resume", "/resume")
      .addSuccess(PauseResult)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Write again, starting with what was marked meanwhile")
  )
  .add(
    HttpApiEndpoint.get("log", "/log")
      .setUrlParams(LogParams)
      .addSuccess(LedgerPage)
      .addError(NotFound)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Read the ledger (sync_log) gap-safely, page by page")
  )
  .add(
    HttpApiEndpoint.get("rejections", "/rejections")
      .setUrlParams(RejectionParams)
      .addSuccess(RejectionPage)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Sessions standing rejected, with reasons")
  )
  .add(
    HttpApiEndpoint.post("retryRejection", "/rejections/:session_id/retry")
      .setPath(SessionPath)
      .addSuccess(SessionSyncResult)
      .addError(NotFound)
      .addError(SessionNotFound)
      .addError(SessionRejected)
      .addError(Conflict)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Sync a rejected session again (after its value in Redis was fixed)")
  )
  .add(
    HttpApiEndpoint.post("rebuild", "/rebuild")
      .addSuccess(RebuildAccepted, { status: 202 })
      .addError(Conflict)
      .addError(ServiceUnavailable)
      .middleware(Authorization)
      .annotate(
        OpenApi.Summary,
        "Rebuild the projection tables from the ledger and swap them in; progress in GET /api/v1/sync/status"
      )
  )
  .prefix("/api/v1/sync")
  .annotate(OpenApi.Title, "sync")
{}

export class OpsGroup extends HttpApiGroup.make("ops")
  .add(
    HttpApiEndpoint.get("health", "/health").addSuccess(Health).annotate(OpenApi.Summary, "Liveness: the process answers")
  )
  .add(
    HttpApiEndpoint.get("ready", "/ready")
      .addSuccess(Ready)
      .addError(NotReady)
      .annotate(OpenApi.Summary, "Readiness: Redis and PostgreSQL reachable, migrations applied")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .annotate(OpenApi.Summary, "Prometheus metrics")
  )
{}

export class Api extends HttpApi.make("redis-pg-sync")
  .add(SyncGroup)
  .add(OpsGroup)
  .addError(InternalError)
  .annotate(OpenApi.Title, "redis-pg-sync")
  .annotate(OpenApi.Description, "Keeps chat sessions from Redis durably in PostgreSQL through an append-only ledger")
  .annotate(OpenApi.Version, "0.1.0")
{}
