/**
 * Rebuild, verify and look back (DESIGN §3, Rebuild): the projection tables replayed from `sync_log` alone.
 *
 * - `rebuild`: replay into a shadow schema while the live writer keeps appending, catch up with what it
 *   appended meanwhile (in passes, each over the rows committed since the previous pass's snapshot), check the
 *   shadow, then — under a short lock that stops writers — apply the last rows and swap the shadow's tables in.
 *   One rebuild at a time per schema, across processes and replicas (a PostgreSQL advisory lock).
 * - `rebuild` with `into` (and `untilSeq` or `untilTime`): the projection as of a point in the ledger, into a
 *   schema of its own for inspection; the live tables are not touched.
 * - `verify`: in ONE repeatable-read transaction (the live tables and the ledger seen at the same instant, no
 *   lock taken), replay the ledger into a scratch schema and compare it with the live tables, then roll back.
 *
 * The swap takes its locks in the order a writer first touches the tables — the session state it reads, the
 * ledger, then users, groups and the rest — so that it only ever waits for a writer, never in a cycle with one.
 */
import { SqlClient } from "@effect/sql"
import { Data, Duration, Effect, Exit, Ref, Schedule } from "effect"
import type { CommittedEvent } from "../core/Events.js"
import { classify, PgError, transaction } from "../pg/PgError.js"
import * as Replay from "../pg/Replay.js"

export type RebuildPhase = "replaying" | "catching up" | "verifying" | "swapping" | "done" | "failed"

export interface RebuildProgress {
  readonly phase: RebuildPhase
  /** The schema being built. */
  readonly target: string
  readonly eventsReplayed: number
  /** Events to replay, as far as known (the live writer may add more until the swap). */
  readonly eventsTotal: number
  readonly messagesInserted: number
  readonly startedAt: number
}

/** Progress at the start of a rebuild or verify of `target`. */
export const startProgress = (target: string, startedAt = Date.now()): RebuildProgress => ({
  phase: "replaying",
  target,
  eventsReplayed: 0,
  eventsTotal: 0,
  messagesInserted: 0,
  startedAt
})

export interface RebuildOptions {
  /** Build into this schema for inspection and stop there (no swap); it must not exist. */
  readonly into?: string | undefined
  readonly untilSeq?: number | undefined
  /** ISO-8601. */
  readonly untilTime?: string | undefined
  /**
   * Also compare the rebuilt tables with the live ones row by row before the swap (as `verify` does; it reads
   * both projections whole). Without it, only row counts are compared.
   */
  readonly diff?: boolean | undefined
  /** Keep the replaced tables in `{schema}_previous` (see `Replay.derivedName`) instead of dropping them. */
  readonly keepPrevious?: boolean | undefined
  /**
   * Replay transactions in flight at once, each on its own connection (default 2). The sessions of a page are
   * split between them by a hash of their id, so a session's events are still applied in seq order.
   */
  readonly streams?: number | undefined
  /** Events per replay transaction, and messages at most. */
  readonly pageEvents?: number | undefined
  readonly pageMessages?: number | undefined
  /**
   * How long the swap may try to lock the live tables before it gives up (the live tables stay as they were).
   * Each attempt waits at most 200 ms per lock and lets go of everything before the next one, so that neither a
   * writer nor a reader of the tables waits long behind it, and no lock cycle can form. Default 30 seconds.
   */
  readonly lockTimeout?: Duration.DurationInput | undefined
  readonly onProgress?: ((progress: RebuildProgress) => Effect.Effect<void>) | undefined
  /** Called once the rebuild holds its lock and has its schema: it will not be refused from then on. */
  readonly onStarted?: Effect.Effect<void> | undefined
}

export interface RebuildResult {
  readonly target: string
  /** Whether the rebuilt tables replaced the live ones. */
  readonly swapped: boolean
  /** Where the replaced tables went, when kept. */
  readonly previous: string | null
  readonly eventsReplayed: number
  readonly messagesInserted: number
  /** The last seq replayed. */
  readonly lastSeq: number
  /** Row counts of each table, live just before the swap and rebuilt (empty for `into`). */
  readonly rows: ReadonlyArray<{ readonly table: Replay.ProjectionTable; readonly before: number; readonly after: number }>
  /** How the rebuilt tables differ from the live ones just before the swap; null unless asked (`diff`). */
  readonly diff: ReadonlyArray<Replay.TableDiff> | null
  /** Events replayed under the swap's lock, and how long writers waited for it. */
  readonly tailEvents: number
  readonly lockedMillis: number
  readonly durationMillis: number
}

export class RebuildError extends Data.TaggedError("RebuildError")<{ readonly message: string }> {}

/** Advisory lock class of rebuilds (two-int form: never the writers' one-bigint session locks). */
const REBUILD_LOCK_CLASS = 0x72707372

/** `"schema"."table"`. */
const qualified = (schema: string, table: string) => `${Replay.quoteIdent(schema)}.${Replay.quoteIdent(table)}`

/**
 * Holds the rebuild lock of `schema` for the scope, on a connection of its own; returns that connection's
 * backend pid (see `stillHeld`). Fails with a `RebuildError` when another process or replica holds it.
 */
export const rebuildLock = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const conn = yield* sql.reserve
    const [row] = yield* conn.execute(
      "SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok, pg_backend_pid() AS pid",
      [REBUILD_LOCK_CLASS, schema],
      undefined
    )
    if (row.ok !== true) {
      return yield* new RebuildError({ message: `a rebuild of schema ${schema} is already running (another process or replica)` })
    }
    yield* Effect.addFinalizer(() =>
      conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", [REBUILD_LOCK_CLASS, schema], undefined).pipe(Effect.ignore)
    )
    return row.pid as number
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(classify(e))))

/**
 * Whether backend `pid` still holds the rebuild lock of `schema`: the lock lives on an idle connection for the
 * whole rebuild, and dies with it if that connection drops — another replica may have started since.
 */
const stillHeld = (schema: string, pid: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ held: boolean }>`
      SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND pid = ${pid} AND objsubid = 2
          AND classid = ${REBUILD_LOCK_CLASS}::bigint::oid
          AND objid = (hashtext(${schema})::bigint & 4294967295)::oid
      ) AS held`
    return row!.held
  })

/** FNV-1a of a session id: which stream applies its events. */
const streamOf = (sessionId: string, streams: number) => {
  let h = 0x811c9dc5
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 0x01000193)
  return (h >>> 0) % streams
}

/** The events of a page in `streams` parts, each session's events (in seq order) in one part; empty parts left out. */
const splitBySession = (events: ReadonlyArray<CommittedEvent>, streams: number): Array<Array<CommittedEvent>> => {
  const parts = Array.from({ length: streams }, () => [] as Array<CommittedEvent>)
  for (const e of events) parts[streamOf(e.sessionId, streams)]!.push(e)
  return parts.filter((p) => p.length > 0)
}

/**
 * Replays, page after page, the rows the filter selects into `target`, reading the next page while writing one.
 * Returns the last seq and the number of events replayed.
 */
const replayAll = (
  target: string,
  ledger: string,
  filter: Replay.EventFilter,
  options: RebuildOptions,
  progress: Ref.Ref<RebuildProgress>,
  /** Each page in transactions of its own (not inside the caller's): they may commit asynchronously and run in parallel. */
  ownTransactions = false
) =>
  Effect.gen(function*() {
    const pageEvents = options.pageEvents ?? 5000
    const pageMessages = options.pageMessages ?? 50_000
    const read = (after: number) => Replay.readEvents(after, filter, pageEvents, pageMessages)
    const parts = ownTransactions ? Math.max(1, options.streams ?? 2) : 1
    const apply = (events: ReadonlyArray<CommittedEvent>) =>
      parts === 1
        ? Replay.applyEvents(target, ledger, events, ownTransactions ? "ownAsync" : "caller")
        : Effect.map(
          Effect.all(
            splitBySession(events, parts).map((part) => Replay.applyEvents(target, ledger, part, "ownAsync")),
            { concurrency: "unbounded" }
          ),
          (inserted) => inserted.reduce((a, b) => a + b, 0)
        )
    let page = yield* read(0)
    let lastSeq = 0
    let replayed = 0
    while (page.events.length > 0) {
      const events = page.events
      lastSeq = events[events.length - 1]!.seq
      replayed += events.length
      const [inserted, next] = yield* Effect.all([apply(events), read(lastSeq)], {
        concurrency: 2
      })
      const p = yield* Ref.updateAndGet(progress, (p) => ({
        ...p,
        eventsReplayed: p.eventsReplayed + events.length,
        eventsTotal: Math.max(p.eventsTotal, p.eventsReplayed + events.length),
        messagesInserted: p.messagesInserted + inserted
      }))
      if (options.onProgress) yield* options.onProgress(p)
      page = next
    }
    return { lastSeq, replayed }
  })

const setPhase = (progress: Ref.Ref<RebuildProgress>, options: RebuildOptions, phase: RebuildPhase, extraTotal = 0) =>
  Effect.flatMap(
    Ref.updateAndGet(progress, (p) => ({ ...p, phase, eventsTotal: p.eventsTotal + extraTotal })),
    (p) => (options.onProgress ? options.onProgress(p) : Effect.void)
  )

/** Catch-up passes at most: a ledger that grows faster than it is replayed is not swapped in. */
const CATCH_UP_PASSES = 20
/** Below this many new events, the rest is replayed under the swap's lock. */
const TAIL_UNDER_LOCK = 2000

/**
 * The swap, in one transaction: lock the live tables in the order a writer first touches them (it reads
 * sessions, rejections and messages, appends to the ledger, then writes users, groups, participants and the
 * projection state), replay what is still not visible in `snapshot`, check that every ledger row was replayed
 * exactly once, and move the shadow's tables in (the live ones into `previous`, or dropped).
 */
const swapIn = (
  ledger: string,
  target: string,
  snapshot: string,
  previous: string | null,
  options: RebuildOptions,
  state: Ref.Ref<RebuildProgress>,
  lockPid: number
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const q = Replay.quoteIdent
    const tables = Replay.PROJECTION_TABLES.map((t) => t.name)
    const live = (t: string) => qualified(ledger, t)
    const lockTimeout = Duration.decode(options.lockTimeout ?? "30 seconds")
    const deadline = Date.now() + Duration.toMillis(lockTimeout)
    const attempt = transaction(sql, Effect.gen(function*() {
      yield* sql`SELECT set_config('lock_timeout', '200ms', true)`
      const lockedAt = Date.now()
      yield* sql.unsafe(`LOCK TABLE ${["sessions", "rejections", "messages"].map(live).join(", ")} IN ACCESS EXCLUSIVE MODE`)
      yield* sql.unsafe(`LOCK TABLE ${live("sync_log")} IN EXCLUSIVE MODE`)
      yield* sql.unsafe(
        `LOCK TABLE ${["users", "groups", "group_participants", "projection_state"].map(live).join(", ")} IN ACCESS EXCLUSIVE MODE`
      )
      if (!(yield* stillHeld(ledger, lockPid))) {
        return yield* new RebuildError({
          message: "the rebuild lost its lock (its connection dropped; another rebuild may have started): the live tables are unchanged"
        })
      }
      const tail = yield* replayAll(target, ledger, { notVisibleIn: snapshot }, options, state)
      yield* setPhase(state, options, "swapping", tail.replayed)
      const [head] = yield* sql.unsafe<{ seq: string | null; events: string }>(
        `SELECT max(seq)::text AS seq, count(*)::text AS events FROM ${live("sync_log")}`
      )
      const finalSeq = head!.seq === null ? 0 : Number(head!.seq)
      const replayed = (yield* Ref.get(state)).eventsReplayed
      // Under the lock only what is cheap: the thorough check ran before it, and the tail is small.
      const problems = yield* Replay.checkProjection(target, finalSeq, false)
      // Every ledger row replayed exactly once: the writers are stopped, so the count is final.
      if (replayed !== Number(head!.events)) problems.push(`${replayed} events replayed, the ledger holds ${head!.events}`)
      if (problems.length > 0) {
        return yield* new RebuildError({
          message: `the rebuilt projection is inconsistent after catching up, the live tables are unchanged: ${problems.join("; ")}`
        })
      }
      if (previous !== null) {
        yield* sql.unsafe(`CREATE SCHEMA ${q(previous)}`)
        for (const t of tables) yield* sql.unsafe(`ALTER TABLE ${live(t)} SET SCHEMA ${q(previous)}`)
      } else {
        yield* sql.unsafe(`DROP TABLE ${tables.map(live).join(", ")}`)
      }
      for (const t of tables) yield* sql.unsafe(`ALTER TABLE ${q(target)}.${q(t)} SET SCHEMA ${q(ledger)}`)
      return { tailEvents: tail.replayed, lockedMillis: Date.now() - lockedAt, finalSeq }
    }))
    // A lock not had within 200 ms (or a deadlock PostgreSQL broke): everything is let go, and tried again.
    const busy = (e: PgError | RebuildError) => e._tag === "PgError" && /lock timeout|deadlock detected/.test(e.message)
    return yield* attempt.pipe(
      Effect.retry({ while: (e) => busy(e) && Date.now() < deadline, schedule: Schedule.jittered(Schedule.spaced("250 millis")) }),
      Effect.mapError((e) =>
        busy(e)
          ? new RebuildError({
            message: `the swap could not lock the tables within ${Duration.format(lockTimeout)} (long transactions on them?); ` +
              "the live tables are unchanged"
          })
          : e
      )
    )
  })

/**
 * Rebuilds the projection (see the module comment). `progress` is updated as it goes (for the status endpoint);
 * its `target` is set here.
 */
export const rebuild = (options: RebuildOptions, progress?: Ref.Ref<RebuildProgress>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const ledger = yield* Replay.ledgerSchema
    const inspect = options.into !== undefined
    if (!inspect && (options.untilSeq !== undefined || options.untilTime !== undefined)) {
      return yield* new RebuildError({ message: "a rebuild up to a seq or a time builds a past state for inspection: give into too" })
    }
    const target = options.into ?? Replay.derivedName(ledger, "rebuild")
    if (target === ledger) return yield* new RebuildError({ message: `--into must name another schema than ${ledger}, the live one` })
    const initial = startProgress(target, started)
    const state = progress ?? (yield* Ref.make(initial))
    yield* Ref.set(state, initial)

    let lockPid = 0
    if (inspect) {
      if (yield* Replay.schemaExists(target)) {
        return yield* new RebuildError({
          message: `schema ${target} already exists; choose another --into or drop it (DROP SCHEMA ${Replay.quoteIdent(target)} CASCADE)`
        })
      }
    } else {
      lockPid = yield* rebuildLock(ledger)
      // Left over by a rebuild that did not finish: only a rebuild holding the lock creates it.
      yield* Replay.dropSchema(target)
    }
    yield* Replay.createProjectionSchema(target)
    if (options.onStarted) yield* options.onStarted
    // A failed build leaves nothing behind (the schema is this run's own: it did not exist, or was a leftover).
    const cleanUp = Replay.dropSchema(target).pipe(Effect.ignore)

    return yield* Effect.gen(function*() {
      let snapshot = yield* Replay.currentSnapshot
      // A time becomes a seq: the ledger up to the first event recorded after it. `recorded_at` is when a
      // transaction began, not when it took its locks, so times are not in seq order across transactions; only a
      // prefix of the ledger is a state every session really went through.
      const timeBound = options.untilTime === undefined ? undefined : yield* Replay.lastSeqBefore(options.untilTime)
      const bounds = [options.untilSeq, timeBound].filter((b): b is number => b !== undefined)
      const base: Replay.EventFilter = bounds.length === 0 ? {} : { untilSeq: Math.min(...bounds) }
      const total = yield* Replay.countEvents(0, { ...base, visibleIn: snapshot })
      yield* setPhase(state, options, "replaying", total.events)
      // A shadow (or an inspection copy) that a crash would lose is simply built again: its pages commit
      // asynchronously. The swap's own transaction, which replaces the live tables, commits durably.
      let { lastSeq } = yield* replayAll(target, ledger, { ...base, visibleIn: snapshot }, options, state, true)

      if (inspect) {
        yield* setPhase(state, options, "verifying")
        const problems = yield* Replay.checkProjection(target, lastSeq)
        if (problems.length > 0) return yield* new RebuildError({ message: `the replay in ${target} is inconsistent: ${problems.join("; ")}` })
        yield* setPhase(state, options, "done")
        const p = yield* Ref.get(state)
        return {
          target,
          swapped: false,
          previous: null,
          eventsReplayed: p.eventsReplayed,
          messagesInserted: p.messagesInserted,
          lastSeq,
          rows: [],
          diff: null,
          tailEvents: 0,
          lockedMillis: 0,
          durationMillis: Date.now() - started
        } satisfies RebuildResult
      }

      // Catch up without a lock while the live writer keeps appending.
      yield* setPhase(state, options, "catching up")
      // The tail replayed under the swap's lock is what arrived during the last pass: small once a pass is.
      let caughtUp = false
      for (let pass = 0; pass < CATCH_UP_PASSES && !caughtUp; pass++) {
        const next = yield* Replay.currentSnapshot
        const delta: Replay.EventFilter = { visibleIn: next, notVisibleIn: snapshot }
        const pending = yield* Replay.countEvents(0, delta)
        yield* setPhase(state, options, "catching up", pending.events)
        lastSeq = Math.max(lastSeq, (yield* replayAll(target, ledger, delta, options, state, true)).lastSeq)
        snapshot = next
        caughtUp = pending.events < TAIL_UNDER_LOCK
      }
      if (!caughtUp) {
        return yield* new RebuildError({
          message: `writers append faster than the rebuild replays (still ${TAIL_UNDER_LOCK} or more new events after ` +
            `${CATCH_UP_PASSES} passes); the live tables are unchanged: try again when the load is lower`
        })
      }

      yield* setPhase(state, options, "verifying")
      const problems = yield* Replay.checkProjection(target, lastSeq)
      if (problems.length > 0) {
        return yield* new RebuildError({ message: `the rebuilt projection is inconsistent, the live tables are unchanged: ${problems.join("; ")}` })
      }
      const diff = options.diff === true ? yield* Replay.compareProjections(ledger, target) : null

      yield* setPhase(state, options, "swapping")
      const previous = options.keepPrevious === true ? Replay.derivedName(ledger, "previous") : null
      if (previous !== null) yield* Replay.dropSchema(previous)
      const tables = Replay.PROJECTION_TABLES.map((t) => t.name)
      // Counted before the lock (writers do not wait for it): the figures stand for "just before the swap".
      const [before, after] = [yield* Replay.countRows(ledger), yield* Replay.countRows(target)]
      const rows = tables.map((table) => ({ table, before: before.get(table)!, after: after.get(table)! }))
      const { tailEvents, lockedMillis, finalSeq } = yield* swapIn(ledger, target, snapshot, previous, options, state, lockPid)
      // Swapped: from here on nothing may read as a failure. The shadow schema is empty; the next rebuild drops it
      // if this does not.
      yield* Replay.dropSchema(target).pipe(
        Effect.catchAll((e) => Effect.logWarning(`the empty schema ${target} stays: ${e.message}`))
      )
      yield* setPhase(state, options, "done")
      const p = yield* Ref.get(state)
      return {
        target: ledger,
        swapped: true,
        previous,
        eventsReplayed: p.eventsReplayed,
        messagesInserted: p.messagesInserted,
        lastSeq: Math.max(lastSeq, finalSeq),
        rows,
        diff,
        tailEvents,
        lockedMillis,
        durationMillis: Date.now() - started
      } satisfies RebuildResult
    }).pipe(
      Effect.onExit((exit) =>
        Exit.isFailure(exit)
          ? Effect.zipRight(cleanUp, Ref.update(state, (p) => ({ ...p, phase: "failed" as const })))
          : Effect.void
      )
    )
  }).pipe(Effect.scoped)

export interface VerifyResult {
  /** Whether the live tables are exactly a replay of the ledger. */
  readonly same: boolean
  readonly diff: ReadonlyArray<Replay.TableDiff>
  /** Internal inconsistencies of the replay itself (none expected). */
  readonly problems: ReadonlyArray<string>
  readonly eventsReplayed: number
  readonly lastSeq: number
  readonly durationMillis: number
}

class Rollback extends Data.TaggedError("Rollback")<{ readonly result: VerifyResult }> {}

/**
 * Compares the live tables with a replay of the ledger (see the module comment). Nothing is written: the scratch
 * schema lives and dies in one transaction, which holds ACCESS SHARE on the live tables: a rebuild cannot swap
 * them meanwhile. A long verify holds back vacuum and the gap-safe ledger readers
 * (`GET /api/v1/sync/log`) for its duration, as any long transaction does.
 */
export const verify = (
  options: Pick<RebuildOptions, "pageEvents" | "pageMessages" | "onProgress"> = {},
  progress?: Ref.Ref<RebuildProgress>
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const started = Date.now()
    const ledger = yield* Replay.ledgerSchema
    const scratch = Replay.derivedName(ledger, `verify_${process.pid}_${started.toString(36)}`)
    const initial = startProgress(scratch, started)
    const state = progress ?? (yield* Ref.make(initial))
    yield* Ref.set(state, initial)
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`
      // Before the snapshot (LOCK does not take one): a rebuild's swap committed during the replay would make the
      // live names point at tables whose rows this snapshot cannot see, and verify would find them empty. Held,
      // the lock makes a concurrent rebuild wait for it (or give up after its lockTimeout) instead.
      yield* sql.unsafe(
        `LOCK TABLE ${Replay.PROJECTION_TABLES.map((t) => qualified(ledger, t.name)).join(", ")} ` +
          "IN ACCESS SHARE MODE"
      )
      const total = yield* Replay.countEvents(0, {})
      yield* setPhase(state, options, "replaying", total.events)
      yield* Replay.createProjectionSchema(scratch)
      const { lastSeq, replayed } = yield* replayAll(scratch, ledger, {}, options, state)
      yield* setPhase(state, options, "verifying")
      const problems = yield* Replay.checkProjection(scratch, lastSeq)
      const diff = yield* Replay.compareProjections(ledger, scratch)
      const result: VerifyResult = {
        same: problems.length === 0 && diff.every((d) => d.same),
        diff,
        problems,
        eventsReplayed: replayed,
        lastSeq,
        durationMillis: Date.now() - started
      }
      return yield* new Rollback({ result })
    })).pipe(
      Effect.catchTag("Rollback", (r) => Effect.succeed(r.result)),
      Effect.mapError((e) => (e instanceof PgError ? e : classify(e)))
    )
  })

/**
 * What a rebuild changed, a line per table: the row-by-row differences when they were compared (`diff`), else
 * the row counts that changed.
 */
export const describeChanges = (result: Pick<RebuildResult, "rows" | "diff">): Array<string> =>
  result.diff !== null
    ? describeDiff(result.diff, "before", "rebuilt")
    : result.rows.filter((r) => r.before !== r.after).map((r) => `${r.table}: ${r.before} rows before, ${r.after} rebuilt`)

/** A readable summary of how two projections differ, one line per table that does. */
export const describeDiff = (diff: ReadonlyArray<Replay.TableDiff>, left = "live", right = "replay"): Array<string> =>
  diff.filter((d) => !d.same).map((d) =>
    `${d.table}: ${d.rows[0]} rows ${left}, ${d.rows[1]} ${right}; ${d.onlyLeft} only ${left}, ${d.onlyRight} only ${right}, ` +
    `${d.changed} with other values` + (d.sample.length > 0 ? `; e.g. ${d.sample.join(", ")}` : "")
  )

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

/** One line of progress for a terminal or the logs: phase, events replayed of the total, rate, ETA. */
export const describeProgress = (p: RebuildProgress, now: number): string => {
  const secs = Math.max((now - p.startedAt) / 1000, 0.001)
  const rate = p.eventsReplayed / secs
  const left = Math.max(p.eventsTotal - p.eventsReplayed, 0)
  const percent = p.eventsTotal === 0 ? 100 : Math.floor((100 * p.eventsReplayed) / p.eventsTotal)
  const eta = p.phase === "replaying" && rate > 0 && left > 0 ? `, ETA ${fmt(left / rate)} s` : ""
  return `${p.phase}: ${fmt(p.eventsReplayed)} of ${fmt(p.eventsTotal)} events (${percent} %), ` +
    `${fmt(p.messagesInserted)} messages, ${fmt(rate)} events/s, ${fmt(p.messagesInserted / secs)} messages/s${eta}`
}
