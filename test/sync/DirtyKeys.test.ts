import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as DirtyKeys from "../../src/sync/DirtyKeys.js"

const at = (time: { now: number }) => () => time.now

describe("DirtyKeys", () => {
  it("coalesces marks of one id into one entry: the latest way of leaving wins, and a later change keeps it", () => {
    const dirty = DirtyKeys.unsafeMake({ maxPending: 10 }, () => 0)
    assert.strictEqual(dirty.mark("a", "changed"), "added")
    assert.strictEqual(dirty.mark("b", "deleted"), "added")
    assert.strictEqual(dirty.mark("a", "expired"), "coalesced")
    // The app publishes after its DEL: the key is read anyway, and if it is missing it was deleted, not expired.
    assert.strictEqual(dirty.mark("b", "changed"), "coalesced")
    for (let i = 0; i < 1000; i++) dirty.mark("c", "changed")
    dirty.mark("c", "evicted")
    dirty.mark("d", "deleted")
    dirty.mark("d", "evicted")
    assert.strictEqual(dirty.size(), 4)
    assert.deepStrictEqual(dirty.take(10), [
      { sessionId: "a", hint: "expired" },
      { sessionId: "b", hint: "deleted" },
      { sessionId: "c", hint: "evicted" },
      { sessionId: "d", hint: "evicted" }
    ])
    assert.strictEqual(dirty.size(), 0)
  })

  it("knows when the oldest change not written yet was marked, dirty or in flight", () => {
    const time = { now: 0 }
    const dirty = DirtyKeys.unsafeMake({ maxPending: 10 }, at(time))
    assert.strictEqual(dirty.oldestUnwrittenAt(), undefined)
    dirty.mark("a", "changed")
    time.now = 10
    dirty.mark("b", "changed")
    time.now = 20
    dirty.mark("a", "changed") // coalesced: still waiting since 0
    assert.strictEqual(dirty.oldestUnwrittenAt(), 0)
    dirty.take(1) // a is in flight now: its change is still not written
    assert.strictEqual(dirty.oldestUnwrittenAt(), 0)
    dirty.release(["a"])
    assert.strictEqual(dirty.oldestUnwrittenAt(), 10)
    dirty.take(10)
    dirty.release(["b"])
    assert.strictEqual(dirty.oldestUnwrittenAt(), undefined)
  })

  it("takes at most n entries, oldest mark first, and skips ids in flight until released", () => {
    const time = { now: 0 }
    const dirty = DirtyKeys.unsafeMake({ maxPending: 10 }, at(time))
    for (const id of ["a", "b", "c"]) {
      dirty.mark(id, "changed")
      time.now += 10
    }
    assert.deepStrictEqual(dirty.take(2).map((e) => e.sessionId), ["a", "b"])
    assert.strictEqual(dirty.inFlight(), 2)
    assert.strictEqual(dirty.oldestReadyAt(), 20)
    dirty.mark("a", "deleted") // in flight: dirty again, but not takeable
    assert.strictEqual(dirty.size(), 2)
    assert.strictEqual(dirty.ready(), 1)
    assert.deepStrictEqual(dirty.take(10).map((e) => e.sessionId), ["c"])
    assert.deepStrictEqual(dirty.take(10), [])
    assert.strictEqual(dirty.oldestReadyAt(), undefined)
    dirty.release(["a", "b"])
    assert.strictEqual(dirty.ready(), 1)
    assert.strictEqual(dirty.oldestReadyAt(), 30)
    assert.deepStrictEqual(dirty.take(10), [{ sessionId: "a", hint: "deleted" }])
    dirty.release(["a", "c"])
    assert.strictEqual(dirty.inFlight(), 0)
    assert.strictEqual(dirty.size(), 0)
  })

  it("past maxPending drops the set, counts an overflow and keeps only the id that overflowed it", () => {
    const dirty = DirtyKeys.unsafeMake({ maxPending: 3 }, () => 0)
    assert.deepStrictEqual(["a", "b", "c"].map((id) => dirty.mark(id, "changed")), ["added", "added", "added"])
    assert.strictEqual(dirty.mark("a", "deleted"), "coalesced")
    assert.strictEqual(dirty.overflows(), 0)
    const flying = dirty.take(1)
    assert.deepStrictEqual(flying, [{ sessionId: "a", hint: "deleted" }])
    dirty.mark("a", "changed") // dirty and in flight: counts toward the bound
    assert.strictEqual(dirty.mark("d", "expired"), "overflow")
    assert.strictEqual(dirty.overflows(), 1)
    assert.strictEqual(dirty.size(), 1)
    assert.strictEqual(dirty.ready(), 1)
    assert.strictEqual(dirty.inFlight(), 1)
    dirty.release(["a"])
    assert.deepStrictEqual(dirty.take(10), [{ sessionId: "d", hint: "expired" }])
  })

  it.effect("make stamps marks with the Effect Clock", () =>
    Effect.gen(function*() {
      const dirty = yield* DirtyKeys.make({ maxPending: 10 })
      yield* TestClock.adjust("1500 millis")
      dirty.mark("a", "changed")
      yield* TestClock.adjust("1 second")
      dirty.mark("b", "changed")
      dirty.mark("a", "changed")
      assert.strictEqual(dirty.oldestReadyAt(), 1500)
    }))
})
