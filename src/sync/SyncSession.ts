/**
 * Sync one session now (CLI `sync-session`, later `POST /api/v1/sync/session/{id}`).
 */
import { Effect, Either } from "effect"
import { withChanges } from "../core/Decide.js"
import type { Source } from "../core/Events.js"
import type { PgError } from "../pg/PgError.js"
import type { BatchResult } from "../pg/SessionStore.js"
import type { RedisError } from "../redis/RedisError.js"
import { SessionSource } from "../redis/SessionSource.js"
import { observe } from "./Observe.js"
import { type WriteOptions, writeBatch } from "./Writer.js"

export type SessionSyncOutcome =
  | { readonly _tag: "NotFound"; readonly sessionId: string }
  | { readonly _tag: "Rejected"; readonly sessionId: string; readonly reason: string; readonly result: BatchResult }
  | { readonly _tag: "Synced"; readonly sessionId: string; readonly result: BatchResult }

export const syncSession = (
  sessionId: string,
  source: Source,
  options: WriteOptions,
  /** Decide again even if the value is the standing rejection (`POST …/rejections/{id}/retry`). */
  force = false
): Effect.Effect<SessionSyncOutcome, PgError | RedisError, import("../pg/SessionStore.js").SessionStore | SessionSource> =>
  Effect.gen(function*() {
    const redis = yield* SessionSource
    const [raw] = yield* redis.read([sessionId])
    const observed = raw === undefined ? null : observe(raw)
    const observation = observed !== null && force && observed._tag === "Snapshot" ? withChanges(observed, { force }) : observed
    if (observation === null) return { _tag: "NotFound", sessionId } as const
    const result = yield* writeBatch([observation], source, options)
    const refusal = result.committed.find((e) => e.type === "snapshot_rejected")
    const decoded = observation._tag === "Snapshot" ? observation.decode(new Set()) : undefined
    if (refusal?.type === "snapshot_rejected") {
      return { _tag: "Rejected", sessionId, reason: refusal.payload.reason, result } as const
    }
    if (decoded !== undefined && Either.isLeft(decoded)) {
      return { _tag: "Rejected", sessionId, reason: decoded.left.reason, result } as const
    }
    return { _tag: "Synced", sessionId, result } as const
  }).pipe(Effect.withSpan("SyncSession.run", { attributes: { sessionId } }))
