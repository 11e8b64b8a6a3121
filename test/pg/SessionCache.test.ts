import { assert, describe, it } from "@effect/vitest"
import { SessionCache } from "../../src/pg/SessionCache.js"

/**
 * A cache of 100 units, so that ten entries of 10 fill it (no entry may weigh more than a tenth), whose entries
 * count as idle after 1,000 ms of a clock the test moves.
 */
const cacheOf = () => {
  const clock = { now: 0 }
  const cache = new SessionCache<string>(100, 1_000, () => clock.now)
  return { cache, clock }
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`)
const fill = (cache: SessionCache<string>, keys: ReadonlyArray<string>) => {
  for (const id of keys) assert.isTrue(cache.set(id, id, 10), `${id} held`)
}
const held = (cache: SessionCache<string>, keys: ReadonlyArray<string>) => keys.filter((id) => cache.has(id))

describe("SessionCache", () => {
  it("holds entries up to its limit and counts their units", () => {
    const { cache } = cacheOf()
    assert.isTrue(cache.set("a", "A", 10))
    assert.isTrue(cache.set("b", "B", 7))
    assert.strictEqual(cache.total, 17)
    assert.strictEqual(cache.get("a"), "A")
    cache.delete("a")
    assert.strictEqual(cache.get("a"), undefined)
    assert.strictEqual(cache.total, 7)
  })

  it("turns a new session away while every entry is in use, and keeps the ones it holds", () => {
    const { cache } = cacheOf()
    const first = ids("a", 10)
    fill(cache, first)
    assert.isFalse(cache.set("late", "late", 1))
    assert.deepStrictEqual(held(cache, [...first, "late"]), first)
    assert.strictEqual(cache.total, 100)
  })

  it("serves a cycle longer than it holds in proportion to its size, where LRU would serve none of it", () => {
    // Twenty sessions come round in turn and ten fit: each pass after the first finds the same ten.
    const { cache } = cacheOf()
    const cycle = ids("s", 20)
    let hits = 0
    for (let pass = 0; pass < 4; pass++) {
      for (const id of cycle) {
        if (cache.get(id) !== undefined) hits++
        cache.set(id, id, 10)
      }
    }
    assert.strictEqual(hits, 30)
  })

  it("lets a new session take the room of the least recently used idle ones", () => {
    const { cache, clock } = cacheOf()
    const first = ids("a", 10)
    fill(cache, first)
    clock.now = 500
    cache.get("a0")
    clock.now = 1_200
    // a1..a9 were last used at 0 (idle at 1,200), a0 at 500 (not yet): nine newcomers take their room, in order
    // of their last use, and the tenth is turned away.
    const next = ids("b", 10)
    fill(cache, next.slice(0, 9))
    assert.isFalse(cache.set("b9", "b9", 10))
    assert.deepStrictEqual(held(cache, [...first, ...next]), ["a0", ...next.slice(0, 9)])
  })

  it("keeps an entry it holds up to date, evicting the least recently used if it grew past the limit", () => {
    const { cache } = cacheOf()
    const first = ids("a", 11)
    for (const id of first) assert.isTrue(cache.set(id, id, 9))
    assert.isTrue(cache.set("a10", "A10", 10))
    assert.strictEqual(cache.total, 100)
    assert.isTrue(cache.set("a9", "A9", 10))
    assert.strictEqual(cache.get("a9"), "A9")
    // a0 (the least recently used) went to make room; nobody was idle, which does not matter for an update.
    assert.deepStrictEqual(held(cache, first), first.slice(1))
    assert.strictEqual(cache.total, 92)
  })

  it("never holds one entry above a tenth of its limit, nor an older version of it", () => {
    const { cache } = cacheOf()
    assert.isTrue(cache.set("a", "small", 5))
    assert.isFalse(cache.set("a", "huge", 11))
    assert.strictEqual(cache.get("a"), undefined)
    assert.strictEqual(cache.total, 0)
  })

  it("forgets everything on clear", () => {
    const { cache } = cacheOf()
    fill(cache, ids("a", 10))
    cache.clear()
    assert.strictEqual(cache.count, 0)
    assert.strictEqual(cache.total, 0)
    assert.isTrue(cache.set("b", "b", 10))
  })

  it("weighs an entry again in place: its units count, it becomes the most recently used, and past a tenth it goes", () => {
    const { cache } = cacheOf()
    for (const id of ids("a", 11)) assert.isTrue(cache.set(id, id, 9))
    assert.isTrue(cache.set("b", "b", 1))
    assert.strictEqual(cache.total, 100)
    assert.isFalse(cache.reweigh("none", () => 1))
    // a0 was the least recently used; weighed again it is the most recently used, and its growth past the limit
    // evicts the least recently used entry, a1 (idle or not).
    assert.isTrue(cache.reweigh("a0", (v) => (v === "a0" ? 10 : -1)))
    assert.strictEqual(cache.total, 92)
    assert.deepStrictEqual(held(cache, ["a0", "a1", "a2"]), ["a0", "a2"])
    // Past a tenth of the limit, an entry is not held, as `set` would not hold it.
    assert.isFalse(cache.reweigh("a2", () => 11))
    assert.isFalse(cache.has("a2"))
    assert.strictEqual(cache.total, 83)
  })
})
