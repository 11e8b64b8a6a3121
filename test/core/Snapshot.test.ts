import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { KeyMemo, snapshotHash, snapshotHashWithPrefix } from "../../src/core/MessageKey.js"
import { canonicalInteger, decodeSnapshot, type Rejection, type Snapshot } from "../../src/core/Snapshot.js"

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url)
const fixture = (path: string): string => readFileSync(new URL(path, FIXTURES), "utf8")
const sessionFiles = readdirSync(new URL("sessions/", FIXTURES)).filter((f) => f.endsWith(".json")).sort()
const rejectedFiles = readdirSync(new URL("rejected/", FIXTURES)).sort()

const decoded = (sessionId: string, raw: string): Snapshot => {
  const result = decodeSnapshot(sessionId, raw)
  if (Either.isLeft(result)) return assert.fail(`expected a snapshot, got a rejection: ${result.left.reason}`)
  return result.right
}
const decodedDoc = (doc: unknown, sessionId = "s-1"): Snapshot => decoded(sessionId, JSON.stringify(doc))
const rejected = (raw: string): Rejection => {
  const result = decodeSnapshot("s-1", raw)
  if (Either.isRight(result)) return assert.fail(`expected a rejection, got a snapshot of ${raw.slice(0, 40)}`)
  return result.left
}
/** Messages without their keys (identity is `MessageKey.test.ts`'s business). */
const unkeyed = (snapshot: Snapshot) => snapshot.messages.map(({ key: _, ...m }) => m)
const at = (iso: string, micros: number) => ({ iso, micros })

describe("Snapshot.decodeSnapshot", () => {
  describe("every valid fixture syncs with every message kept", () => {
    it("there are fixtures to check", () => {
      assert.includeMembers(sessionFiles, [
        "basic.json",
        "empty.json",
        "extra-fields.json",
        "large-5000.json",
        "no-messages-field.json",
        "no-sender.json",
        "numeric-strings.json",
        "repeated-content.json",
        "timestamps.json",
        "unicode.json"
      ])
    })

    for (const file of sessionFiles) {
      it(`${file} decodes with as many messages as its array holds`, () => {
        const raw = fixture(`sessions/${file}`)
        const doc = JSON.parse(raw) as { messages?: Array<unknown> }
        const snapshot = decoded(file, raw)
        assert.strictEqual(snapshot.sessionId, file)
        assert.strictEqual(snapshot.messages.length, doc.messages?.length ?? 0)
        assert.strictEqual(new Set(snapshot.messages.map((m) => m.key)).size, snapshot.messages.length)
      })
    }

    it("no-messages-field.json: a missing messages field means no messages", () => {
      const snapshot = decoded("nm", fixture("sessions/no-messages-field.json"))
      assert.deepStrictEqual(snapshot, {
        sessionId: "nm",
        meta: { topic: "Messages field absent", groupId: null, createdBy: null, createdAt: null, updatedAt: null, extra: null },
        messages: [],
        warnings: []
      })
    })

    it("empty.json: an empty messages array is a session with no messages", () => {
      const snapshot = decoded("e", fixture("sessions/empty.json"))
      assert.deepStrictEqual(snapshot.meta, {
        topic: "No messages yet",
        groupId: null,
        createdBy: null,
        createdAt: at("2025-06-07T00:00:00.000000Z", 1_749_254_400_000_000),
        updatedAt: null,
        extra: null
      })
      assert.deepStrictEqual(snapshot.messages, [])
    })

    it("large-5000.json: 5,000 messages, in order, with distinct keys", () => {
      const snapshot = decoded("large", fixture("sessions/large-5000.json"))
      assert.strictEqual(snapshot.messages.length, 5000)
      assert.strictEqual(new Set(snapshot.messages.map((m) => m.key)).size, 5000)
      assert.isTrue(snapshot.messages[0]!.content!.startsWith("message 0: "))
      assert.isTrue(snapshot.messages[4999]!.content!.startsWith("message 4999: "))
      assert.strictEqual(snapshot.messages[4999]!.sentAt!.iso, "2025-06-08T01:23:19.000000Z")
      assert.deepStrictEqual(snapshot.warnings, [])
    })
  })

  describe("basic.json decodes exactly", () => {
    it("metadata, senders, contents and times, with no extra and no warning", () => {
      const snapshot = decoded("basic-1", fixture("sessions/basic.json"))
      assert.deepStrictEqual(snapshot.meta, {
        topic: "Trip planning",
        groupId: "1",
        createdBy: "1",
        createdAt: at("2025-06-01T10:00:00.000000Z", 1_748_772_000_000_000),
        updatedAt: at("2025-06-01T10:05:00.000000Z", 1_748_772_300_000_000),
        extra: null
      })
      assert.deepStrictEqual(unkeyed(snapshot), [
        { sender: "1", content: "hi", sentAt: at("2025-06-01T10:00:03.000000Z", 1_748_772_003_000_000), extra: null },
        {
          sender: "2",
          content: "Hello! How can I help?",
          sentAt: at("2025-06-01T10:00:04.000000Z", 1_748_772_004_000_000),
          extra: null
        },
        {
          sender: "1",
          content: "Find me a train to Lyon",
          sentAt: at("2025-06-01T08:01:00.000000Z", 1_748_764_860_000_000),
          extra: null
        }
      ])
      assert.deepStrictEqual(snapshot.warnings, [])
    })
  })

  describe("ids: numbers or numeric strings, in canonical decimal form", () => {
    it("numeric-strings.json: string group, creator and sender ids read as integers", () => {
      const snapshot = decoded("ns", fixture("sessions/numeric-strings.json"))
      assert.strictEqual(snapshot.meta.groupId, "3")
      assert.strictEqual(snapshot.meta.createdBy, "7")
      assert.deepStrictEqual(snapshot.messages.map((m) => m.sender), ["7", "2"])
      assert.strictEqual(snapshot.meta.extra, null)
      assert.deepStrictEqual(snapshot.warnings, [])
    })

    it("leading zeros, signs and surrounding spaces are canonicalised", () => {
      const snapshot = decodedDoc({
        group_id: "007",
        created_by: " 12 ",
        messages: [{ content: "a", sender_id: "+5" }, { content: "b", sender_id: "007" }, { content: "c", sender_id: 7 }]
      })
      assert.strictEqual(snapshot.meta.groupId, "7")
      assert.strictEqual(snapshot.meta.createdBy, "12")
      assert.deepStrictEqual(snapshot.messages.map((m) => m.sender), ["5", "7", "7"])
    })

    it("a non-numeric sender or creator is an external id kept as written", () => {
      const snapshot = decodedDoc({ created_by: "alice", messages: [{ content: "hi", sender_id: "bot-42" }] })
      assert.strictEqual(snapshot.meta.createdBy, "alice")
      assert.strictEqual(snapshot.messages[0]!.sender, "bot-42")
      assert.deepStrictEqual(snapshot.warnings, [])
    })

    it("a group id that is not an integer is null, kept in extra, with a warning", () => {
      for (const bad of ["abc", 3.5, "99999999999999999999", true]) {
        const snapshot = decodedDoc({ group_id: bad })
        assert.strictEqual(snapshot.meta.groupId, null)
        assert.deepStrictEqual(snapshot.meta.extra, { group_id: bad })
        assert.deepStrictEqual(snapshot.warnings, [`group_id: ${JSON.stringify(bad)} is not an integer id; kept in extra`])
      }
    })

    it("a sender that is not an id is null, kept in the message's extra, with a warning", () => {
      const snapshot = decodedDoc({
        messages: [{ content: "a", sender_id: { id: 1 } }, { content: "b", sender_id: "" }, { content: "c", sender_id: 1e20 }]
      })
      assert.deepStrictEqual(unkeyed(snapshot), [
        { sender: null, content: "a", sentAt: null, extra: { sender_id: { id: 1 } } },
        { sender: null, content: "b", sentAt: null, extra: { sender_id: "" } },
        { sender: null, content: "c", sentAt: null, extra: { sender_id: 1e20 } }
      ])
      assert.deepStrictEqual(snapshot.warnings, [
        `messages[0].sender_id: {"id":1} is not an id; kept in extra`,
        `messages[1].sender_id: "" is not an id; kept in extra`,
        `messages[2].sender_id: 100000000000000000000 is not an id; kept in extra`
      ])
    })

    it("a creator that is not an id is null, kept in extra, with a warning", () => {
      const snapshot = decodedDoc({ created_by: ["x"] })
      assert.strictEqual(snapshot.meta.createdBy, null)
      assert.deepStrictEqual(snapshot.meta.extra, { created_by: ["x"] })
      assert.deepStrictEqual(snapshot.warnings, [`created_by: ["x"] is not an id; kept in extra`])
    })

    it("null ids are simply absent", () => {
      const snapshot = decodedDoc({ group_id: null, created_by: null, messages: [{ content: "a", sender_id: null }] })
      assert.strictEqual(snapshot.meta.groupId, null)
      assert.strictEqual(snapshot.meta.createdBy, null)
      assert.strictEqual(snapshot.messages[0]!.sender, null)
      assert.strictEqual(snapshot.meta.extra, null)
      assert.deepStrictEqual(snapshot.warnings, [])
    })
  })

  describe("timestamps", () => {
    it("timestamps.json: epoch seconds, epoch millis, no zone, garbage and missing", () => {
      const snapshot = decoded("ts", fixture("sessions/timestamps.json"))
      assert.deepStrictEqual(snapshot.meta.createdAt, at("2024-06-01T08:00:00.000000Z", 1_717_228_800_000_000))
      assert.deepStrictEqual(unkeyed(snapshot), [
        { sender: "1", content: "epoch seconds", sentAt: at("2024-06-01T08:00:01.000000Z", 1_717_228_801_000_000), extra: null },
        { sender: "2", content: "epoch millis", sentAt: at("2024-06-01T08:00:02.123000Z", 1_717_228_802_123_000), extra: null },
        { sender: "1", content: "no zone", sentAt: at("2024-06-01T08:00:03.250000Z", 1_717_228_803_250_000), extra: null },
        {
          sender: "2",
          content: "garbage time is kept, sent_at null",
          sentAt: null,
          extra: { timestamp: "yesterday-ish" }
        },
        { sender: "1", content: "missing time", sentAt: null, extra: null }
      ])
      assert.deepStrictEqual(snapshot.warnings, [`messages[3].timestamp: "yesterday-ish" is not a time; kept in extra`])
    })

    it("an offset is converted to UTC", () => {
      const snapshot = decodedDoc({ messages: [{ content: "x", timestamp: "2025-06-01T10:01:00+02:00" }] })
      assert.strictEqual(snapshot.messages[0]!.sentAt!.iso, "2025-06-01T08:01:00.000000Z")
    })

    it("microsecond precision is kept", () => {
      const snapshot = decodedDoc({
        updated_at: "2025-01-02T03:04:05.678901+00:00",
        messages: [{ content: "x", timestamp: "2025-01-02T03:04:05.678901+00:00" }]
      })
      assert.deepStrictEqual(snapshot.meta.updatedAt, at("2025-01-02T03:04:05.678901Z", 1_735_787_045_678_901))
      assert.strictEqual(snapshot.messages[0]!.sentAt!.iso, "2025-01-02T03:04:05.678901Z")
    })

    it("garbage session times are null, kept in extra, with a warning", () => {
      const snapshot = decodedDoc({ created_at: "soon", updated_at: { when: "now" } })
      assert.strictEqual(snapshot.meta.createdAt, null)
      assert.strictEqual(snapshot.meta.updatedAt, null)
      assert.deepStrictEqual(snapshot.meta.extra, { created_at: "soon", updated_at: { when: "now" } })
      assert.deepStrictEqual(snapshot.warnings, [
        `created_at: "soon" is not a time; kept in extra`,
        `updated_at: {"when":"now"} is not a time; kept in extra`
      ])
    })

    it("a null timestamp is a missing one: no warning, nothing in extra", () => {
      const snapshot = decodedDoc({ created_at: null, messages: [{ content: "x", timestamp: null }] })
      assert.strictEqual(snapshot.meta.createdAt, null)
      assert.deepStrictEqual(unkeyed(snapshot), [{ sender: null, content: "x", sentAt: null, extra: null }])
      assert.deepStrictEqual(snapshot.warnings, [])
    })

    it("an epoch value beyond the range of dates is garbage, not a crash", () => {
      const snapshot = decodedDoc({ messages: [{ content: "x", timestamp: 1e16 }] })
      assert.deepStrictEqual(unkeyed(snapshot), [{ sender: null, content: "x", sentAt: null, extra: { timestamp: 1e16 } }])
      assert.deepStrictEqual(snapshot.warnings, [`messages[0].timestamp: 10000000000000000 is not a time; kept in extra`])
    })

    it("a long garbage value is previewed in the warning, and kept whole in extra", () => {
      const long = "x".repeat(100)
      const snapshot = decodedDoc({ messages: [{ content: "x", timestamp: long }] })
      assert.deepStrictEqual(snapshot.messages[0]!.extra, { timestamp: long })
      assert.deepStrictEqual(snapshot.warnings, [
        `messages[0].timestamp: "${"x".repeat(56)}... is not a time; kept in extra`
      ])
    })
  })

  describe("senders", () => {
    it("no-sender.json: a message without sender_id is kept with a null sender", () => {
      const snapshot = decoded("ns", fixture("sessions/no-sender.json"))
      assert.deepStrictEqual(unkeyed(snapshot), [
        { sender: null, content: "session started", sentAt: at("2025-06-04T00:00:00.000000Z", 1_748_995_200_000_000), extra: null },
        { sender: "5", content: "hello", sentAt: at("2025-06-04T00:00:01.000000Z", 1_748_995_201_000_000), extra: null }
      ])
      assert.deepStrictEqual(snapshot.warnings, [])
    })
  })

  describe("unknown fields are kept in extra", () => {
    it("extra-fields.json: session-level and message-level extras, explicit ids included", () => {
      const snapshot = decoded("xf", fixture("sessions/extra-fields.json"))
      assert.deepStrictEqual(snapshot.meta, {
        topic: "Extra fields",
        groupId: "2",
        createdBy: null,
        createdAt: null,
        updatedAt: null,
        extra: { model: "gpt-x", tags: ["a", "b"] }
      })
      assert.deepStrictEqual(snapshot.messages.map((m) => m.extra), [
        { id: "m-1", role: "user", tokens: 3 },
        { message_id: "m-2", role: "assistant", meta: { latency_ms: 812 } }
      ])
      assert.deepStrictEqual(snapshot.warnings, [])
    })

    it("a session_id field that differs from the key is kept in extra; one that matches is not", () => {
      assert.deepStrictEqual(decodedDoc({ session_id: "other" }, "s-1").meta.extra, { session_id: "other" })
      assert.strictEqual(decodedDoc({ session_id: "s-1" }, "s-1").meta.extra, null)
      assert.strictEqual(decodedDoc({ session_id: 42 }, "42").meta.extra, null)
    })

    it("a field named __proto__ is kept as an ordinary field", () => {
      const raw = `{"topic":"t","__proto__":{"polluted":true},"messages":[{"content":"c","__proto__":[1]}]}`
      const snapshot = decoded("s-1", raw)
      const extra = snapshot.meta.extra!
      assert.deepStrictEqual(Object.keys(extra), ["__proto__"])
      assert.strictEqual(JSON.stringify(extra), `{"__proto__":{"polluted":true}}`)
      assert.strictEqual(Object.getPrototypeOf(extra), Object.prototype)
      assert.strictEqual(JSON.stringify(snapshot.messages[0]!.extra), `{"__proto__":[1]}`)
      assert.strictEqual(({} as Record<string, unknown>).polluted, undefined)
    })
  })

  describe("content", () => {
    it("unicode.json: topic and contents come through intact", () => {
      const raw = fixture("sessions/unicode.json")
      const doc = JSON.parse(raw) as { topic: string; messages: Array<{ content: string }> }
      const snapshot = decoded("u", raw)
      assert.strictEqual(snapshot.meta.topic, "Ünïcødé ✓")
      assert.deepStrictEqual(snapshot.messages.map((m) => m.content), [
        "emoji 😀👍🏽 and CJK 漢字",
        "RTL مرحبا and quotes \"'`",
        "newlines\nand\ttabs"
      ])
      assert.deepStrictEqual(snapshot.messages.map((m) => m.content), doc.messages.map((m) => m.content))
      assert.deepStrictEqual(snapshot.warnings, [])
    })

    it("content that is not a string is kept as its JSON text", () => {
      const snapshot = decodedDoc({ topic: 7, messages: [{ content: 42 }, { content: { text: "hi" } }, { content: null }] })
      assert.strictEqual(snapshot.meta.topic, "7")
      assert.deepStrictEqual(snapshot.messages.map((m) => m.content), ["42", `{"text":"hi"}`, null])
      assert.deepStrictEqual(snapshot.warnings, [])
    })

    it("NUL characters, which PostgreSQL text cannot hold, are replaced with U+FFFD and reported", () => {
      const snapshot = decodedDoc({ topic: "a\u0000b", messages: [{ content: "c\u0000d\u0000" }] })
      assert.strictEqual(snapshot.meta.topic, "a\uFFFDb")
      assert.strictEqual(snapshot.messages[0]!.content, "c\uFFFDd\uFFFD")
      assert.deepStrictEqual(snapshot.warnings, [
        "topic: NUL characters replaced with U+FFFD",
        "messages[0].content: NUL characters replaced with U+FFFD"
      ])
    })

    it("a lone surrogate escape is cleaned wherever it is, whatever backslashes stand before it; a pair is kept", () => {
      // JSON string bodies made of whole tokens: plain text, an escaped backslash, surrogate escapes (paired or not),
      // and text that only looks like an escape after an escaped backslash.
      const token = FastCheck.constantFrom("a", "\\\\", "\\ud83d", "\\ude00", "\\uDBFF", "\\uDC00", "ud83d", "\\u0041", "é", "😀")
      const body = FastCheck.array(token, { maxLength: 8 }).map((ts) => ts.join(""))
      const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
      FastCheck.assert(FastCheck.property(body, body, (topic, content) => {
        const raw = `{"topic":"${topic}","messages":[{"content":"${content}","sender_id":1,"x":{"${content}":1}}]}`
        const doc = JSON.parse(raw) as { topic: string; messages: Array<{ content: string }> }
        const snapshot = decoded("s-1", raw)
        // What was lone is replaced, in values and keys, and nothing else.
        const expected = (s: string) => s.replace(new RegExp(lone.source, "g"), "\uFFFD")
        const text = doc.messages[0]!.content
        assert.strictEqual(snapshot.meta.topic, expected(doc.topic))
        assert.strictEqual(snapshot.messages[0]!.content, expected(text))
        assert.deepStrictEqual(snapshot.messages[0]!.extra, { x: { [expected(text)]: 1 } })
        assert.strictEqual(snapshot.warnings.length > 0, lone.test(doc.topic) || lone.test(text))
      }), { numRuns: 3000 })
      // The app's own form of an emoji: a pair of escapes, kept as the character, with no warning.
      const emoji = decoded("s-1", '{"topic":"\\ud83d\\ude00","messages":[]}')
      assert.strictEqual(emoji.meta.topic, "😀")
      assert.deepStrictEqual(emoji.warnings, [])
    })

    it("a message that is not an object is kept as its content, with a warning", () => {
      const snapshot = decodedDoc({ messages: ["just text", 5, null, ["a"]] })
      assert.deepStrictEqual(unkeyed(snapshot), [
        { sender: null, content: "just text", sentAt: null, extra: null },
        { sender: null, content: "5", sentAt: null, extra: null },
        { sender: null, content: null, sentAt: null, extra: null },
        { sender: null, content: `["a"]`, sentAt: null, extra: null }
      ])
      assert.deepStrictEqual(snapshot.warnings, [
        "messages[0]: a string instead of an object; kept as its content",
        "messages[1]: a number instead of an object; kept as its content",
        "messages[2]: null instead of an object; kept as its content",
        "messages[3]: an array instead of an object; kept as its content"
      ])
      assert.strictEqual(new Set(snapshot.messages.map((m) => m.key)).size, 4)
    })

    it("a null messages field means no messages", () => {
      assert.deepStrictEqual(decodedDoc({ topic: "t", messages: null }).messages, [])
    })
  })

  describe("what cannot be a session is rejected with a readable reason", () => {
    it("there are fixtures to check", () => {
      assert.includeMembers(rejectedFiles, [
        "array-root.txt",
        "messages-not-array.txt",
        "not-json.txt",
        "number-root.txt",
        "string-root.txt",
        "truncated.txt"
      ])
    })

    const expected: Record<string, (reason: string) => void> = {
      "array-root.txt": (r) => assert.strictEqual(r, "the value is an array, not a JSON object"),
      "messages-not-array.txt": (r) => assert.strictEqual(r, `"messages" is an object, not an array`),
      "not-json.txt": (r) => assert.match(r, /^not JSON: .*token/),
      "number-root.txt": (r) => assert.strictEqual(r, "the value is a number, not a JSON object"),
      "string-root.txt": (r) => assert.strictEqual(r, "the value is a string, not a JSON object"),
      "truncated.txt": (r) => assert.match(r, /^not JSON: .*Unterminated string/)
    }
    for (const file of rejectedFiles) {
      it(`${file} is rejected`, () => {
        const check = expected[file]
        const { reason } = rejected(fixture(`rejected/${file}`))
        assert.isAbove(reason.length, 0)
        if (check === undefined) return assert.fail(`no expectation written for rejected/${file}: ${reason}`)
        check(reason)
      })
    }

    it("a document nested deeper than 1,000 levels, wherever the depth is; one exactly that deep is kept", () => {
      const deep = (n: number) => "[".repeat(n) + "]".repeat(n)
      const reason = "the value is nested deeper than 1000 levels"
      for (const raw of [
        `{"messages": [{"content": "b", "sender_id": ${deep(200_000)}}]}`,
        `{"messages": [{"content": ${deep(998)}}]}`,
        `{"messages": [{"content": "x", "timestamp": ${deep(998)}}]}`,
        `{"messages": [${deep(999)}]}`,
        `{"topic": ${deep(1000)}, "messages": []}`,
        `{"t": "\\u0000", "x": ${deep(1000)}, "messages": []}`
      ]) {
        assert.strictEqual(rejected(raw).reason, reason, raw.slice(0, 40))
      }
      // Root 1, messages 2, the message 3, its content 997 more: 1,000.
      assert.strictEqual(decoded("s-1", `{"messages": [{"content": ${deep(997)}}]}`).messages[0]!.content, deep(997))
      assert.strictEqual(JSON.stringify(decoded("s-1", `{"x": ${deep(999)}, "messages": []}`).meta.extra).length, 2004)
      // Brackets inside strings are counted, then walked: they are not depth.
      assert.strictEqual(decoded("s-1", JSON.stringify({ topic: "[".repeat(2000), messages: [] })).meta.topic, "[".repeat(2000))
    })

    it("other shapes that are not a session", () => {
      assert.strictEqual(rejected("null").reason, "the value is null, not a JSON object")
      assert.strictEqual(rejected("true").reason, "the value is a boolean, not a JSON object")
      assert.strictEqual(rejected(`{"messages":"hi"}`).reason, `"messages" is a string, not an array`)
      assert.strictEqual(rejected(`{"messages":3}`).reason, `"messages" is a number, not an array`)
      assert.match(rejected("").reason, /^not JSON: /)
    })
  })
})

describe("Snapshot.decodeSnapshot with a memo: a value that appends messages is decoded from what it appends", () => {
  const compact = (doc: { readonly topic: string; readonly messages: ReadonlyArray<string> }) =>
    `{"session_id": "s-1", "topic": ${JSON.stringify(doc.topic)}, "messages": [${doc.messages.join(", ")}]}`
  const message = (content: string, sender = 1, time = "2025-06-01T10:00:00Z") =>
    JSON.stringify({ content, sender_id: sender, timestamp: time })
  const snapshotOf = (result: Either.Either<Snapshot, Rejection>): Snapshot =>
    Either.isRight(result) ? result.right : assert.fail(result.left.reason)

  it("an append is decoded from the appended text alone (a planted metadata shows it), as a full decode would", () => {
    const memo = new KeyMemo()
    const first = compact({ topic: "trip", messages: [message("hi"), message("hello", 2)] })
    const one = snapshotOf(decodeSnapshot("s-1", first, new Set(), memo))
    assert.isDefined(memo.appendPoint)
    const known = new Set(one.messages.map((m) => m.key))
    const second = compact({ topic: "trip", messages: [message("hi"), message("hello", 2), message("new", 1, "2025-06-01T10:01:00Z")] })
    const planted = { ...memo.appendPoint!, meta: { ...memo.appendPoint!.meta, topic: "planted" } }
    memo.appendPoint = planted
    const two = snapshotOf(decodeSnapshot("s-1", second, known, memo))
    assert.strictEqual(two.meta.topic, "planted")
    const { meta: _, ...full } = snapshotOf(decodeSnapshot("s-1", second, known))
    const { meta: __, ...fast } = two
    assert.deepStrictEqual(fast, full)
    assert.deepStrictEqual(two.messages[2], {
      key: full.messages[2]!.key,
      sender: "1",
      content: "new",
      sentAt: { iso: "2025-06-01T10:01:00.000000Z", micros: Date.parse("2025-06-01T10:01:00Z") * 1000 },
      extra: null
    })
    // The memo holds the longer snapshot and can be extended again.
    assert.deepStrictEqual(memo.keys, full.messages.map((m) => m.key))
    assert.strictEqual(memo.appendPoint!.meta, planted.meta)
    assert.strictEqual(memo.appendPoint!.end, Buffer.byteLength(second) - 2)
  })

  it("anything but an append is decoded in full: an edit before the end, new metadata, a trim, an old message unknown", () => {
    const base = [message("hi"), message("hello", 2)]
    const cases: ReadonlyArray<readonly [string, string, (keys: ReadonlyArray<string>) => ReadonlySet<string>]> = [
      ["an old message edited", compact({ topic: "trip", messages: [message("hi!"), message("hello", 2), message("new")] }), (k) => new Set(k)],
      ["the topic changed", compact({ topic: "trip 2", messages: [...base, message("new")] }), (k) => new Set(k)],
      ["the oldest trimmed", compact({ topic: "trip", messages: [message("hello", 2), message("new")] }), (k) => new Set(k)],
      ["an old message not in the projection", compact({ topic: "trip", messages: [...base, message("new")] }), (k) => new Set(k.slice(1))],
      ["the same words again", compact({ topic: "trip", messages: [...base, message("hi")] }), (k) => new Set(k)],
      ["the same identity as JSON (1e999 writes null)", compact({ topic: "trip", messages: [...base, `{"content": "x", "sender_id": 1, "timestamp": 1e999}`, JSON.stringify({ content: "x", sender_id: 1, timestamp: null })] }), (k) => new Set(k)],
      ["a member after the messages changed", compact({ topic: "trip", messages: [...base, message("new")] }).slice(0, -1) + `, "x": 1}`, (k) => new Set(k)]
    ]
    const infinite = `{"content": "x", "sender_id": 1, "timestamp": 1e999}`
    for (const [what, raw, knownOf] of cases) {
      const memo = new KeyMemo()
      const before = compact({ topic: "trip", messages: what.includes("1e999") ? [...base, infinite] : base })
      const one = snapshotOf(decodeSnapshot("s-1", before, new Set(), memo))
      const point = memo.appendPoint!
      memo.appendPoint = { ...point, meta: { ...point.meta, topic: "planted" } }
      const known = knownOf(one.messages.map((m) => m.key))
      const two = snapshotOf(decodeSnapshot("s-1", raw, known, memo))
      assert.deepStrictEqual(two, snapshotOf(decodeSnapshot("s-1", raw, known)), what)
    }
  })

  it("what a full decode rejects is rejected: a character JSON does not take for space before the appended comma", () => {
    const memo = new KeyMemo()
    const before = compact({ topic: "trip", messages: [message("hi")] })
    const one = snapshotOf(decodeSnapshot("s-1", before, new Set(), memo))
    const raw = before.slice(0, -2) + "\u00a0, " + message("new") + "]}"
    const known = new Set(one.messages.map((m) => m.key))
    const result = decodeSnapshot("s-1", raw, known, memo)
    assert.isTrue(Either.isLeft(result))
    assert.deepStrictEqual(result, decodeSnapshot("s-1", raw, known))
  })

  it("a lone surrogate in the text (not from UTF-8 bytes) is decoded in full: hashed as UTF-8 it reads as U+FFFD", () => {
    for (const [old, next] of [["\uFFFD", "\uD800"], ["\uD800", "\uFFFD"]] as const) {
      for (const where of ["content", "topic"] as const) {
        const memo = new KeyMemo()
        const doc = (messages: ReadonlyArray<string>) =>
          where === "topic"
            ? `{"topic": "${messages.length === 1 ? old : next}", "messages": [${messages.join(", ")}]}`
            : `{"topic": "t", "messages": [${messages.join(", ")}]}`
        const first = where === "content" ? [`{"content": "${old}"}`] : [message("a")]
        const one = snapshotOf(decodeSnapshot("s-1", doc(first), new Set(), memo))
        const known = new Set(one.messages.map((m) => m.key))
        const raw = where === "content" ? doc([`{"content": "${next}"}`, message("b")]) : doc([...first, message("b")])
        assert.deepStrictEqual(decodeSnapshot("s-1", raw, known, memo), decodeSnapshot("s-1", raw, known), `${where} ${old}→${next}`)
      }
    }
  })

  it("an append that cannot be decoded is rejected as in full, and leaves the memo whole for the next value", () => {
    const memo = new KeyMemo()
    const base = [message("a")]
    const one = snapshotOf(decodeSnapshot("s-1", compact({ topic: "t", messages: base }), new Set(), memo))
    const deep = `{"content": "b", "sender_id": ${"[".repeat(200_000)}${"]".repeat(200_000)}}`
    const bad = compact({ topic: "t", messages: [...base, deep] })
    const known = new Set(one.messages.map((m) => m.key))
    assert.deepStrictEqual(decodeSnapshot("s-1", bad, known, memo), decodeSnapshot("s-1", bad, known))
    assert.isUndefined(memo.appendPoint)
    // Exactly as deep as allowed (root, messages, message, 997 more), appended: decoded from what it appends.
    const edge = `{"content": "e", "meta": ${"[".repeat(997)}${"]".repeat(997)}}`
    memo.appendPoint = undefined
    const again = snapshotOf(decodeSnapshot("s-1", compact({ topic: "t", messages: base }), known, memo))
    const point = memo.appendPoint!
    const withEdge = compact({ topic: "t", messages: [...base, edge] })
    const fast = decodeSnapshot("s-1", withEdge, new Set(again.messages.map((m) => m.key)), memo)
    assert.strictEqual((memo.appendPoint as typeof point | undefined)?.meta, point.meta)
    assert.deepStrictEqual(fast, decodeSnapshot("s-1", withEdge, known))
    // One level more, appended after it: refused by the shortcut as by a full decode.
    const tooDeep = compact({ topic: "t", messages: [...base, edge, edge.replace('"e"', '"f"').replace("[", "[[").replace("]", "]]")] })
    const held = new Set(snapshotOf(fast).messages.map((m) => m.key))
    const afterEdge = memo.appendPoint!
    assert.deepStrictEqual(decodeSnapshot("s-1", tooDeep, held, memo), Either.left({ reason: "the value is nested deeper than 1000 levels" }))
    assert.deepStrictEqual(decodeSnapshot("s-1", tooDeep, held), Either.left({ reason: "the value is nested deeper than 1000 levels" }))
    assert.isDefined(afterEdge)
    assert.isUndefined(memo.appendPoint)
    const next = compact({ topic: "t", messages: [...base, message("c")] })
    assert.deepStrictEqual(decodeSnapshot("s-1", next, known, memo), decodeSnapshot("s-1", next, known))
  })

  it("a memo is one session's: a value of another session is decoded in full (its metadata keeps the other id)", () => {
    const memo = new KeyMemo()
    const a = snapshotOf(decodeSnapshot("A", `{"session_id": "A", "messages": [${message("a")}]}`, new Set(), memo))
    const raw = `{"session_id": "A", "messages": [${message("a")}, ${message("b")}]}`
    const known = new Set(a.messages.map((m) => m.key))
    assert.deepStrictEqual(decodeSnapshot("B", raw, known, memo), decodeSnapshot("B", raw, known))
  })

  it("no place to append: no messages member, a messages member that is not the last array one, a long rest", () => {
    const memo = new KeyMemo()
    const cases = [
      `{"topic": "t"}`,
      `{"messages": [${message("a")}], "messages": null}`,
      `{"messages": [${message("a")}], "tail": "${"x".repeat(300)}"}`,
      // More than 2,048 characters outside the messages: the memo would keep what they decode to.
      `{"settings": "${"x".repeat(2100)}", "messages": [${message("a")}]}`
    ]
    for (const raw of cases) {
      decodeSnapshot("s-1", raw, new Set(), memo)
      assert.isUndefined(memo.appendPoint, raw.slice(0, 60))
    }
    decodeSnapshot("s-1", `{"settings": "${"x".repeat(1900)}", "messages": [${message("a")}]}`, new Set(), memo)
    assert.isDefined(memo.appendPoint)
    // The last of two messages members is the one JSON.parse keeps; its escaped name is still its name.
    decodeSnapshot("s-1", `{"messages": [1], "messag\\u0065s": [${message("a")}, 2] , "n": [3]}`, new Set(), memo)
    assert.deepStrictEqual(Buffer.from(memo.appendPoint!.rest).toString(), `] , "n": [3]}`)
  })

  it("any history of writes decodes with a memo exactly as without one, in any layout, the appends mostly from their text", () => {
    // Small pools, so that the same words, senders and times come back; values only JSON compares (1e999); text
    // that needs cleaning; layouts of several writers; members after the messages.
    const content = FastCheck.oneof(
      { weight: 6, arbitrary: FastCheck.stringMatching(/^[a-z]{1,10}$/) },
      { weight: 3, arbitrary: FastCheck.constantFrom("ok", "hi", "a \\\"quoted\\\" [word], {x}", "\\ud83d\\ude00") },
      { weight: 1, arbitrary: FastCheck.constantFrom("lone \\ud83d", "nul \\u0000") }
    )
    const rawMessage = FastCheck.oneof(
      { weight: 8, arbitrary: FastCheck.tuple(content, FastCheck.constantFrom("1", "2", "\"7\""), FastCheck.constantFrom("\"t0\"", "\"t1\"", "1e999", "null")).map(
        ([c, s, t]) => `{"content": "${c}", "sender_id": ${s}, "timestamp": ${t}}`
      ) },
      { weight: 1, arbitrary: FastCheck.constantFrom(`{"id": "m-1", "content": "x"}`, `"just text"`, `42`, `[1, 2]`, `{}`) }
    )
    const layout = FastCheck.record({
      open: FastCheck.constantFrom("", " ", "\n  "),
      sep: FastCheck.constantFrom(",", ", ", ",\n  "),
      close: FastCheck.constantFrom("", " ", "\n "),
      after: FastCheck.constantFrom("", `, "extra": [1]`, `, "messages": []`)
    })
    const rarely = <A>(arbitrary: FastCheck.Arbitrary<A>) =>
      FastCheck.oneof({ weight: 8, arbitrary: FastCheck.constant(undefined) }, { weight: 1, arbitrary })
    const step = FastCheck.record({
      append: FastCheck.array(rawMessage, { maxLength: 3 }),
      trim: FastCheck.constantFrom(0, 0, 0, 0, 0, 0, 0, 1),
      edit: rarely(FastCheck.tuple(FastCheck.nat(), rawMessage)),
      topic: FastCheck.constantFrom("trip", "trip", "trip", "trip", "trip", "other"),
      relayout: rarely(layout),
      forget: rarely(FastCheck.nat())
    })
    let fast = 0
    let steps = 0
    FastCheck.assert(FastCheck.property(layout, FastCheck.array(step, { minLength: 1, maxLength: 12 }), (first, history) => {
      const memo = new KeyMemo()
      let messages: Array<string> = []
      let style = first
      let known = new Set<string>()
      for (const { append, edit, forget, relayout, topic, trim } of history) {
        messages = [...messages.slice(trim), ...append]
        if (edit !== undefined && messages.length > 0) messages[edit[0] % messages.length] = edit[1]
        style = relayout ?? style
        const list = messages.length === 0 ? "[]" : `[${style.open}${messages.join(style.sep)}${style.close}]`
        const raw = `{"session_id": "s-1", "topic": "${topic}", "messages": ${list}${style.after}}`
        const point = memo.appendPoint
        const withMemo = decodeSnapshot("s-1", raw, known, memo)
        const without = decodeSnapshot("s-1", raw, known)
        assert.deepStrictEqual(withMemo, without, raw)
        steps++
        if (point !== undefined && memo.appendPoint?.meta === point.meta) fast++
        // As the writer does: what was decoded is in the projection next time, but for what it forgets.
        known = new Set(Either.isRight(without) ? without.right.messages.map((m) => m.key) : [])
        if (forget !== undefined && known.size > 0) known.delete(Array.from(known)[forget % known.size]!)
      }
    }), { numRuns: 400 })
    // Most histories soon leave it (a repeat, 1e999, an edit): the next property shows the appends taking it.
    assert.isAbove(fast, 0, `${fast} of ${steps} decodes took the shortcut`)
  })

  it("every write that only appends new messages is decoded from what it appends, in any layout", () => {
    const text = FastCheck.oneof(
      FastCheck.stringMatching(/^[a-z ]{0,12}$/),
      FastCheck.constantFrom("a \\\"quoted\\\" [word], {x}", "\\ud83d\\ude00 ok", "\\\\", "]}")
    )
    const layout = FastCheck.record({
      open: FastCheck.constantFrom("", " ", "\n  ", "\t"),
      sep: FastCheck.constantFrom(",", ", ", ",\n  ", " ,\r\n"),
      close: FastCheck.constantFrom("", " ", "\n "),
      after: FastCheck.constantFrom("", `, "extra": [1]`, ` , "n": {"m": [2]}`)
    })
    const history = FastCheck.array(FastCheck.array(text, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 10 })
    FastCheck.assert(FastCheck.property(layout, FastCheck.boolean(), history, (style, idFirst, writes) => {
      const memo = new KeyMemo()
      const messages: Array<string> = []
      let known = new Set<string>()
      writes.forEach((added, step) => {
        // Each message said once: its place in the session is part of it.
        for (const t of added) {
          const n = messages.length
          messages.push(idFirst && n % 3 === 0 ? `{"id": ${n}, "content": "${t}"}` : `{"content": "${t} ${n}", "sender_id": ${1 + (n % 2)}, "timestamp": "t${n}"}`)
        }
        const raw = `{"session_id": "s-1", "topic": "trip", "messages": [${style.open}${messages.join(style.sep)}${style.close}]${style.after}}`
        const point = memo.appendPoint
        const withMemo = decodeSnapshot("s-1", raw, known, memo)
        assert.deepStrictEqual(withMemo, decodeSnapshot("s-1", raw, known), raw)
        if (step > 0) assert.strictEqual(memo.appendPoint?.meta, point?.meta, `not from the appended text: ${raw}`)
        known = new Set(Either.isRight(withMemo) ? withMemo.right.messages.map((m) => m.key) : [])
      })
    }), { numRuns: 300 })
  })
})

describe("Snapshot.decodeSnapshot from bytes (as Redis gives them)", () => {
  const message = (content: string, n: number) => JSON.stringify({ content, sender_id: 1 + (n % 2), timestamp: `t${n}` })
  const doc = (messages: ReadonlyArray<string>, after = "") => `{"session_id": "s-1", "topic": "café ☕", "messages": [${messages.join(", ")}]${after}}`

  it("appends of text in several UTF-8 lengths are decoded from the appended bytes, as the text decodes in full", () => {
    const text = FastCheck.oneof(
      FastCheck.stringMatching(/^[a-z ]{0,8}$/),
      FastCheck.constantFrom("é", "☕ ok", "😀😀", "日本語", "a\u00e9", "é]}", "\u2028")
    )
    const history = FastCheck.array(FastCheck.array(text, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 8 })
    const after = FastCheck.constantFrom("", `, "note": "ünïcode"`, ` , "n": [2]`)
    let fast = 0
    let appends = 0
    FastCheck.assert(FastCheck.property(history, after, (writes, tail) => {
      const memo = new KeyMemo()
      const messages: Array<string> = []
      let known: ReadonlySet<string> = new Set()
      writes.forEach((added, step) => {
        for (const t of added) messages.push(message(`${t} ${messages.length}`, messages.length))
        const raw = doc(messages, tail)
        const point = memo.appendPoint
        const fromBytes = decodeSnapshot("s-1", Buffer.from(raw), known, memo, snapshotHash(raw))
        assert.deepStrictEqual(fromBytes, decodeSnapshot("s-1", raw, known), raw)
        if (step > 0) {
          appends++
          if (point !== undefined && memo.appendPoint?.meta === point.meta) fast++
        }
        // Where the next bytes go: after the last message, in bytes, not characters.
        assert.strictEqual(memo.appendPoint?.end, Buffer.byteLength(raw) - Buffer.byteLength(`]${tail}}`), raw)
        known = new Set(Either.isRight(fromBytes) ? fromBytes.right.messages.map((m) => m.key) : [])
      })
    }), { numRuns: 200 })
    assert.strictEqual(fast, appends, "every append was decoded from its appended bytes")
  })

  it("the bytes kept after the messages are a copy of their own, not a view of the value", () => {
    const memo = new KeyMemo()
    // Made by Buffer.from, a small value lies in a pooled slab; the rest is 12 bytes.
    const raw = Buffer.from(doc([message("a", 0)], `, "n": [3]`))
    decodeSnapshot("s-1", raw, new Set(), memo)
    const rest = memo.appendPoint!.rest
    assert.strictEqual(Buffer.from(rest).toString(), `], "n": [3]}`)
    assert.strictEqual(rest.buffer.byteLength, rest.byteLength)
    assert.notStrictEqual(rest.buffer, raw.buffer)
  })

  it("an append is checked against the prefix hash the caller took along, when it is for the memo's place", () => {
    const raw = Buffer.from(doc([message("a", 0), message("b", 1)]))
    /** A memo that holds the one-message value, its metadata planted, and the hashes of `raw` taken along. */
    const setUp = () => {
      const memo = new KeyMemo()
      const one = decodeSnapshot("s-1", Buffer.from(doc([message("a", 0)])), new Set(), memo)
      const known = new Set(Either.isRight(one) ? one.right.messages.map((m) => m.key) : [])
      const point = memo.appendPoint!
      memo.appendPoint = { ...point, meta: { ...point.meta, topic: "planted" } }
      return { memo, known, taken: snapshotHashWithPrefix(raw, point.end, point.rest) }
    }
    const topicOf = (r: ReturnType<typeof decodeSnapshot>) => (Either.isRight(r) ? r.right.meta.topic : undefined)
    // The right hash, taken along: the shortcut.
    const a = setUp()
    assert.strictEqual(topicOf(decodeSnapshot("s-1", raw, a.known, a.memo, a.taken.hash, a.taken.prefix)), "planted")
    // A wrong one for this place is believed (no second hash): decoded in full.
    const b = setUp()
    const wrong = { ...b.taken.prefix, digest: "0".repeat(64) }
    assert.strictEqual(topicOf(decodeSnapshot("s-1", raw, b.known, b.memo, b.taken.hash, wrong)), "café ☕")
    // One taken for another place (another rest, equal bytes) is not used: hashed here, the shortcut.
    const c = setUp()
    const elsewhere = { ...wrong, rest: new Uint8Array(c.taken.prefix.rest) }
    assert.strictEqual(topicOf(decodeSnapshot("s-1", raw, c.known, c.memo, c.taken.hash, elsewhere)), "planted")
  })

  it("bytes that are not UTF-8 are decoded in full, as their text with U+FFFD, and get no place to append", () => {
    const valid = Buffer.from(doc([message("a 0", 0)]))
    // A lone continuation byte inside the first message's content, and one inside an appended message.
    assert.isAbove(valid.indexOf("a 0"), 0)
    const bad = Buffer.concat([valid.subarray(0, valid.indexOf("a 0") + 1), Buffer.from([0x80]), valid.subarray(valid.indexOf("a 0") + 1)])
    const memo = new KeyMemo()
    const one = decodeSnapshot("s-1", bad, new Set(), memo)
    assert.isTrue(Either.isRight(one))
    assert.deepStrictEqual(one, decodeSnapshot("s-1", bad.toString("utf8"), new Set()))
    assert.include(Either.isRight(one) ? one.right.messages[0]!.content : "", "\uFFFD")
    assert.isUndefined(memo.appendPoint)

    const memo2 = new KeyMemo()
    const two = decodeSnapshot("s-1", valid, new Set(), memo2)
    const known = new Set(Either.isRight(two) ? two.right.messages.map((m) => m.key) : [])
    const point = memo2.appendPoint!
    memo2.appendPoint = { ...point, meta: { ...point.meta, topic: "planted" } }
    const appended = Buffer.from(doc([message("a 0", 0), message("b 1", 1)]))
    const badAppend = Buffer.concat([appended.subarray(0, appended.indexOf("b 1")), Buffer.from([0xe2, 0x28]), appended.subarray(appended.indexOf("b 1"))])
    const decoded = decodeSnapshot("s-1", badAppend, known, memo2)
    assert.deepStrictEqual(decoded, decodeSnapshot("s-1", badAppend.toString("utf8"), known), "not from the planted metadata")
    assert.isUndefined(memo2.appendPoint)
  })
})

describe("Snapshot.canonicalInteger", () => {
  it("integers and integer strings that fit a bigint, in canonical decimal form", () => {
    assert.strictEqual(canonicalInteger(3), "3")
    assert.strictEqual(canonicalInteger("3"), "3")
    assert.strictEqual(canonicalInteger("007"), "7")
    assert.strictEqual(canonicalInteger("-0"), "0")
    assert.strictEqual(canonicalInteger(" -12 "), "-12")
    assert.strictEqual(canonicalInteger("9223372036854775807"), "9223372036854775807")
    assert.strictEqual(canonicalInteger("-9223372036854775808"), "-9223372036854775808")
  })

  it("anything else is not an integer id", () => {
    for (
      const bad of [3.5, Number.NaN, 2 ** 53, "9223372036854775808", "-9223372036854775809", "1e3", "0x10", "", "abc", null, true]
    ) {
      assert.strictEqual(canonicalInteger(bad), undefined, String(bad))
    }
  })
})
