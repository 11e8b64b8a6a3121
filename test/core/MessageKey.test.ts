import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { KeyMemo, messageKeys, snapshotHash } from "../../src/core/MessageKey.js"
import { decodeSnapshot } from "../../src/core/Snapshot.js"

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url)
const fixture = (path: string): string => readFileSync(new URL(path, FIXTURES), "utf8")

const keysOf = (sessionId: string, raw: string): ReadonlyArray<string> => {
  const result = decodeSnapshot(sessionId, raw)
  if (Either.isLeft(result)) return assert.fail(result.left.reason)
  return result.right.messages.map((m) => m.key)
}
const keysOfDoc = (sessionId: string, doc: unknown) => keysOf(sessionId, JSON.stringify(doc))
const msg = (content: string, sender_id: unknown = 1, timestamp: unknown = "2025-06-03T09:00:00Z") => ({
  content,
  sender_id,
  timestamp
})

describe("MessageKey.messageKeys", () => {
  it("a memo gives the very keys computed without it, holds the snapshot, and is read back at the same places", () => {
    const identities = [["1", "t0", "ok"], ["2", "t1", "hi"], ["1", "t0", "ok"], ["id", "m-9"]]
    const memo = new KeyMemo()
    const plain = messageKeys("s", identities)
    assert.deepStrictEqual(messageKeys("s", identities, memo), plain)
    assert.deepStrictEqual([memo.keys, Array.from(memo.occurrences), memo.size], [plain, [0, 0, 1, 0], 4])
    // A later snapshot (another parse: equal values, not the same arrays): the messages that stand where they
    // stood come from the memo (shown by a planted key), the new one is hashed.
    memo.keys = [plain[0]!, "planted", plain[2]!, plain[3]!]
    const later = messageKeys("s", [...identities.map((x) => [...x]), ["2", "t2", "new"]], memo)
    assert.deepStrictEqual(later, [plain[0], "planted", plain[2], plain[3], messageKeys("s", [["2", "t2", "new"]])[0]])
    // Trimmed: the oldest message is gone, the others are found one place earlier.
    memo.keys = ["x0", "x1", "x2", "x3", "x4"]
    const trimmed = messageKeys("s", [["2", "t1", "hi"], ["1", "t0", "ok"], ["id", "m-9"], ["2", "t2", "new"]], memo)
    // ["1","t0","ok"] was the second of its kind before the trim and is the first now: keyed afresh, as is all after it.
    assert.deepStrictEqual(trimmed, ["x1", ...messageKeys("s", [["2", "t1", "hi"], ["1", "t0", "ok"], ["id", "m-9"], ["2", "t2", "new"]]).slice(1)])
  })

  it("a memo holds no message values: per message two fingerprint lanes, a key and an occurrence, and a version", () => {
    const memo = new KeyMemo()
    const identities = [["1", "2025-06-01T10:00:00Z", "a message the memo must not keep"], ["2", "t1", "hi"], ["id", "m-9"]]
    const keys = messageKeys("s", identities, memo)
    // (And where its snapshot's text can grow by appended messages: see Snapshot.test.ts.)
    assert.deepStrictEqual(Object.keys(memo).sort(), ["appendPoint", "comparable", "fingerprints", "keys", "occurrences", "session", "version"])
    // Every snapshot taken is a new version, even the same one again (the writer tells whose snapshot it holds).
    assert.strictEqual(memo.version, 1)
    messageKeys("s", identities, memo)
    assert.strictEqual(memo.version, 2)
    assert.instanceOf(memo.fingerprints, Int32Array)
    assert.strictEqual(memo.fingerprints.length, 2 * identities.length)
    assert.deepStrictEqual([memo.keys, Array.from(memo.occurrences)], [keys, [0, 0, 0]])
    // Equal identities from another parse give equal fingerprints; any change to a value gives another.
    const again = new KeyMemo()
    messageKeys("s", [[...identities[0]!], ["2", "t1", "hi!"], ["id", "m-9"]], again)
    assert.deepStrictEqual(Array.from(again.fingerprints.slice(0, 2)), Array.from(memo.fingerprints.slice(0, 2)))
    assert.notDeepEqual(Array.from(again.fingerprints.slice(2, 4)), Array.from(memo.fingerprints.slice(2, 4)))
    assert.deepStrictEqual(Array.from(again.fingerprints.slice(4)), Array.from(memo.fingerprints.slice(4)))
  })

  it("with a memo, a number that is no JSON number (1e999 parses to Infinity, written null) keys as without", () => {
    const value = JSON.parse('{"messages": [{"sender_id": 1, "content": "hi", "timestamp": 1e999}, {"sender_id": 1, "content": "hi"}]}')
    const identities = value.messages.map((m: { timestamp?: unknown }) => ["1", m.timestamp ?? null, "hi"])
    const memo = new KeyMemo()
    messageKeys("s", [["2", "t", "before"]], memo)
    const keys = messageKeys("s", [["2", "t", "before"], ...identities], memo)
    assert.deepStrictEqual(keys, messageKeys("s", [["2", "t", "before"], ...identities]))
    assert.strictEqual(new Set(keys).size, 3)
  })

  it("with a memo, any history of snapshots (appends, trims, edits, repeats, odd values) keys exactly as without", () => {
    const identity = FastCheck.oneof(
      FastCheck.tuple(
        FastCheck.constantFrom("1", "2", null),
        FastCheck.constantFrom("t0", "t1", 5, -0, 0, null, Infinity, -Infinity),
        FastCheck.constantFrom("ok", "hi", "", null)
      ),
      FastCheck.tuple(FastCheck.constant("id"), FastCheck.constantFrom("a", "b")),
      FastCheck.tuple(FastCheck.constant("1"), FastCheck.constant({ at: 1 }), FastCheck.constant("obj"))
    )
    const step = FastCheck.record({
      trim: FastCheck.nat({ max: 3 }),
      edit: FastCheck.option(FastCheck.tuple(FastCheck.nat({ max: 40 }), identity), { nil: undefined }),
      append: FastCheck.array(identity, { maxLength: 40 })
    })
    FastCheck.assert(FastCheck.property(FastCheck.array(step, { maxLength: 12 }), (steps) => {
      const memo = new KeyMemo()
      let snapshot: Array<ReadonlyArray<unknown>> = []
      for (const { trim, edit, append } of steps) {
        snapshot = [...snapshot.slice(trim), ...append].map((x) => [...x])
        if (edit !== undefined && snapshot.length > 0) snapshot[edit[0] % snapshot.length] = edit[1]
        assert.deepStrictEqual(messageKeys("s", snapshot, memo), messageKeys("s", snapshot))
      }
    }), { numRuns: 500 })
  })

  it("any snapshot keys as the definition says: SHA-256 of (session, identity as JSON, occurrence of that JSON)", () => {
    // Written here from the definition (DESIGN §3), independently of the module's shortcuts: occurrences are
    // counted by JSON, as the module does beyond 32 messages or with values only JSON can compare.
    const definition = (session: string, identities: ReadonlyArray<ReadonlyArray<unknown>>) => {
      const seen = new Map<string, number>()
      return identities.map((identity) => {
        const tuple = JSON.stringify(identity)
        const occurrence = seen.get(tuple) ?? 0
        seen.set(tuple, occurrence + 1)
        return createHash("sha256").update(`${JSON.stringify(session)}|${tuple}|${occurrence}`).digest("hex").slice(0, 32)
      })
    }
    const identity = FastCheck.oneof(
      FastCheck.tuple(
        FastCheck.constantFrom("1", "2", null),
        FastCheck.constantFrom("t0", "t1", 5, -0, 0, null, Infinity, -Infinity, true),
        FastCheck.constantFrom("ok", "hi", "", null, "ok\u2028")
      ),
      FastCheck.tuple(FastCheck.constant("id"), FastCheck.constantFrom("a", "b")),
      FastCheck.tuple(FastCheck.constant("1"), FastCheck.constant({ at: 1 }), FastCheck.constant("obj"))
    )
    FastCheck.assert(FastCheck.property(FastCheck.array(identity, { maxLength: 40 }), (identities) => {
      assert.deepStrictEqual(messageKeys("s:1", identities), definition("s:1", identities))
    }), { numRuns: 1000 })
  })

  it("the key is 128 bits of SHA-256 of (session id, identity tuple, occurrence): a stored identity never changes", () => {
    const expected = createHash("sha256")
      .update(`"s-1"|["1","2025-06-01T10:00:00Z","hi"]|0`)
      .digest("hex")
      .slice(0, 32)
    assert.deepStrictEqual(messageKeys("s-1", [["1", "2025-06-01T10:00:00Z", "hi"]]), [expected])
    assert.strictEqual(expected, "83cd6b6362aadc9582d7422479ddb59e")
  })

  it("the same words from the same sender at the same time, twice, are two messages", () => {
    const keys = keysOf("rc", fixture("sessions/repeated-content.json"))
    assert.strictEqual(keys.length, 4)
    assert.strictEqual(new Set(keys).size, 4)
    const tuple = ["1", "2025-06-03T09:05:00Z", "ok"]
    const [first, second] = messageKeys("rc", [tuple, tuple])
    assert.notStrictEqual(first, second)
    assert.deepStrictEqual([keys[2], keys[3]], [first, second])
  })

  it("re-decoding the same snapshot gives the same keys", () => {
    for (const file of ["basic.json", "repeated-content.json", "timestamps.json", "no-sender.json", "extra-fields.json"]) {
      const raw = fixture(`sessions/${file}`)
      assert.deepStrictEqual(keysOf(file, raw), keysOf(file, raw), file)
    }
  })

  it("a snapshot whose oldest messages were trimmed gives the remaining messages the same keys", () => {
    const doc = JSON.parse(fixture("sessions/basic.json")) as { messages: Array<unknown> }
    const full = keysOfDoc("basic-1", doc)
    const trimmed = keysOfDoc("basic-1", { ...doc, messages: doc.messages.slice(1) })
    assert.deepStrictEqual(trimmed, full.slice(1))
  })

  it("trimming keeps keys also for a long session with repeated senders and content", () => {
    const doc = JSON.parse(fixture("sessions/large-5000.json")) as { messages: Array<unknown> }
    const full = keysOfDoc("large", doc)
    const trimmed = keysOfDoc("large", { ...doc, messages: doc.messages.slice(1000) })
    assert.deepStrictEqual(trimmed, full.slice(1000))
  })

  it("trimming keeps keys of repeated words when the tuples (sender, time) differ", () => {
    const messages = [msg("ok", 1, "2025-06-03T09:00:00Z"), msg("ok", 2, "2025-06-03T09:00:01Z"), msg("ok", 1, "2025-06-03T09:05:00Z")]
    const full = keysOfDoc("s", { messages })
    assert.deepStrictEqual(keysOfDoc("s", { messages: messages.slice(1) }), full.slice(1))
    assert.deepStrictEqual(keysOfDoc("s", { messages: messages.slice(2) }), full.slice(2))
  })

  it("known limit: trimming the first of two identical tuples gives the survivor the first one's key", () => {
    const twice = [msg("ok"), msg("ok")]
    const [k0, k1] = keysOfDoc("s", { messages: twice })
    assert.notStrictEqual(k0, k1)
    assert.deepStrictEqual(keysOfDoc("s", { messages: twice.slice(1) }), [k0])
  })

  it("an appended message leaves the keys of the earlier ones alone", () => {
    const messages = [msg("a"), msg("b"), msg("a")]
    const before = keysOfDoc("s", { messages })
    const after = keysOfDoc("s", { messages: [...messages, msg("a"), msg("c")] })
    assert.deepStrictEqual(after.slice(0, 3), before)
    assert.strictEqual(new Set(after).size, 5)
  })

  it("an explicit id wins over content: an edited message keeps its key", () => {
    const [withId] = keysOfDoc("s", { messages: [{ id: "m-1", ...msg("draft") }] })
    const [edited] = keysOfDoc("s", { messages: [{ id: "m-1", ...msg("final text", 2, 1717228801) }] })
    const [noId] = keysOfDoc("s", { messages: [msg("draft")] })
    assert.strictEqual(withId, edited)
    assert.notStrictEqual(withId, noId)
  })

  it("message_id is an explicit id too, and id and message_id name the same identity", () => {
    const [a] = keysOfDoc("s", { messages: [{ message_id: "m-2", content: "x" }] })
    const [b] = keysOfDoc("s", { messages: [{ message_id: "m-2", content: "y", sender_id: 9 }] })
    const [c] = keysOfDoc("s", { messages: [{ id: "m-2", content: "z" }] })
    assert.strictEqual(a, b)
    assert.strictEqual(a, c)
    assert.deepStrictEqual([a], messageKeys("s", [["id", "m-2"]]))
  })

  it("id is preferred to message_id when both are present", () => {
    const [both] = keysOfDoc("s", { messages: [{ id: "a", message_id: "b", content: "x" }] })
    const [idOnly] = keysOfDoc("s", { messages: [{ id: "a", content: "other" }] })
    assert.strictEqual(both, idOnly)
  })

  it("numeric and string explicit ids are the same id", () => {
    assert.deepStrictEqual(keysOfDoc("s", { messages: [{ id: 5, content: "x" }] }), keysOfDoc("s", { messages: [{ id: "5" }] }))
  })

  it("an explicit id that is an object is ignored: the message is identified by its content", () => {
    assert.deepStrictEqual(
      keysOfDoc("s", { messages: [{ id: { x: 1 }, ...msg("hi") }] }),
      keysOfDoc("s", { messages: [msg("hi")] })
    )
  })

  it("the same explicit id twice in one snapshot still gives two messages", () => {
    const keys = keysOfDoc("s", { messages: [{ id: "dup", content: "a" }, { id: "dup", content: "b" }] })
    assert.strictEqual(new Set(keys).size, 2)
  })

  it("keys include the session id: the same content in two sessions gives different keys", () => {
    const raw = fixture("sessions/basic.json")
    const one = keysOf("session-a", raw)
    const two = keysOf("session-b", raw)
    assert.strictEqual(one.length, 3)
    assert.strictEqual(new Set([...one, ...two]).size, 6)
    const [a] = messageKeys("a|b", [["c"]])
    const [b] = messageKeys("a", [["b|c"]])
    assert.notStrictEqual(a, b)
  })

  it("each part of the tuple counts: sender, raw timestamp and content", () => {
    const base = keysOfDoc("s", { messages: [msg("hi", 1, "2025-06-01T10:00:00Z")] })[0]
    const others = [
      keysOfDoc("s", { messages: [msg("hi", 2, "2025-06-01T10:00:00Z")] })[0],
      keysOfDoc("s", { messages: [msg("hi", 1, "2025-06-01T10:00:01Z")] })[0],
      keysOfDoc("s", { messages: [msg("hi!", 1, "2025-06-01T10:00:00Z")] })[0],
      keysOfDoc("s", { messages: [{ content: "hi", timestamp: "2025-06-01T10:00:00Z" }] })[0]
    ]
    assert.strictEqual(new Set([base, ...others]).size, 5)
  })

  it("keys hash the raw timestamp, so a change in normalisation cannot change an identity", () => {
    const [zulu] = keysOfDoc("s", { messages: [msg("hi", 1, "2025-06-01T10:00:00Z")] })
    const [offset] = keysOfDoc("s", { messages: [msg("hi", 1, "2025-06-01T10:00:00+00:00")] })
    assert.notStrictEqual(zulu, offset)
    assert.deepStrictEqual([zulu], messageKeys("s", [["1", "2025-06-01T10:00:00Z", "hi"]]))
  })

  it("the sender is compared in canonical form: 7, \"7\" and \"007\" are the same sender", () => {
    const a = keysOfDoc("s", { messages: [msg("hi", 7)] })
    assert.deepStrictEqual(keysOfDoc("s", { messages: [msg("hi", "7")] }), a)
    assert.deepStrictEqual(keysOfDoc("s", { messages: [msg("hi", "007")] }), a)
  })

  it("a garbage timestamp is part of the identity as written", () => {
    const keys = keysOfDoc("s", { messages: [msg("x", 1, "yesterday-ish"), msg("x", 1, "today-ish")] })
    assert.deepStrictEqual(keys, messageKeys("s", [["1", "yesterday-ish", "x"], ["1", "today-ish", "x"]]))
  })
})

describe("MessageKey.snapshotHash", () => {
  it("is the SHA-256 of the raw value, in hex", () => {
    assert.strictEqual(snapshotHash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  })

  it("a string and its UTF-8 bytes hash alike", () => {
    const raw = fixture("sessions/unicode.json")
    assert.strictEqual(snapshotHash(Buffer.from(raw, "utf8")), snapshotHash(raw))
  })

  it("any change to the raw value, even whitespace, changes the hash", () => {
    assert.notStrictEqual(snapshotHash(`{"topic":"t"}`), snapshotHash(`{"topic": "t"}`))
  })
})

describe("MessageKey properties", () => {
  /** Messages drawn from few senders, times and words, so identical tuples are frequent. */
  const messages = FastCheck.array(
    FastCheck.record({
      content: FastCheck.constantFrom("ok", "yes", "no"),
      sender_id: FastCheck.constantFrom(1, 2),
      timestamp: FastCheck.constantFrom("2025-06-03T09:00:00Z", "2025-06-03T09:00:01Z")
    }),
    { maxLength: 30 }
  )

  it.prop("the keys of one snapshot are pairwise distinct", [messages], ([ms]) => {
    assert.strictEqual(new Set(keysOfDoc("s", { messages: ms })).size, ms.length)
  })

  it.prop(
    "trimming a prefix keeps the keys of the rest when no trimmed tuple occurs again",
    [messages, FastCheck.nat({ max: 30 })],
    ([ms, cut]) => {
      const k = Math.min(cut, ms.length)
      const tuple = (x: (typeof ms)[number]) => JSON.stringify([x.sender_id, x.timestamp, x.content])
      const trimmedTuples = new Set(ms.slice(0, k).map(tuple))
      FastCheck.pre(ms.slice(k).every((x) => !trimmedTuples.has(tuple(x))))
      assert.deepStrictEqual(keysOfDoc("s", { messages: ms.slice(k) }), keysOfDoc("s", { messages: ms }).slice(k))
    }
  )

  it.prop("appending messages never changes the keys of the earlier ones", [messages, messages], ([ms, more]) => {
    assert.deepStrictEqual(keysOfDoc("s", { messages: [...ms, ...more] }).slice(0, ms.length), keysOfDoc("s", { messages: ms }))
  })
})
