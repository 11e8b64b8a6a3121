import { assert, describe, it } from "@effect/vitest"
import { HEAP_GROWING_PERCENT, heapGrowthFlag } from "../../src/Heap.js"

describe("Heap.heapGrowthFlag", () => {
  it("bounds the heap's growth when nothing else does", () => {
    assert.strictEqual(heapGrowthFlag(["--enable-source-maps"], "--max-old-space-size=4096"), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
    assert.strictEqual(heapGrowthFlag([], undefined), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  })

  it("leaves a growth given on the command line or in NODE_OPTIONS alone", () => {
    assert.strictEqual(heapGrowthFlag(["--heap-growing-percent=200"], undefined), undefined)
    assert.strictEqual(heapGrowthFlag([], "--inspect --heap-growing-percent=20"), undefined)
  })
})
