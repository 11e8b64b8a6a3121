/**
 * Entry point: loads `.env`, then runs the CLI.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
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
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
