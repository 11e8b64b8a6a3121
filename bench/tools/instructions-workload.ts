/**
 * The workload `instructions.mjs` counts: the JavaScript side of the writer for sessions in the app's format, with no
 * I/O (no Redis, no PostgreSQL, no Effect runtime). Bundled by instructions.mjs against a checkout's src/ (its imports of
 * ../../src are resolved there).
 *
 * - `first`: a first sync's session: hash the bytes, decode ahead, decide against nothing, stamp seqs, the ledger's
 *   JSON (`Events.ledgerRows`, as `SessionStore` sends it, by batches of 170 sessions, about 1 MB), project.
 * - `append`: a live write: a session the writer knows (memo vouched, keys known) gains one message, written back
 *   the app's way (the whole document); hash, decode (the append shortcut), decide, ledger JSON, project.
 *
 * Every run prepares the data for `--prepare` sessions and works through the first `--sessions` of them, so that two
 * runs differ only by the work on the extra sessions (see instructions.mjs).
 */
import { decide, initialState, type Observation, type SessionState } from "../../src/core/Decide.js"
import { type CommittedEvent, ledgerRows, type SyncEvent } from "../../src/core/Events.js"
import * as MessageKey from "../../src/core/MessageKey.js"
import { project } from "../../src/core/Project.js"
import { decodeAhead, observe } from "../../src/sync/Observe.js"
// @ts-expect-error: plain JavaScript, no types
import { makeSession, pyJson } from "../../../shared/bench/lib.mjs"

/** The memo's keys as `SessionStore.loadStates` gives them to `decide`, in the checkout measured. */
const Held = (MessageKey as { readonly HeldKeys?: new(keys: ReadonlyArray<string>) => ReadonlySet<string> }).HeldKeys
const heldKeys = (keys: ReadonlyArray<string>): ReadonlySet<string> => Held !== undefined ? new Held(keys) : new Set(keys)

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const mode = process.argv.includes("--append") ? "append" : "first"
const sessions = arg("sessions", 500)
const prepare = arg("prepare", sessions)
const messages = arg("messages", 20)
const rounds = arg("rounds", 3)
/**
 * How far each write goes, for a breakdown by difference (append mode): `hash` (read and hash), `decode` (and decode
 * with the memo and known keys, as `decide` would), `decide` (decide instead, which decodes), `ledger` (and the
 * ledger's JSON), `all` (and project).
 */
const STAGES = ["hash", "decode", "decide", "ledger", "all"] as const
const upto = STAGES.indexOf((process.argv[process.argv.indexOf("--upto") + 1] ?? "all") as (typeof STAGES)[number])
const SEED = 42
const BATCH = 170

let seq = 1
const recordedAt = "2026-01-01T00:00:00.000000Z"
const commit = (events: ReadonlyArray<SyncEvent>): Array<CommittedEvent> =>
  events.map((e) => ({ ...e, seq: seq++, recordedAt }) as CommittedEvent)
const ledgerJson = (events: ReadonlyArray<SyncEvent>) => ledgerRows(events, () => "startup")

const read = (sessionId: string, doc: unknown) => ({
  sessionId,
  value: Buffer.from(pyJson(doc)),
  redisType: "string" as const
})

let sink = 0
if (mode === "first") {
  const reads = Array.from({ length: prepare }, (_, i) => {
    const doc = makeSession(SEED, i, messages)
    return read(doc.session_id, doc)
  })
  for (let at = 0; at < sessions; at += BATCH) {
    const observations = reads.slice(at, Math.min(at + BATCH, sessions)).map((raw) => {
      const o = observe(raw)!
      decodeAhead(o)
      return o
    })
    const events = observations.flatMap((o) => decide(o, initialState))
    sink += ledgerJson(events).length
    const changes = project(commit(events))
    sink += JSON.stringify(changes.sessionUpserts).length + changes.users.length
  }
} else {
  // Every prepared session is known to the writer (memo vouched, state as the projection holds it); only the first
  // `sessions` gain messages.
  const docs = Array.from({ length: prepare }, (_, i) => makeSession(SEED, i, messages))
  const states = docs.map((doc) => {
    const memo = new MessageKey.KeyMemo()
    const o = observe(read(doc.session_id, doc))! as Extract<Observation, { _tag: "Snapshot" }>
    const events = decide(o, { session: null, rejectedHash: null })
    // The memo takes the snapshot when decoded with it (as under the writer's lock).
    o.decode(new Set(), memo)
    const upsert = events.find((e) => e.type === "session_upserted")!
    return {
      memo,
      hash: o.hash,
      metaHash: (upsert.payload as { meta_hash: string }).meta_hash,
      count: doc.messages.length
    }
  })
  // The values written in each round, prepared ahead for every prepared session (so that the preparation cancels out):
  // the app's document with one more message.
  const writes = Array.from({ length: rounds }, (_, r) =>
    docs.map((doc) => {
      doc.messages.push({ content: `round ${r} of ${doc.session_id}: a new message`, sender_id: 1, timestamp: doc.updated_at })
      return read(doc.session_id, doc)
    }))
  for (const round of writes) {
    for (let at = 0; at < sessions; at += BATCH) {
      const batch = round.slice(at, Math.min(at + BATCH, sessions))
      const events = batch.flatMap((raw, j) => {
        const s = states[at + j]!
        const state: SessionState = {
          session: {
            snapshotHash: s.hash,
            metaHash: s.metaHash,
            updatedAtMicros: null,
            messageCount: s.count,
            gone: null,
            // As `SessionStore.loadStates` gives them: the memo's vouched keys, as a set (a `HeldKeys` where the
            // checkout measured has it; a `Set` copy before).
            messageKeys: heldKeys(s.memo.keys),
            keyMemo: s.memo
          },
          rejectedHash: null
        }
        const o = observe(raw)!
        // As `SessionStore.loadStates` does, where the checkout has it: the memo's place offered before the hash.
        const point = s.memo.appendPoint
        if (o._tag === "Snapshot" && o.hashAlong !== undefined && point !== undefined) o.hashAlong(point.end, point.rest)
        if (upto === 0 || o._tag !== "Snapshot") return []
        if (upto === 1) {
          sink += o.decode(state.session!.messageKeys, s.memo)._tag.length
          return []
        }
        const decided = decide(o, state)
        s.hash = o.hash
        s.count += decided.reduce((n, e) => n + (e.type === "messages_appended" ? e.payload.messages.length : 0), 0)
        return decided
      })
      if (upto >= 3) sink += ledgerJson(events).length
      if (upto < 4) continue
      const changes = project(commit(events))
      sink += JSON.stringify(changes.sessionUpserts).length + changes.users.length
    }
  }
}
console.log(`sink ${sink}`)
