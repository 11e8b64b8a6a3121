import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { type SnapshotObservation, withChanges } from "../../src/core/Decide.js"
import { KeyMemo, snapshotHash } from "../../src/core/MessageKey.js"
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
