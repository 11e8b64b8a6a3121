/**
 * Entry point: loads `.env`, then runs the CLI.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { defaultTeardown } from "@effect/platform/Runtime"
import { Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import { cli } from "./Cli.js"
import { boundHeapGrowth, heapGrowthPercent } from "./Heap.js"
import * as Logging from "./Logging.js"

if (existsSync(".env")) process.loadEnvFile(".env")

// The daemon's own bound is set when it starts (`start` in Cli.ts); here, only one set by SYNC_HEAP_GROWTH_PERCENT.
boundHeapGrowth(heapGrowthPercent(), false)

/**
 * Exits with `code` once what was printed has been written: a pipe takes 64 KiB at once and Node queues the rest,
 * which `process.exit` would drop (an empty write's callback runs after the writes queued before it). At most 5 s:
 * a reader that never reads must not keep a stopping daemon alive.
 */
const exitOnceWritten = (code: number) => {
  setTimeout(() => process.exit(code), 5_000).unref()
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
}

cli(process.argv).pipe(
  Effect.provide(Layer.merge(NodeContext.layer, Logging.layer)),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Exits once the command is done and every connection closed, rather than when the event loop has drained:
    // that waited 1-2 s more on the interval with which ioredis's reply parser shrinks its buffer after large
    // replies (every 50 ms until small).
    teardown: (exit) => defaultTeardown(exit, exitOnceWritten)
  })
)
