import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { decide, initialState } from "../../src/core/Decide.js"
import {
  type AppendedMessage,
  type CommittedEvent,
  type GoneKind,
  MESSAGES_PER_EVENT,
  type SessionUpsertedPayload,
  type SyncEvent
} from "../../src/core/Events.js"
import { placeholderUser, project, type RowChanges, userIdOf } from "../../src/core/Project.js"
import { seen } from "./Given.js"

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url)
const fixture = (path: string): string => readFileSync(new URL(path, FIXTURES), "utf8")

const T0 = "2025-06-10T12:00:00.000000Z"
const T1 = "2025-06-10T12:00:01.000000Z"
const T2 = "2025-06-10T12:00:02.000000Z"
const T3 = "2025-06-10T12:00:03.000000Z"

const meta = (over: Partial<SessionUpsertedPayload> = {}): SessionUpsertedPayload => ({
  v: 1,
  topic: "Trip",
  group_id: "1",
  created_by: "1",
  created_at: "2025-06-01T10:00:00.000000Z",
  updated_at: "2025-06-01T10:05:00.000000Z",
  extra: null,
  meta_hash: "m1",
  ...over
})
const msg = (key: string, ordinal: number, sender: string | null = "1"): AppendedMessage => ({
  key,
  ordinal,
  sender,
  content: `content ${key}`,
  sent_at: "2025-06-01T10:00:03.000000Z",
  extra: null
})

const upsertedAt = (seq: number, sessionId: string, hash: string, payload = meta(), at = T0): CommittedEvent => ({
  type: "session_upserted",
  sessionId,
  snapshotHash: hash,
  payload,
  seq,
  recordedAt: at
})
const appendedAt = (
  seq: number,
  sessionId: string,
  hash: string,
  messages: ReadonlyArray<AppendedMessage>,
  group_id: string | null = "1",
  at = T0
): CommittedEvent => ({
  type: "messages_appended",
  sessionId,
  snapshotHash: hash,
  payload: { v: 1, group_id, messages },
  seq,
  recordedAt: at
})
const goneAt = (seq: number, sessionId: string, kind: GoneKind, at = T1): CommittedEvent => ({
  type: `session_${kind}`,
  sessionId,
  snapshotHash: null,
  payload: { v: 1 },
  seq,
  recordedAt: at
})
const rejectedAt = (seq: number, sessionId: string, hash: string, reason = "not JSON: x", at = T2): CommittedEvent => ({
  type: "snapshot_rejected",
  sessionId,
  snapshotHash: hash,
  payload: { v: 1, reason, excerpt: "{", length: 1 },
  seq,
  recordedAt: at
})

/** Commits events the way the ledger does: successive seqs from `firstSeq`, one transaction time. */
const commit = (events: ReadonlyArray<SyncEvent>, firstSeq: number, recordedAt = T0): Array<CommittedEvent> =>
  events.map((e, i) => ({ ...e, seq: firstSeq + i, recordedAt }))

const noStamps = { expiredAt: null, deletedAt: null, evictedAt: null }

const empty: RowChanges = {
  users: [],
  groups: [],
  participants: [],
  sessionUpserts: [],
  stamps: [],
  appended: { seqs: [], senders: {}, count: 0, bySession: new Map() },
  touches: [],
  rejections: [],
  accepted: [],
  maxSeq: 0
}

describe("Project.project", () => {
  describe("ids derive from ledger positions", () => {
    it("a session's id is the seq of its first session_upserted; appended events are named by seq", () => {
      const changes = project([
        upsertedAt(41, "s", "h1"),
        appendedAt(42, "s", "h1", [msg("k0", 0), msg("k1", 1, "2")])
      ])
      assert.deepStrictEqual(changes.sessionUpserts, [{
        id: 41,
        firstSeenAt: T0,
        redisSessionId: "s",
        meta: meta(),
        createdByUserId: "1",
        seq: 41,
        recordedAt: T0,
        stamps: noStamps
      }])
      // Messages themselves are expanded by PostgreSQL from these ledger rows (see the integration tests).
      assert.deepStrictEqual(changes.appended, { seqs: [42], senders: { "1": "1", "2": "2" }, count: 2, bySession: new Map([["s", 2]]) })
      assert.strictEqual(MESSAGES_PER_EVENT, 10_000)
    })

    it("a later upsert in the same batch keeps the first upsert's seq and time for a new row and carries its own", () => {
      const changes = project([upsertedAt(5, "s", "h1"), upsertedAt(9, "s", "h2", meta({ topic: "New", meta_hash: "m2" }), T1)])
      assert.deepStrictEqual(changes.sessionUpserts, [{
        id: 5,
        firstSeenAt: T0,
        redisSessionId: "s",
        meta: meta({ topic: "New", meta_hash: "m2" }),
        createdByUserId: "1",
        seq: 9,
        recordedAt: T1,
        stamps: noStamps
      }])
    })

    it("split events are each named, with all their messages counted", () => {
      const big = Array.from({ length: MESSAGES_PER_EVENT }, (_, i) => msg(`a${i}`, i))
      const changes = project([appendedAt(7, "s", "h", big), appendedAt(8, "s", "h", [msg("b0", MESSAGES_PER_EVENT)])])
      assert.deepStrictEqual(changes.appended.seqs, [7, 8])
      assert.strictEqual(changes.appended.count, MESSAGES_PER_EVENT + 1)
    })
  })

  describe("users", () => {
    it("placeholders: 1 is Default User, 2 is AI Assistant, others User{id}", () => {
      assert.deepStrictEqual(placeholderUser("1"), {
        id: "1",
        externalId: "1",
        displayName: "Default User",
        email: "user1@placeholder.invalid"
      })
      assert.deepStrictEqual(placeholderUser("2"), {
        id: "2",
        externalId: "2",
        displayName: "AI Assistant",
        email: "user2@placeholder.invalid"
      })
      assert.deepStrictEqual(placeholderUser("7"), {
        id: "7",
        externalId: "7",
        displayName: "User7",
        email: "user7@placeholder.invalid"
      })
    })

    it("a non-numeric external id gets a stable negative id, no email", () => {
      const alice = placeholderUser("alice")
      assert.deepStrictEqual(alice, { id: userIdOf("alice"), externalId: "alice", displayName: "Useralice", email: null })
      assert.match(alice.id, /^-\d+$/)
      assert.strictEqual(userIdOf("alice"), "-197455162568138763")
      assert.notStrictEqual(userIdOf("bob"), userIdOf("alice"))
    })

    it("negative ids from hashes stay within 60 bits, well inside bigint", () => {
      for (const name of ["alice", "bob", "bot-42", "", "ü", "x".repeat(1000)]) {
        const id = BigInt(userIdOf(name))
        assert.isTrue(id < 0n && id >= -(2n ** 60n), name)
      }
    })

    it("integer external ids in canonical form are their own id; non-canonical ones are hashed", () => {
      assert.strictEqual(userIdOf("42"), "42")
      assert.strictEqual(userIdOf("-5"), "-5")
      assert.strictEqual(userIdOf("9223372036854775807"), "9223372036854775807")
      assert.notStrictEqual(userIdOf("007"), "7")
      assert.match(userIdOf("007"), /^-\d+$/)
      assert.match(userIdOf("9223372036854775808"), /^-\d+$/)
    })

    it("an external id named like an Object.prototype member is an ordinary name", () => {
      for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
        const user = placeholderUser(name)
        assert.strictEqual(user.displayName, `User${name}`)
        assert.strictEqual(typeof user.displayName, "string")
      }
    })

    it("senders and creators become users once each, in order of first appearance", () => {
      const changes = project([
        upsertedAt(1, "s", "h", meta({ created_by: "alice" })),
        appendedAt(2, "s", "h", [msg("a", 0, "2"), msg("b", 1, "alice"), msg("c", 2, "2"), msg("d", 3, null)]),
        appendedAt(3, "t", "h", [msg("e", 0, "7")])
      ])
      assert.deepStrictEqual(changes.users, [placeholderUser("alice"), placeholderUser("2"), placeholderUser("7")])
      assert.deepStrictEqual(changes.appended.senders, { "2": "2", alice: userIdOf("alice"), "7": "7" })
    })

    it("a sender named like an Object.prototype property is kept as any other", () => {
      const changes = project([appendedAt(2, "s", "h", [msg("a", 0, "__proto__"), msg("b", 1, "constructor")])])
      assert.deepStrictEqual(Object.keys(changes.appended.senders), ["__proto__", "constructor"])
      assert.strictEqual(JSON.parse(JSON.stringify(changes.appended.senders))["__proto__"], userIdOf("__proto__"))
    })
  })

  describe("groups and participants", () => {
    it("groups come from upserts and appends, once each; participants are the creator and every sender", () => {
      const changes = project([
        upsertedAt(1, "s", "h", meta({ group_id: "3", created_by: "1" })),
        appendedAt(2, "s", "h", [msg("a", 0, "1"), msg("b", 1, "2"), msg("c", 2, "2")], "3"),
        appendedAt(3, "t", "h", [msg("d", 0, "2")], "4")
      ])
      assert.deepStrictEqual(changes.groups, ["3", "4"])
      assert.deepStrictEqual(changes.participants, [["3", "1"], ["3", "2"], ["4", "2"]])
    })

    it("no group, no participant; a message without sender adds no one", () => {
      const changes = project([
        upsertedAt(1, "s", "h", meta({ group_id: null, created_by: "5" })),
        appendedAt(2, "s", "h", [msg("a", 0, "6"), msg("b", 1, null)], null),
        appendedAt(3, "t", "h", [msg("c", 0, null)], "8")
      ])
      assert.deepStrictEqual(changes.groups, ["8"])
      assert.deepStrictEqual(changes.participants, [])
      assert.deepStrictEqual(changes.users, [placeholderUser("5"), placeholderUser("6")])
      assert.strictEqual(changes.sessionUpserts[0]!.createdByUserId, "5")
    })

    it("a session without a creator has a null creator id", () => {
      const changes = project([upsertedAt(1, "s", "h", meta({ created_by: null }))])
      assert.strictEqual(changes.sessionUpserts[0]!.createdByUserId, null)
      assert.deepStrictEqual(changes.users, [])
      assert.deepStrictEqual(changes.participants, [])
    })

    it("participants use the user id, not the external id", () => {
      const changes = project([upsertedAt(1, "s", "h", meta({ group_id: "2", created_by: "carol" }))])
      assert.deepStrictEqual(changes.participants, [["2", userIdOf("carol")]])
    })
  })

  describe("touches record the last seq, time and snapshot of each session", () => {
    it("the last event of the session in the batch wins", () => {
      const changes = project([
        upsertedAt(1, "s", "h1"),
        appendedAt(2, "s", "h1", [msg("a", 0)], "1", T1),
        upsertedAt(3, "t", "h9"),
        appendedAt(4, "s", "h2", [msg("b", 1)], "1", T2)
      ])
      assert.deepStrictEqual(changes.touches, [
        { redisSessionId: "s", seq: 4, recordedAt: T2, snapshotHash: "h2" },
        { redisSessionId: "t", seq: 3, recordedAt: T0, snapshotHash: "h9" }
      ])
    })

    it("a rejection does not touch the session", () => {
      const changes = project([rejectedAt(5, "s", "bad")])
      assert.deepStrictEqual(changes.touches, [])
    })
  })

  describe("folding several events of one session in a batch", () => {
    it("upsert, expire, upsert: one session row, its stamps cleared", () => {
      const changes = project([
        upsertedAt(1, "s", "h1"),
        goneAt(2, "s", "expired", T1),
        upsertedAt(3, "s", "h2", meta({ meta_hash: "m2" }), T2)
      ])
      assert.deepStrictEqual(changes.sessionUpserts, [{
        id: 1,
        firstSeenAt: T0,
        redisSessionId: "s",
        meta: meta({ meta_hash: "m2" }),
        createdByUserId: "1",
        seq: 3,
        recordedAt: T2,
        stamps: noStamps
      }])
      assert.deepStrictEqual(changes.stamps, [])
      assert.deepStrictEqual(changes.touches, [{ redisSessionId: "s", seq: 3, recordedAt: T2, snapshotHash: "h2" }])
    })

    it("upsert then expire: the session row carries the expiry stamp; the touch keeps the snapshot hash", () => {
      const changes = project([upsertedAt(1, "s", "h1"), goneAt(2, "s", "expired", T1)])
      assert.deepStrictEqual(changes.sessionUpserts.map((r) => [r.seq, r.stamps]), [
        [1, { expiredAt: T1, deletedAt: null, evictedAt: null }]
      ])
      assert.deepStrictEqual(changes.stamps, [])
      assert.deepStrictEqual(changes.touches, [{ redisSessionId: "s", seq: 2, recordedAt: T1, snapshotHash: "h1" }])
    })

    it("a session only stamped in this batch gets a stamp row, and a touch without snapshot hash", () => {
      const changes = project([goneAt(7, "s", "deleted", T1), goneAt(8, "s", "evicted", T2)])
      assert.deepStrictEqual(changes.sessionUpserts, [])
      assert.deepStrictEqual(changes.stamps, [{
        redisSessionId: "s",
        seq: 8,
        stamps: { expiredAt: null, deletedAt: T1, evictedAt: T2 }
      }])
      assert.deepStrictEqual(changes.touches, [{ redisSessionId: "s", seq: 8, recordedAt: T2, snapshotHash: null }])
      assert.deepStrictEqual(changes.accepted, [])
    })

    it("each kind stamps its own column", () => {
      for (const [kind, stamps] of [
        ["expired", { expiredAt: T1, deletedAt: null, evictedAt: null }],
        ["deleted", { expiredAt: null, deletedAt: T1, evictedAt: null }],
        ["evicted", { expiredAt: null, deletedAt: null, evictedAt: T1 }]
      ] as const) {
        assert.deepStrictEqual(project([goneAt(3, "s", kind, T1)]).stamps, [{ redisSessionId: "s", seq: 3, stamps }])
      }
    })

    it("messages appended to a stamped session keep its stamps (only an upsert clears them)", () => {
      const changes = project([goneAt(3, "s", "expired", T1), appendedAt(4, "s", "h", [msg("a", 5)], "1", T2)])
      assert.deepStrictEqual(changes.stamps, [{
        redisSessionId: "s",
        seq: 3,
        stamps: { expiredAt: T1, deletedAt: null, evictedAt: null }
      }])
      assert.deepStrictEqual(changes.touches, [{ redisSessionId: "s", seq: 4, recordedAt: T2, snapshotHash: "h" }])
    })

    it("rejection after acceptance: a rejection row, nothing accepted", () => {
      const changes = project([
        upsertedAt(1, "s", "h1"),
        appendedAt(2, "s", "h1", [msg("a", 0)]),
        rejectedAt(3, "s", "bad", "the value is a number, not a JSON object", T2)
      ])
      assert.deepStrictEqual(changes.rejections, [{
        redisSessionId: "s",
        seq: 3,
        snapshotHash: "bad",
        reason: "the value is a number, not a JSON object",
        recordedAt: T2
      }])
      assert.deepStrictEqual(changes.accepted, [])
      assert.strictEqual(changes.sessionUpserts.length, 1)
    })

    it("acceptance after rejection: accepted at the last accepting seq, no rejection row", () => {
      const changes = project([
        rejectedAt(1, "s", "bad"),
        upsertedAt(2, "s", "h1"),
        appendedAt(3, "s", "h1", [msg("a", 0)])
      ])
      assert.deepStrictEqual(changes.rejections, [])
      assert.deepStrictEqual(changes.accepted, [{ redisSessionId: "s", seq: 3 }])
    })

    it("a rejection alone: a rejection row, nothing accepted", () => {
      const changes = project([rejectedAt(4, "s", "bad", "not JSON: x", T3)])
      assert.deepStrictEqual(changes, {
        ...empty,
        rejections: [{ redisSessionId: "s", seq: 4, snapshotHash: "bad", reason: "not JSON: x", recordedAt: T3 }],
        maxSeq: 4
      })
    })

    it("the last of several rejections is the one kept", () => {
      const changes = project([rejectedAt(4, "s", "bad1", "first"), rejectedAt(5, "s", "bad2", "second")])
      assert.deepStrictEqual(changes.rejections.map((r) => [r.seq, r.snapshotHash, r.reason]), [[5, "bad2", "second"]])
    })

    it("an accepting event alone is reported as accepted, so an older rejection row can go", () => {
      assert.deepStrictEqual(project([appendedAt(6, "s", "h", [msg("a", 0)])]).accepted, [{ redisSessionId: "s", seq: 6 }])
      assert.deepStrictEqual(project([upsertedAt(6, "s", "h")]).accepted, [{ redisSessionId: "s", seq: 6 }])
    })

    it("a stamp is not an acceptance", () => {
      const changes = project([rejectedAt(1, "s", "bad"), goneAt(2, "s", "deleted")])
      assert.deepStrictEqual(changes.accepted, [])
      assert.deepStrictEqual(changes.rejections.map((r) => r.seq), [1])
    })

    it("sessions fold independently", () => {
      const changes = project([
        upsertedAt(1, "a", "ha"),
        rejectedAt(2, "b", "hb"),
        goneAt(3, "a", "expired", T1),
        upsertedAt(4, "c", "hc"),
        goneAt(5, "d", "deleted", T1)
      ])
      assert.deepStrictEqual(changes.sessionUpserts.map((r) => [r.redisSessionId, r.id, r.stamps.expiredAt]), [
        ["a", 1, T1],
        ["c", 4, null]
      ])
      assert.deepStrictEqual(changes.stamps.map((r) => r.redisSessionId), ["d"])
      assert.deepStrictEqual(changes.rejections.map((r) => r.redisSessionId), ["b"])
      assert.deepStrictEqual(changes.accepted, [{ redisSessionId: "a", seq: 1 }, { redisSessionId: "c", seq: 4 }])
      assert.deepStrictEqual(changes.touches.map((t) => [t.redisSessionId, t.seq]), [["a", 3], ["c", 4], ["d", 5]])
    })
  })

  describe("maxSeq", () => {
    it("is the highest seq of the batch", () => {
      assert.strictEqual(project([upsertedAt(3, "s", "h"), rejectedAt(11, "t", "x"), goneAt(12, "s", "expired")]).maxSeq, 12)
    })

    it("is 0 for no events, and nothing changes", () => {
      assert.deepStrictEqual(project([]), empty)
    })
  })

  describe("project is deterministic", () => {
    it("the same events give deep-equal row changes, also from a copy of the events", () => {
      const text = fixture("sessions/repeated-content.json")
      const events = commit(decide(seen("rc", text), initialState), 100)
      const first = project(events)
      assert.deepStrictEqual(project(events), first)
      assert.deepStrictEqual(project(structuredClone(events)), first)
    })

    it("replaying the ledger in one batch or event by event gives the same ids", () => {
      const text = fixture("sessions/large-5000.json")
      const events = commit(decide(seen("large", text), initialState), 20)
      const whole = project(events)
      const oneByOne = events.map((e) => project([e]))
      assert.deepStrictEqual(oneByOne.flatMap((c) => c.appended.seqs), whole.appended.seqs)
      assert.deepStrictEqual(oneByOne.flatMap((c) => c.sessionUpserts), whole.sessionUpserts)
    })
  })

  describe("from decide to rows", () => {
    it("the basic fixture: one session, three messages, two users, one group, two participants", () => {
      const text = fixture("sessions/basic.json")
      const events = commit(decide(seen("basic-1", text), initialState), 10, T0)
      const changes = project(events)
      assert.strictEqual(changes.sessionUpserts.length, 1)
      const session = changes.sessionUpserts[0]!
      assert.deepStrictEqual([session.id, session.seq, session.redisSessionId, session.createdByUserId], [10, 10, "basic-1", "1"])
      assert.deepStrictEqual(session.meta, events[0]!.payload)
      assert.deepStrictEqual(changes.appended, { seqs: [11], senders: { "1": "1", "2": "2" }, count: 3, bySession: new Map([["basic-1", 3]]) })
      assert.deepStrictEqual(changes.users, [placeholderUser("1"), placeholderUser("2")])
      assert.deepStrictEqual(changes.groups, ["1"])
      assert.deepStrictEqual(changes.participants, [["1", "1"], ["1", "2"]])
      assert.deepStrictEqual(changes.touches, [{
        redisSessionId: "basic-1",
        seq: 11,
        recordedAt: T0,
        snapshotHash: events[1]!.snapshotHash
      }])
      assert.deepStrictEqual(changes.accepted, [{ redisSessionId: "basic-1", seq: 11 }])
      assert.deepStrictEqual(changes.rejections, [])
      assert.strictEqual(changes.maxSeq, 11)
    })
  })
})
