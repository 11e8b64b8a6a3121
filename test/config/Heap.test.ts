import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { ConfigProvider } from "effect"
import { HEAP_GROWTH_PERCENT } from "../../src/Config.js"
import { DAEMON_NODE_FLAGS, heapGrowthFlag, heapGrowthPercent } from "../../src/Heap.js"

describe("Heap.heapGrowthFlag", () => {
  it("bounds the daemon's heap growth by default, or as SYNC_HEAP_GROWTH_PERCENT says", () => {
    assert.strictEqual(heapGrowthFlag(["--enable-source-maps"], undefined, true), `--heap-growing-percent=${HEAP_GROWTH_PERCENT.fallback}`)
    assert.strictEqual(heapGrowthFlag([], 120, true), "--heap-growing-percent=120")
  })

  it("leaves a one-shot command's growth to V8 unless SYNC_HEAP_GROWTH_PERCENT is set", () => {
    assert.strictEqual(heapGrowthFlag([], undefined, false), undefined)
    assert.strictEqual(heapGrowthFlag([], 120, false), "--heap-growing-percent=120")
  })

  it("0 leaves the growth to V8; a growth on the command line wins", () => {
    for (const daemon of [true, false]) {
      assert.strictEqual(heapGrowthFlag([], 0, daemon), undefined)
      assert.strictEqual(heapGrowthFlag(["--heap-growing-percent=200"], 30, daemon), undefined)
    }
  })
})

describe("Heap.heapGrowthPercent", () => {
  const read = (value?: string) =>
    heapGrowthPercent(ConfigProvider.fromMap(new Map(value === undefined ? [] : [[HEAP_GROWTH_PERCENT.variable, value]])))

  it("reads the variable as the configuration does: unset or blank, or a bad value (which the configuration refuses), is none", () => {
    assert.strictEqual(read(), undefined)
    assert.strictEqual(read("120"), 120)
    assert.strictEqual(read("0"), 0)
    assert.strictEqual(read(" "), undefined)
    for (const bad of ["-5", "12.5", "lots", "1001"]) assert.strictEqual(read(bad), undefined, bad)
  })
})

describe("Heap.DAEMON_NODE_FLAGS", () => {
  const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8")

  it("is on node's command line wherever the daemon is run: npm start, the Docker image, bench/live", () => {
    const start: string = JSON.parse(read("package.json")).scripts.start
    assert.deepStrictEqual(DAEMON_NODE_FLAGS, ["--max-semi-space-size=8", "--single-threaded-gc"])
    assert.match(start, new RegExp(`^exec node ${DAEMON_NODE_FLAGS.join(" ")} `))
    assert.include(read("Dockerfile"), `ENTRYPOINT ["node", ${DAEMON_NODE_FLAGS.map((f) => `"${f}"`).join(", ")}, "dist/main.js"]`)
    assert.include(read("bench/live.mjs"), `const nodeArgs = [${DAEMON_NODE_FLAGS.map((f) => `"${f}"`).join(", ")}, `)
    assert.include(read("README.md"), `node ${DAEMON_NODE_FLAGS.join(" ")} dist/main.js start`)
  })
})
