/**
 * Given/when/then for `decide`, in the style of emmett's `DeciderSpecification`:
 *
 *   given(state).when(observation).then(events)
 *   given(stateAfter(o1, o2)).when(o3).thenNothingHappened()
 *
 * `evolve` below is the test's model of what the projection holds after the events `decide` returned were
 * committed and projected (what `SessionStore.loadStates` reads back), so a scenario can be written as a
 * sequence of observations instead of a hand-built `SessionState`.
 */
import { assert } from "@effect/vitest"
import { createHash } from "node:crypto"
import { decide, initialState, type Observation, type ProjectedSession, type SessionState } from "../../src/core/Decide.js"
import type { GoneKind, SyncEvent } from "../../src/core/Events.js"
import { snapshotHash } from "../../src/core/MessageKey.js"
import { decodeSnapshot } from "../../src/core/Snapshot.js"
import { isoToMicros } from "../../src/core/Timestamp.js"

/** How much of a value a rejection keeps in these tests (the shell uses its own bound). */
export const EXCERPT_LENGTH = 200

/** The observation of `raw` read from the key of session `sessionId`. */
export const seen = (sessionId: string, raw: string): Observation => ({
  _tag: "Snapshot",
  sessionId,
  hash: snapshotHash(raw),
  decode: (known, memo) => decodeSnapshot(sessionId, raw, known, memo, memo === undefined ? undefined : snapshotHash(raw)),
  excerpt: raw.slice(0, EXCERPT_LENGTH),
  length: raw.length
})

/** The observation of a document (serialised with `JSON.stringify`). */
export const seenDoc = (sessionId: string, doc: unknown): Observation => seen(sessionId, JSON.stringify(doc))

/** The observation that the key of `sessionId` left Redis. */
export const gone = (sessionId: string, kind: GoneKind): Observation => ({ _tag: "Gone", sessionId, kind })

const goneKindOf = (type: SyncEvent["type"]): GoneKind | null =>
  type === "session_expired" ? "expired" : type === "session_deleted" ? "deleted" : type === "session_evicted" ? "evicted" : null

/** The state the projection holds once `event` is committed and projected. */
export const evolve = (state: SessionState, event: SyncEvent): SessionState => {
  const s = state.session
  switch (event.type) {
    case "session_upserted": {
      const session: ProjectedSession = {
        snapshotHash: event.snapshotHash,
        metaHash: event.payload.meta_hash,
        updatedAtMicros: event.payload.updated_at === null ? null : isoToMicros(event.payload.updated_at),
        messageCount: s?.messageCount ?? 0,
        gone: null,
        messageKeys: s?.messageKeys ?? new Set()
      }
      return { session, rejectedHash: null }
    }
    case "messages_appended": {
      if (s === null) throw new Error("messages_appended before session_upserted: decide never does that")
      const keys = new Set(s.messageKeys)
      for (const m of event.payload.messages) keys.add(m.key)
      return {
        session: {
          ...s,
          snapshotHash: event.snapshotHash,
          messageCount: s.messageCount + event.payload.messages.length,
          messageKeys: keys
        },
        rejectedHash: null
      }
    }
    case "snapshot_rejected":
      return { ...state, rejectedHash: event.snapshotHash }
    default: {
      if (s === null) return state
      return { ...state, session: { ...s, gone: goneKindOf(event.type) } }
    }
  }
}

/** The state after each observation was decided in turn and its events committed. */
export const stateAfter = (...observations: ReadonlyArray<Observation>): SessionState =>
  observations.reduce((state, o) => decide(o, state).reduce(evolve, state), initialState)

export interface Then {
  /** Asserts that `decide` returns exactly `expected`, and returns the state after them. */
  readonly then: (expected: ReadonlyArray<SyncEvent>) => SessionState
  readonly thenNothingHappened: () => void
  /** The events, for assertions that need more than equality. */
  readonly events: ReadonlyArray<SyncEvent>
}

export const given = (state: SessionState) => ({
  when: (observation: Observation): Then => {
    const events = decide(observation, state)
    return {
      events,
      then: (expected) => {
        assert.deepStrictEqual(events, expected)
        return events.reduce(evolve, state)
      },
      thenNothingHappened: () => assert.deepStrictEqual(events, [])
    }
  }
})

/** `meta_hash` as the contract stores it: 128 bits of SHA-256 of the JSON of the metadata fields, in order. */
export const metaHashOf = (fields: {
  readonly topic: string | null
  readonly group_id: string | null
  readonly created_by: string | null
  readonly created_at: string | null
  readonly updated_at: string | null
  readonly extra: Readonly<Record<string, unknown>> | null
}): string =>
  createHash("sha256")
    .update(
      JSON.stringify({
        topic: fields.topic,
        group_id: fields.group_id,
        created_by: fields.created_by,
        created_at: fields.created_at,
        updated_at: fields.updated_at,
        extra: fields.extra
      })
    )
    .digest("hex")
    .slice(0, 32)
