import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { readFileSync } from "node:fs"
import { decide, initialState, type Observation, type SessionState } from "../../src/core/Decide.js"
import { type AppendedMessage, MESSAGES_PER_EVENT, type SyncEvent } from "../../src/core/Events.js"
import { snapshotHash } from "../../src/core/MessageKey.js"
import { decodeSnapshot } from "../../src/core/Snapshot.js"
import { evolve, given, gone, metaHashOf, seen, seenDoc, stateAfter } from "./Given.js"

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url)
const fixture = (path: string): string => readFileSync(new URL(path, FIXTURES), "utf8")

const SID = "trip-1"

interface Msg {
  readonly content: string
  readonly sender_id?: number | string
  readonly timestamp?: string | number
}
interface Doc {
  readonly topic?: string
  readonly group_id?: number | string
  readonly created_by?: number | string
  readonly created_at?: string
  readonly updated_at?: string
  readonly messages?: ReadonlyArray<Msg>
  readonly [extra: string]: unknown
}

const m = (i: number, sender_id = 1 + (i % 2)): Msg => ({
  content: `message ${i}`,
  sender_id,
  timestamp: `2025-06-01T10:00:${String(i).padStart(2, "0")}Z`
})
const v1: Doc = {
  topic: "Trip planning",
  group_id: 1,
  created_by: 1,
  created_at: "2025-06-01T10:00:00Z",
  updated_at: "2025-06-01T10:00:01Z",
  messages: [m(0), m(1)]
}

const raw = (doc: Doc): string => JSON.stringify(doc)
const obs = (doc: Doc, sessionId = SID): Observation => seenDoc(sessionId, doc)

/** The keys decoding gives the messages of `doc` (their derivation is `MessageKey.test.ts`'s business). */
const keysOf = (doc: Doc, sessionId = SID): ReadonlyArray<string> => {
  const result = decodeSnapshot(sessionId, raw(doc))
  if (Either.isLeft(result)) return assert.fail(result.left.reason)
  return result.right.messages.map((x) => x.key)
}

/** The exact `session_upserted` for `doc`, whose fields are all canonical already. */
const upserted = (
  doc: Doc,
  sessionId = SID,
  warnings?: ReadonlyArray<string>,
  text: string = raw(doc)
): SyncEvent => {
  const { created_at, created_by, group_id, messages: _, topic, updated_at, ...extra } = doc
  const fields = {
    topic: topic ?? null,
    group_id: group_id === undefined ? null : String(group_id),
    created_by: created_by === undefined ? null : String(created_by),
    created_at: created_at === undefined ? null : created_at.replace("Z", ".000000Z"),
    updated_at: updated_at === undefined ? null : updated_at.replace("Z", ".000000Z"),
    extra: Object.keys(extra).length === 0 ? null : extra
  }
  const payload = warnings === undefined
    ? { v: 1 as const, ...fields, meta_hash: metaHashOf(fields) }
    : { v: 1 as const, ...fields, meta_hash: metaHashOf(fields), warnings }
  return { type: "session_upserted", sessionId, snapshotHash: snapshotHash(text), payload }
}

/** The exact `AppendedMessage` for message `index` of `doc`, at `ordinal`. */
const appendedMessage = (doc: Doc, index: number, ordinal: number, sessionId = SID): AppendedMessage => {
  const x = doc.messages![index]!
  return {
    key: keysOf(doc, sessionId)[index]!,
    ordinal,
    sender: x.sender_id === undefined ? null : String(x.sender_id),
    content: x.content,
    sent_at: typeof x.timestamp === "string" ? x.timestamp.replace("Z", ".000000Z") : null,
    extra: null
  }
}

/** The exact `messages_appended` of messages `indices` of `doc`, numbered on from `firstOrdinal`. */
const appended = (doc: Doc, indices: ReadonlyArray<number>, firstOrdinal: number, sessionId = SID): SyncEvent => ({
  type: "messages_appended",
  sessionId,
  snapshotHash: snapshotHash(raw(doc)),
  payload: {
    v: 1,
    group_id: doc.group_id === undefined ? null : String(doc.group_id),
    messages: indices.map((index, i) => appendedMessage(doc, index, firstOrdinal + i, sessionId))
  }
})

const synced = (...docs: ReadonlyArray<Doc>): SessionState => stateAfter(...docs.map((d) => obs(d)))

describe("Decide.decide", () => {
  describe("a session seen for the first time", () => {
    it("is upserted, then all its messages are appended with ordinals 0..n-1", () => {
      const state = given(initialState).when(obs(v1)).then([upserted(v1), appended(v1, [0, 1], 0)])
      assert.strictEqual(state.session?.messageCount, 2)
    })

    it("the basic fixture: upsert with its metadata, then its three messages in order", () => {
      const text = fixture("sessions/basic.json")
      const events = decide(seen("basic-1", text), initialState)
      assert.deepStrictEqual(events.map((e) => e.type), ["session_upserted", "messages_appended"])
      const [upsert, append] = events
      assert.deepStrictEqual(upsert, {
        type: "session_upserted",
        sessionId: "basic-1",
        snapshotHash: snapshotHash(text),
        payload: {
          v: 1,
          topic: "Trip planning",
          group_id: "1",
          created_by: "1",
          created_at: "2025-06-01T10:00:00.000000Z",
          updated_at: "2025-06-01T10:05:00.000000Z",
          extra: null,
          meta_hash: metaHashOf({
            topic: "Trip planning",
            group_id: "1",
            created_by: "1",
            created_at: "2025-06-01T10:00:00.000000Z",
            updated_at: "2025-06-01T10:05:00.000000Z",
            extra: null
          })
        }
      })
      assert.strictEqual(append?.type, "messages_appended")
      if (append?.type !== "messages_appended") return
      assert.strictEqual(append.snapshotHash, snapshotHash(text))
      assert.strictEqual(append.payload.group_id, "1")
      assert.deepStrictEqual(
        append.payload.messages.map(({ key: _, ...rest }) => rest),
        [
          { ordinal: 0, sender: "1", content: "hi", sent_at: "2025-06-01T10:00:03.000000Z", extra: null },
          { ordinal: 1, sender: "2", content: "Hello! How can I help?", sent_at: "2025-06-01T10:00:04.000000Z", extra: null },
          { ordinal: 2, sender: "1", content: "Find me a train to Lyon", sent_at: "2025-06-01T08:01:00.000000Z", extra: null }
        ]
      )
    })

    it("a session without messages is upserted only", () => {
      const doc: Doc = { topic: "empty", messages: [] }
      given(initialState).when(obs(doc)).then([upserted(doc)])
    })

    it("meta_hash is pinned: a change in how it is computed would re-upsert every session", () => {
      const [upsert] = decide(obs(v1), initialState)
      assert.strictEqual(upsert?.type === "session_upserted" && upsert.payload.meta_hash, "481605cea3e81a72e3467421237e28e7")
    })

    it("decode warnings travel in the upsert payload; unknown fields in its extra", () => {
      const doc: Doc = { topic: "w", model: "gpt-x", messages: [{ content: "x", sender_id: 1, timestamp: "soon" }] }
      const [upsert, append] = decide(obs(doc), initialState)
      assert.deepStrictEqual(upsert, upserted(doc, SID, [`messages[0].timestamp: "soon" is not a time; kept in extra`]))
      assert.deepStrictEqual(
        append?.type === "messages_appended" && append.payload.messages.map(({ key: _, ...rest }) => rest),
        [{ ordinal: 0, sender: "1", content: "x", sent_at: null, extra: { timestamp: "soon" } }]
      )
    })
  })

  describe("an unchanged value appends nothing", () => {
    it("same hash as the last synced snapshot", () => {
      given(synced(v1)).when(obs(v1)).thenNothingHappened()
    })

    it("same hash as the last rejected value", () => {
      const bad = "{not json"
      given(stateAfter(seen(SID, bad))).when(seen(SID, bad)).thenNothingHappened()
      given(stateAfter(obs(v1), seen(SID, bad))).when(seen(SID, bad)).thenNothingHappened()
    })

    it("the last synced value coming back after a rejection is recorded, so the rejection no longer stands", () => {
      const state: SessionState = { ...synced(v1), rejectedHash: snapshotHash("{not json") }
      const events = decide(obs(v1), state)
      assert.deepStrictEqual(events.map((e) => e.type), ["session_upserted"])
    })
  })

  describe("a value that cannot be a session", () => {
    it("a snapshot whose decoding gave two messages one key (a defect) is rejected, not half kept", () => {
      const good = obs(v1)
      const decoded = good._tag === "Snapshot" ? good.decode(new Set()) : assert.fail("not a snapshot")
      if (Either.isLeft(decoded)) return assert.fail(decoded.left.reason)
      const [a, b] = decoded.right.messages
      const broken: Observation = {
        ...good,
        _tag: "Snapshot",
        hash: "h-broken",
        excerpt: "x",
        length: 1,
        decode: () => Either.right({ ...decoded.right, messages: [a!, { ...b!, key: a!.key }] })
      }
      const events = decide(broken, initialState)
      assert.deepStrictEqual(events.map((e) => e.type), ["snapshot_rejected"])
      assert.match((events[0]!.payload as { reason: string }).reason, new RegExp(`two messages share the key ${a!.key}`))
    })

    it("gives one snapshot_rejected with the reason, excerpt and length", () => {
      const bad = `{"topic":"bad","messages":{"content":"object instead of list"}}`
      given(initialState).when(seen(SID, bad)).then([{
        type: "snapshot_rejected",
        sessionId: SID,
        snapshotHash: snapshotHash(bad),
        payload: { v: 1, reason: `"messages" is an object, not an array`, excerpt: bad, length: bad.length }
      }])
    })

    it("the excerpt is whatever bounded excerpt the observation carries", () => {
      const bad = "x".repeat(1000)
      const [event] = decide(seen(SID, bad), initialState)
      assert.strictEqual(event?.type, "snapshot_rejected")
      if (event?.type !== "snapshot_rejected") return
      assert.strictEqual(event.payload.excerpt, "x".repeat(200))
      assert.strictEqual(event.payload.length, 1000)
      assert.match(event.payload.reason, /^not JSON: /)
    })

    it("a synced session whose value turns bad is rejected, and nothing else happens", () => {
      const events = decide(seen(SID, "42"), synced(v1))
      assert.deepStrictEqual(events, [{
        type: "snapshot_rejected",
        sessionId: SID,
        snapshotHash: snapshotHash("42"),
        payload: { v: 1, reason: "the value is a number, not a JSON object", excerpt: "42", length: 2 }
      }])
    })

    it("a different bad value after a rejection is rejected again", () => {
      const [event] = decide(seen(SID, "43"), stateAfter(seen(SID, "42")))
      assert.strictEqual(event?.type === "snapshot_rejected" && event.snapshotHash, snapshotHash("43"))
    })

    it("a good value after a rejection is accepted: upsert and messages", () => {
      given(stateAfter(seen(SID, "42"))).when(obs(v1)).then([upserted(v1), appended(v1, [0, 1], 0)])
    })
  })

  describe("new messages only", () => {
    it("an appended message is the only one appended, with ordinal = projected count", () => {
      const v2: Doc = { ...v1, messages: [m(0), m(1), m(2)] }
      given(synced(v1)).when(obs(v2)).then([appended(v2, [2], 2)])
    })

    it("a new message with a newer updated_at: the metadata change is upserted, then the message appended", () => {
      const v2: Doc = { ...v1, updated_at: "2025-06-01T10:00:02Z", messages: [m(0), m(1), m(2)] }
      given(synced(v1)).when(obs(v2)).then([upserted(v2), appended(v2, [2], 2)])
    })

    it("a snapshot whose oldest message was trimmed, with one new message, appends only that one", () => {
      const v2: Doc = { ...v1, messages: [m(0), m(1), m(2)] }
      const trimmed: Doc = { ...v1, messages: [m(1), m(2), m(3)] }
      given(synced(v1, v2)).when(obs(trimmed)).then([appended(trimmed, [2], 3)])
    })

    it("several appends in turn number on from the projection", () => {
      const v2: Doc = { ...v1, messages: [m(0), m(1), m(2)] }
      const v3: Doc = { ...v1, messages: [m(0), m(1), m(2), m(3), m(4)] }
      given(synced(v1, v2)).when(obs(v3)).then([appended(v3, [3, 4], 3)])
    })

    it("the same words said again are a new message", () => {
      const again: Doc = { ...v1, messages: [m(0), m(1), m(1)] }
      given(synced(v1)).when(obs(again)).then([appended(again, [2], 2)])
    })

    it("a new message inserted between known ones is appended at the end of the projection", () => {
      const v2: Doc = { ...v1, messages: [m(0), m(5), m(1)] }
      given(synced(v1)).when(obs(v2)).then([appended(v2, [1], 2)])
    })

    it("messages_appended carries the snapshot's group", () => {
      const moved: Doc = { ...v1, group_id: "9", updated_at: "2025-06-01T10:00:02Z", messages: [m(0), m(1), m(2)] }
      const [, append] = decide(obs(moved), synced(v1))
      assert.strictEqual(append?.type === "messages_appended" && append.payload.group_id, "9")
    })

    it(`more than MESSAGES_PER_EVENT (${MESSAGES_PER_EVENT}) new messages are split into several events`, () => {
      const n = MESSAGES_PER_EVENT * 2 + 1
      const doc: Doc = { topic: "big", messages: Array.from({ length: n }, (_, i) => ({ content: `m${i}`, sender_id: 1 })) }
      const events = decide(obs(doc), initialState)
      assert.deepStrictEqual(events.map((e) => e.type), [
        "session_upserted",
        "messages_appended",
        "messages_appended",
        "messages_appended"
      ])
      const batches = events.flatMap((e) => (e.type === "messages_appended" ? [e.payload.messages] : []))
      assert.deepStrictEqual(batches.map((b) => b.length), [MESSAGES_PER_EVENT, MESSAGES_PER_EVENT, 1])
      const ordinals = batches.flat().map((x) => x.ordinal)
      assert.deepStrictEqual(ordinals, Array.from({ length: n }, (_, i) => i))
      assert.deepStrictEqual(batches.flat().map((x) => x.content), doc.messages!.map((x) => x.content))
      assert.deepStrictEqual(batches.flat().map((x) => x.key), keysOf(doc))
    })

    it("exactly MESSAGES_PER_EVENT new messages fit one event", () => {
      const doc: Doc = {
        topic: "big",
        messages: Array.from({ length: MESSAGES_PER_EVENT }, (_, i) => ({ content: `m${i}` }))
      }
      const events = decide(obs(doc), initialState)
      assert.deepStrictEqual(events.map((e) => e.type), ["session_upserted", "messages_appended"])
    })
  })

  describe("no regression: an older snapshot adds its missing messages but never rolls metadata back", () => {
    const v2: Doc = { ...v1, topic: "Trip to Lyon", updated_at: "2025-06-01T10:05:00Z", messages: [m(0), m(1), m(2)] }

    it("an older snapshot (earlier updated_at) with a message the projection lacks: messages_appended, no upsert", () => {
      const older: Doc = { ...v1, messages: [m(0), m(1), m(7)] }
      given(synced(v2)).when(obs(older)).then([appended(older, [2], 3)])
    })

    it("an older snapshot with nothing new appends nothing", () => {
      given(synced(v2)).when(obs(v1)).thenNothingHappened()
    })

    it("with equal updated_at, fewer messages than projected is older", () => {
      const fewer: Doc = { ...v2, topic: "renamed", messages: [m(0), m(1)] }
      given(synced(v2)).when(obs(fewer)).thenNothingHappened()
    })

    it("without updated_at, fewer messages than projected is older", () => {
      const a: Doc = { topic: "a", messages: [m(0), m(1), m(2)] }
      const b: Doc = { topic: "b", messages: [m(0), m(1)] }
      given(synced(a)).when(obs(b)).thenNothingHappened()
    })

    it("without updated_at, fewer messages but a new one is not older: the app trimmed its oldest", () => {
      const a: Doc = { topic: "A", messages: [m(0), m(1), m(2), m(3)] }
      const trimmed: Doc = { topic: "B", messages: [m(2), m(3), m(4)] }
      given(synced(a)).when(obs(trimmed)).then([upserted(trimmed), appended(trimmed, [2], 4)])
    })

    it("a metadata change with a newer updated_at is upserted", () => {
      const renamed: Doc = { ...v2, topic: "Trip to Lyon and back", updated_at: "2025-06-01T10:06:00Z" }
      given(synced(v2)).when(obs(renamed)).then([upserted(renamed)])
    })

    it("a metadata change with the same updated_at and message count is upserted", () => {
      const renamed: Doc = { ...v2, topic: "Trip to Lyon and back" }
      given(synced(v2)).when(obs(renamed)).then([upserted(renamed)])
    })

    it("a metadata change without any updated_at and no fewer messages is upserted", () => {
      const a: Doc = { topic: "a", messages: [m(0)] }
      const b: Doc = { topic: "b", group_id: 4, messages: [m(0), m(1)] }
      given(synced(a)).when(obs(b)).then([upserted(b), appended(b, [1], 1)])
    })

    it("a snapshot that gains updated_at where the projection has none is compared by message count", () => {
      const a: Doc = { topic: "a", messages: [m(0), m(1)] }
      const b: Doc = { topic: "a", updated_at: "2025-06-01T10:00:00Z", messages: [m(0)] }
      given(synced(a)).when(obs(b)).thenNothingHappened()
    })

    it("updated_at is compared as an instant, not as text", () => {
      const sameInstant: Doc = { ...v2, updated_at: "2025-06-01T12:05:00+02:00", topic: "same instant" }
      given(synced(v2)).when(obs(sameInstant)).then([
        upserted({ ...sameInstant, updated_at: "2025-06-01T10:05:00Z" }, SID, undefined, raw(sameInstant))
      ])
      const earlierInstant: Doc = { ...v2, updated_at: "2025-06-01T11:05:00+02:00", topic: "earlier" }
      given(synced(v2)).when(obs(earlierInstant)).thenNothingHappened()
    })

    it("a new value with the same metadata and no new messages is upserted, so its hash is remembered", () => {
      const reformatted = JSON.stringify(v2, null, 2)
      const [event, ...rest] = decide(seen(SID, reformatted), synced(v2))
      assert.deepStrictEqual(rest, [])
      assert.deepStrictEqual(event, upserted(v2, SID, undefined, reformatted))
      given(stateAfter(obs(v2), seen(SID, reformatted))).when(seen(SID, reformatted)).thenNothingHappened()
    })
  })

  describe("a key that left Redis", () => {
    it("a known session is stamped once per kind: expired, deleted, evicted", () => {
      for (const kind of ["expired", "deleted", "evicted"] as const) {
        const state = given(synced(v1)).when(gone(SID, kind)).then([
          { type: `session_${kind}`, sessionId: SID, snapshotHash: null, payload: { v: 1 } }
        ])
        given(state).when(gone(SID, kind)).thenNothingHappened()
      }
    })

    it("a session already gone another way is stamped with the new kind", () => {
      given(stateAfter(obs(v1), gone(SID, "expired"))).when(gone(SID, "deleted")).then([
        { type: "session_deleted", sessionId: SID, snapshotHash: null, payload: { v: 1 } }
      ])
    })

    it("a session never synced: nothing", () => {
      given(initialState).when(gone(SID, "expired")).thenNothingHappened()
    })

    it("a session only ever rejected: nothing", () => {
      given(stateAfter(seen(SID, "42"))).when(gone(SID, "deleted")).thenNothingHappened()
    })

    it("a session that comes back with a new value is upserted", () => {
      const back: Doc = { ...v1, updated_at: "2025-06-02T09:00:00Z" }
      given(stateAfter(obs(v1), gone(SID, "expired"))).when(obs(back)).then([upserted(back)])
    })

    it("a snapshot older than the projection adds its missing messages but does not bring the session back", () => {
      // A read from before the key left, committed after: upserting it would roll metadata back, and the two
      // orders of the same events would end differently.
      const v2: Doc = { ...v1, updated_at: "2025-06-01T10:05:00Z", messages: [m(0), m(1), m(2)] }
      const stale: Doc = { ...v1, messages: [m(0), m(1), m(8)] }
      const state = given(stateAfter(obs(v2), gone(SID, "evicted"))).when(obs(stale)).then([appended(stale, [2], 3)])
      // Still gone: leaving again records nothing, and the newer value brings it back.
      given(state).when(gone(SID, "evicted")).thenNothingHappened()
      const back: Doc = { ...v2, updated_at: "2025-06-01T10:06:00Z" }
      given(state).when(obs(back)).then([upserted(back)])
    })

    it("a reconcile's stale read and a deletion commute: the session ends renamed and deleted either way", () => {
      const old: Doc = { ...v1, topic: "old", updated_at: "2025-06-01T10:00:00Z", messages: [m(0)] }
      const renamed: Doc = { ...v1, topic: "new", updated_at: "2025-06-01T10:05:00Z", messages: [m(0), m(1)] }
      const readFirst = stateAfter(obs(old), obs(renamed), gone(SID, "deleted"))
      given(readFirst).when(obs(old)).thenNothingHappened()
      given(stateAfter(obs(renamed), gone(SID, "deleted"))).when(obs(old)).thenNothingHappened()
    })

    it("after coming back, leaving again is stamped again", () => {
      const back: Doc = { ...v1, updated_at: "2025-06-02T09:00:00Z" }
      given(stateAfter(obs(v1), gone(SID, "expired"), obs(back))).when(gone(SID, "expired")).then([
        { type: "session_expired", sessionId: SID, snapshotHash: null, payload: { v: 1 } }
      ])
    })
  })

  describe("decide is pure", () => {
    it("the same observation and state give deep-equal events, and the state is left as it was", () => {
      const v2: Doc = { ...v1, messages: [m(0), m(1), m(2)] }
      const state = synced(v1)
      const keysBefore = Array.from(state.session!.messageKeys)
      const first = decide(obs(v2), state)
      const second = decide(obs(v2), state)
      assert.deepStrictEqual(first, second)
      assert.deepStrictEqual(Array.from(state.session!.messageKeys), keysBefore)
      assert.strictEqual(state.session!.messageCount, 2)
    })

    it("events carry the observed session id", () => {
      const events = decide(obs(v1, "other-7"), initialState)
      assert.deepStrictEqual(events.map((e) => e.sessionId), ["other-7", "other-7"])
      assert.deepStrictEqual(events, [upserted(v1, "other-7"), appended(v1, [0, 1], 0, "other-7")])
    })
  })
})

describe("Decide properties", () => {
  /** A conversation of n messages (words repeat, so identical tuples occur) and the snapshots it went through. */
  const history = FastCheck.integer({ min: 1, max: 25 }).chain((n) =>
    FastCheck.tuple(
      FastCheck.array(
        FastCheck.record({
          content: FastCheck.constantFrom("ok", "yes", "no"),
          sender_id: FastCheck.constantFrom(1, 2),
          timestamp: FastCheck.constantFrom("2025-06-03T09:00:00Z", "2025-06-03T09:00:01Z")
        }),
        { minLength: n, maxLength: n }
      ),
      FastCheck.uniqueArray(FastCheck.integer({ min: 1, max: n }), { minLength: 1, maxLength: 6 })
    ).chain(([messages, cuts]) =>
      FastCheck.tuple(FastCheck.constant(messages), FastCheck.shuffledSubarray(cuts, { minLength: cuts.length }))
    )
  )

  it.prop(
    "snapshots of a growing session, observed in any order and repeated, end with every message once, ordinals 0..n-1",
    [history],
    ([[messages, cuts]]) => {
      const n = Math.max(...cuts)
      const snapshots = cuts.map((c) => obs({ topic: "t", messages: messages.slice(0, c) }))
      let state = initialState
      const appendedMessages: Array<AppendedMessage> = []
      for (const o of [...snapshots, ...snapshots]) {
        const events = decide(o, state)
        for (const e of events) if (e.type === "messages_appended") appendedMessages.push(...e.payload.messages)
        state = events.reduce(evolve, state)
      }
      const expectedKeys = keysOf({ topic: "t", messages: messages.slice(0, n) })
      assert.deepStrictEqual(new Set(appendedMessages.map((x) => x.key)), new Set(expectedKeys))
      assert.deepStrictEqual(appendedMessages.map((x) => x.ordinal), Array.from({ length: n }, (_, i) => i))
      assert.strictEqual(state.session?.messageCount, n)
    }
  )
})
