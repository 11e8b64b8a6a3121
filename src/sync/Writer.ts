/**
 * Writes batches through the `SessionStore` with the pipeline's error policy (DESIGN §4): connection errors
 * are retried on a schedule, data errors never are — the batch is split until the one session PostgreSQL
 * refuses is found, and that session is rejected into the ledger while the rest is written.
 */
import { Duration, Effect, Either, Schedule } from "effect"
import { type Observation, withChanges } from "../core/Decide.js"
import { storable } from "../core/Snapshot.js"
import type { PgError } from "../pg/PgError.js"
import { type BatchResult, emptyBatch, SessionStore, type SourceOf } from "../pg/SessionStore.js"

/** Backoff for connection errors: exponential from 200 ms, jittered, each delay capped at `maxDelay`. */
export const retrySchedule = (maxDelay: Duration.DurationInput, attempts: number) =>
  Schedule.exponential("200 millis", 2).pipe(
    Schedule.jittered,
    // modifyDelay passes (output, delay): cap the jittered delay, not the un-jittered output.
    Schedule.modifyDelay((_, d) => Duration.min(d, Duration.decode(maxDelay))),
    Schedule.intersect(Schedule.recurs(attempts))
  )

export const sumBatches = (a: BatchResult, b: BatchResult): BatchResult => ({
  sessions: a.sessions + b.sessions,
  changed: a.changed + b.changed,
  rejected: a.rejected + b.rejected,
  gone: a.gone + b.gone,
  events: a.events + b.events,
  messagesInserted: a.messagesInserted + b.messagesInserted,
  lastSeq: Math.max(a.lastSeq, b.lastSeq),
  committed: [...a.committed, ...b.committed]
})

/** `o` as a rejection for `error`; `bare`: without the excerpt of its value (in case that is what was refused). */
export const refused = (o: Observation, error: PgError, bare = false): Observation =>
  o._tag === "Snapshot"
    ? withChanges(o, {
      decode: () => Either.left({ reason: storable(`PostgreSQL refused the session: ${error.message}`) }),
      ...(bare ? { excerpt: "" } : {})
    })
    : o

export interface WriteOptions {
  readonly retry: Schedule.Schedule<unknown, PgError>
}

/** Writes one batch; see the module doc for the error policy. */
export const writeBatch = (
  observations: ReadonlyArray<Observation>,
  source: SourceOf,
  options: WriteOptions
): Effect.Effect<BatchResult, PgError, SessionStore> =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const attempt = (batch: ReadonlyArray<Observation>) =>
      store.apply(batch, source).pipe(
        Effect.retry({ schedule: options.retry, while: (e) => e.reason === "connection" })
      )
    const go = (batch: ReadonlyArray<Observation>): Effect.Effect<BatchResult, PgError> =>
      attempt(batch).pipe(
        Effect.catchIf((e) => e.reason === "data", (error) => {
          if (batch.length > 1) {
            const mid = Math.ceil(batch.length / 2)
            return Effect.zipWith(go(batch.slice(0, mid)), go(batch.slice(mid)), sumBatches)
          }
          const id = JSON.stringify(batch[0]!.sessionId)
          // The rejection must not fail the batch in turn: if PostgreSQL refuses it too, it is written without the
          // value's excerpt, and a session that cannot be stored even so (an id with NUL, which no text column
          // holds) is skipped, loudly, so that the rest of the batch is still written.
          const skipped = (last: PgError) =>
            Effect.logError(
              `session ${id} cannot be stored in PostgreSQL at all, not even as a rejection (${last.message}); ` +
                "skipped"
            ).pipe(Effect.as({ ...emptyBatch, sessions: 1 }))
          return Effect.logWarning(`session ${id} rejected: ${error.message}`).pipe(
            Effect.zipRight(attempt(batch.map((o) => refused(o, error)))),
            Effect.catchIf((e) => e.reason === "data", () =>
              attempt(batch.map((o) => refused(o, error, true))).pipe(
                Effect.catchIf((e) => e.reason === "data", skipped)
              ))
          )
        })
      )
    return observations.length === 0 ? emptyBatch : yield* go(observations)
  })
