import { assert, describe, it } from "@effect/vitest"
import { batcher, toBatches } from "../../src/sync/FullSync.js"

describe("FullSync.batcher", () => {
  it("closes a batch at its item limit or once its sizes add up to its byte limit, whichever comes first", () => {
    const b = batcher<string>(3, 100)
    assert.isUndefined(b.add("a", 10))
    assert.isUndefined(b.add("b", 10))
    assert.deepStrictEqual(b.add("c", 10), ["a", "b", "c"])
    assert.isUndefined(b.add("d", 60))
    assert.deepStrictEqual(b.add("e", 40), ["d", "e"])
    assert.deepStrictEqual(b.add("huge", 1_000), ["huge"])
    assert.isUndefined(b.rest())
    assert.isUndefined(b.add("f", 1))
    assert.deepStrictEqual(b.rest(), ["f"])
    assert.isUndefined(b.rest())
  })

  it("toBatches splits reads by count and by their values' bytes (each read counts 100 bytes more)", () => {
    const read = (id: string, bytes: number) => ({
      raw: { sessionId: id, value: Buffer.alloc(bytes), redisType: "string" as const },
      hash: id,
      unknown: true
    })
    const items = [read("a", 400), read("b", 400), read("c", 50), read("d", 50), read("e", 50), read("f", 50)]
    const ids = (batches: ReadonlyArray<ReadonlyArray<{ readonly hash: string }>>) => batches.map((b) => b.map((c) => c.hash))
    // a and b weigh 500 each: together they reach 1,000; the four small ones, 150 each, stay under it.
    assert.deepStrictEqual(ids(toBatches(items, 10, 1_000)), [["a", "b"], ["c", "d", "e", "f"]])
    assert.deepStrictEqual(ids(toBatches(items, 2, 1_000_000)), [["a", "b"], ["c", "d"], ["e", "f"]])
  })
})
