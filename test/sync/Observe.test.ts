import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { type SnapshotObservation, withChanges } from "../../src/core/Decide.js"
import { KeyMemo, snapshotHash, snapshotHashWithPrefix } from "../../src/core/MessageKey.js"
import { PgError } from "../../src/pg/PgError.js"
import { EXCERPT_LENGTH, observe } from "../../src/sync/Observe.js"
import { refused } from "../../src/sync/Writer.js"

const value = `{"session_id": "s-1", "topic": "café ☕", "messages": [{"content": "${"é".repeat(300)}", "sender_id": 1}]}`
const read = (v: string | null, redisType = "string") => ({ sessionId: "s-1", value: v === null ? null : Buffer.from(v), redisType })

const snapshotOf = (o: ReturnType<typeof observe>): SnapshotObservation =>
  o !== null && o._tag === "Snapshot" ? o : assert.fail(`not a snapshot observation: ${JSON.stringify(o)}`)

describe("Observe.observe", () => {
  it("a string value: its hash, an excerpt, its length in characters, and its decoding, from the bytes", () => {
    const o = snapshotOf(observe(read(value)))
    assert.strictEqual(o.sessionId, "s-1")
    assert.strictEqual(o.hash, snapshotHash(value))
    assert.strictEqual(o.excerpt, value.slice(0, EXCERPT_LENGTH))
    assert.strictEqual(o.length, value.length)
    const decoded = o.decode(new Set())
    assert.isTrue(Either.isRight(decoded))
    // Decoded with no known message and no memo once, then kept (`decodeAhead`).
    assert.strictEqual(o.decode(new Set()), decoded)
    // With a memo: decoded again, and the memo takes the snapshot.
    const memo = new KeyMemo()
    assert.deepStrictEqual(o.decode(new Set(), memo), decoded)
    assert.strictEqual(memo.size, 1)
    assert.isDefined(memo.appendPoint)
  })

  it("a key gone is no observation; another type is one that decodes to a rejection", () => {
    assert.isNull(observe(read(null, "none")))
    const hashed = snapshotOf(observe(read(null, "hash")))
    const decoded = hashed.decode(new Set())
    assert.deepStrictEqual(Either.isLeft(decoded) && decoded.left.reason, "the key holds a Redis hash, not a string")
  })
})

describe("Observe: a value's hash taken along with the bytes an append is checked against", () => {
  const doc = (n: number) => `{"session_id": "s-1", "topic": "t", "messages": [${Array.from({ length: n }, (_, i) => `{"content": "m ${i} é"}`).join(", ")}]}`

  it("snapshotHashWithPrefix: the value's hash, and the hash of its bytes before end followed by rest", () => {
    const value = Buffer.from(doc(3))
    const rest = Buffer.from("]}")
    const end = value.length - 2
    const both = snapshotHashWithPrefix(value, end, rest)
    assert.strictEqual(both.hash, snapshotHash(value))
    assert.strictEqual(both.prefix.digest, snapshotHash(Buffer.concat([value.subarray(0, end), rest])))
    const other = snapshotHashWithPrefix(value, 10, Buffer.from("xyz"))
    assert.strictEqual(other.hash, snapshotHash(value))
    assert.strictEqual(other.prefix.digest, snapshotHash(Buffer.concat([value.subarray(0, 10), Buffer.from("xyz")])))
  })

  it("an observation made without a hash hashes when asked, in one pass when offered its memo's place first", () => {
    const memo = new KeyMemo()
    const first = snapshotOf(observe(read(doc(2))))
    assert.strictEqual(first.hash, snapshotHash(doc(2)))
    const one = first.decode(new Set(), memo)
    const known = new Set(Either.isRight(one) ? one.right.messages.map((m) => m.key) : [])
    const point = memo.appendPoint!
    // Planted metadata: a write decoded from its appended bytes keeps it.
    memo.appendPoint = { ...point, meta: { ...point.meta, topic: "planted" } }
    const next = snapshotOf(observe(read(doc(3))))
    assert.isFunction(next.hashAlong)
    next.hashAlong!(point.end, point.rest)
    assert.strictEqual(next.hash, snapshotHash(doc(3)))
    const two = next.decode(known, memo)
    assert.strictEqual(Either.isRight(two) && two.right.meta.topic, "planted")
    assert.strictEqual(Either.isRight(two) && two.right.messages.length, 3)
    // Once the hash is taken, an offer changes nothing.
    const third = snapshotOf(observe(read(doc(4))))
    const hash = third.hash
    third.hashAlong!(0, Buffer.from("x"))
    assert.strictEqual(third.hash, hash)
  })
})

describe("Decide.withChanges", () => {
  it("copies an observation with its getters and methods (a spread would drop them), with the changes given", () => {
    const o = snapshotOf(observe(read(value)))
    // What a spread of the instance gives: no decode, no excerpt, no length.
    const spread = { ...o } as Partial<SnapshotObservation>
    assert.isUndefined(spread.decode)
    assert.isUndefined(spread.excerpt)

    const forced = withChanges(o, { force: true })
    assert.strictEqual(forced.force, true)
    assert.strictEqual(forced.hash, o.hash)
    assert.strictEqual(forced.excerpt, o.excerpt)
    assert.strictEqual(forced.length, value.length)
    assert.deepStrictEqual(forced.decode(new Set()), o.decode(new Set()))

    const refused = withChanges(forced, { decode: () => Either.left({ reason: "no" }), excerpt: "" })
    assert.strictEqual(refused.force, true, "kept from the copy")
    assert.strictEqual(refused.excerpt, "")
    assert.strictEqual(refused.length, value.length)
    assert.deepStrictEqual(refused.decode(new Set()), Either.left({ reason: "no" }))
    assert.isFalse("force" in withChanges(o, {}), "not forced unless asked")
  })
})

describe("Writer.refused", () => {
  it("a value PostgreSQL refused is rejected with the refusal, its excerpt (unless bare), length and force kept", () => {
    const o = withChanges(snapshotOf(observe(read(value))), { force: true })
    const error = new PgError({ reason: "data", message: "value too long" })
    const r = snapshotOf(refused(o, error))
    assert.deepStrictEqual(r.decode(new Set()), Either.left({ reason: "PostgreSQL refused the session: value too long" }))
    assert.strictEqual(r.excerpt, value.slice(0, EXCERPT_LENGTH))
    assert.strictEqual(r.length, value.length)
    assert.strictEqual(r.hash, snapshotHash(value))
    assert.strictEqual(r.force, true)
    const bare = snapshotOf(refused(o, error, true))
    assert.strictEqual(bare.excerpt, "")
    assert.strictEqual(bare.length, value.length)
  })
})
