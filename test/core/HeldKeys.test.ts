import { assert, describe, it } from "@effect/vitest"
import { decide, type SessionState } from "../../src/core/Decide.js"
import type { SyncEvent } from "../../src/core/Events.js"
import { HeldKeys, holdsAll, KeyMemo, leadingHeld, snapshotHash } from "../../src/core/MessageKey.js"
import { decodeSnapshot } from "../../src/core/Snapshot.js"
import { seen } from "./Given.js"

const SID = "trip-1"
const message = (i: number) => JSON.stringify({ content: `message ${i}`, sender_id: 1 + (i % 2), timestamp: `2026-11-27T10:00:${String(i % 60).padStart(2, "0")}Z` })
const value = (n: number) =>
  `{"session_id": "${SID}", "topic": "trip", "group_id": 7, "messages": [${Array.from({ length: n }, (_, i) => message(i)).join(", ")}]}`

/** A `HeldKeys` that counts its lookups. */
class Counting extends HeldKeys {
  lookups = 0
  override has(key: string): boolean {
    this.lookups++
    return super.has(key)
  }
}

/**
 * A writer's view of one session over live appends, as `SessionStore` keeps it: a memo, the projection's count and
 * hash, and the set of known keys made for each write by `keysOf` from the memo's vouched keys.
 */
const liveWrites = (start: number, writes: number, keysOf: (memoKeys: ReadonlyArray<string>) => ReadonlySet<string>) => {
  const memo = new KeyMemo()
  const first = value(start)
  decodeSnapshot(SID, first, new Set(), memo)
  let hash = snapshotHash(first)
  let count = start
  let metaHash: string | null = null
  const results: Array<{ events: ReadonlyArray<SyncEvent>; known: ReadonlySet<string> }> = []
  for (let n = start + 1; n <= start + writes; n++) {
    const known = keysOf(memo.keys)
    const state: SessionState = {
      session: { snapshotHash: hash, metaHash, updatedAtMicros: null, messageCount: count, gone: null, messageKeys: known, keyMemo: memo },
      rejectedHash: null
    }
    const raw = value(n)
    const events = decide(seen(SID, raw), state)
    for (const e of events) {
      if (e.type === "messages_appended") count += e.payload.messages.length
      if (e.type === "session_upserted") metaHash = e.payload.meta_hash
    }
    hash = snapshotHash(raw)
    results.push({ events, known })
  }
  return results
}

describe("MessageKey.HeldKeys", () => {
  it("is the set of its keys, whatever form it takes inside", () => {
    const list = ["a", "b", "c", "d", "e", "f"]
    const held = new HeldKeys(list)
    assert.strictEqual(held.size, 6)
    // More lookups than are scanned: the set is made, and answers the same.
    for (let round = 0; round < 3; round++) {
      for (const k of list) assert.isTrue(held.has(k), k)
      assert.isFalse(held.has("z"))
    }
    assert.deepStrictEqual(Array.from(held), list)
    assert.deepStrictEqual(Array.from(held.values()), list)
    assert.deepStrictEqual(Array.from(held.keys()), list)
    assert.deepStrictEqual(Array.from(held.entries()).map(([k, v]) => k + v), list.map((k) => k + k))
    const seen: Array<string> = []
    held.forEach((k, v, set) => {
      assert.strictEqual(k, v)
      assert.strictEqual(set, held)
      seen.push(k)
    })
    assert.deepStrictEqual(seen, list)
    held.add("g").add("a")
    assert.strictEqual(held.size, 7)
    assert.isTrue(held.has("g"))
    // The list it was made from is not changed.
    assert.deepStrictEqual(list, ["a", "b", "c", "d", "e", "f"])
    // An add before any lookup.
    const added = new HeldKeys(["a"]).add("b")
    assert.isTrue(added.has("b"))
    assert.strictEqual(added.size, 2)
    assert.strictEqual(new HeldKeys([]).size, 0)
    assert.isFalse(new HeldKeys([]).has("a"))
  })

  it("knows leading messages by position, and only those whose keys are its list in order", () => {
    const list = ["k1", "k2", "k3"]
    const held = new HeldKeys(list)
    const msgs = (...keys: Array<string>) => keys.map((key) => ({ key }))
    assert.strictEqual(held.leadingIn(msgs("k1", "k2", "k3", "k4")), 3)
    assert.strictEqual(held.leadingIn(msgs("k1", "k2", "k3")), 3)
    assert.strictEqual(held.leadingIn(msgs("k1", "k2")), 0, "fewer messages than keys")
    assert.strictEqual(held.leadingIn(msgs("k2", "k3", "k4")), 0, "trimmed: shifted")
    assert.strictEqual(held.leadingIn(msgs("k1", "kx", "k3", "k4")), 0, "one differs")
    assert.strictEqual(held.add("k9").leadingIn(msgs("k1", "k2", "k3", "k9")), 3, "an added key is looked up, not placed")
    assert.strictEqual(leadingHeld(new Set(list), msgs("k1", "k2", "k3")), 0, "any other set: none by position")

    assert.isTrue(holdsAll(new HeldKeys(list), list), "the very list")
    assert.isTrue(holdsAll(new HeldKeys(list), ["k3", "k1"]), "another list, looked up")
    assert.isFalse(holdsAll(new HeldKeys(list), ["k1", "k4"]))
    assert.isTrue(holdsAll(new Set(list), ["k2"]))
    assert.isFalse(holdsAll(new Set(list), ["k4"]))
  })

  it("a live write decides as with a copied set, looking up only the appended message", () => {
    const copied = liveWrites(20, 8, (keys) => new Set(keys))
    const counted = liveWrites(20, 8, (keys) => new Counting(keys))
    assert.deepStrictEqual(counted.map((r) => r.events), copied.map((r) => r.events))
    copied.forEach(({ events }, i) => {
      const appended = events.filter((e) => e.type === "messages_appended")
      assert.strictEqual(appended.length, 1, `write ${i}`)
      assert.deepStrictEqual(appended[0]!.type === "messages_appended" && appended[0]!.payload.messages.map((m) => m.ordinal), [20 + i])
    })
    // Decoding looks the appended message up once, and `decide` once more: 2 of 21–28 messages, every write.
    for (const { known } of counted) assert.strictEqual((known as Counting).lookups, 2)
  })

  it("a partial set (the projection holds more than the memo vouches for), grown as recheck grows it, decides as a Set", () => {
    // The projection holds messages 0–21; the memo's snapshot has 2–21 (the app trimmed the two oldest).
    const memo = new KeyMemo()
    const all = Array.from({ length: 22 }, (_, i) => message(i))
    const trimmed = `{"session_id": "${SID}", "topic": "trip", "group_id": 7, "messages": [${all.slice(2).join(", ")}]}`
    decodeSnapshot(SID, trimmed, new Set(), memo)
    const vouched = memo.keys
    // A value that brings the trimmed two back (a rollback in the app) and one new message.
    const raw = value(23)
    const decideWith = (known: ReadonlySet<string>) =>
      decide(seen(SID, raw), {
        session: { snapshotHash: snapshotHash(trimmed), metaHash: null, updatedAtMicros: null, messageCount: 22, gone: null, messageKeys: known },
        rejectedHash: null
      })
    const full = Array.from(decodeSnapshot(SID, value(22)).pipe((e) => (e._tag === "Right" ? e.right.messages.map((m) => m.key) : [])))
    // First decided with the vouched keys alone, then again once PostgreSQL said it holds the two (as recheck does).
    const held = new HeldKeys(vouched)
    const plain = new Set(vouched)
    assert.deepStrictEqual(decideWith(held), decideWith(plain))
    for (const key of full.slice(0, 2)) {
      held.add(key)
      plain.add(key)
    }
    const again = decideWith(held)
    assert.deepStrictEqual(again, decideWith(plain))
    const appended = again.flatMap((e) => (e.type === "messages_appended" ? e.payload.messages.map((m) => m.content) : []))
    assert.deepStrictEqual(appended, [JSON.parse(message(22)).content])
  })
})
