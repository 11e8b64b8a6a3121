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

cli(process.argv).pipe(
  Effect.provide(Layer.merge(NodeContext.layer, Logging.layer)),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Exits once the command is done, every connection closed: left to drain, the loop waited 1-2 s more on the
    // interval with which ioredis's reply parser shrinks its buffer after large replies (every 50 ms until small).
    // Standard output is written synchronously on Linux (files, pipes, terminals), so nothing printed is lost.
    teardown: (exit, onExit) =>
      defaultTeardown(exit, (code) => {
        onExit(code)
        process.exit(code)
      })
  })
)
