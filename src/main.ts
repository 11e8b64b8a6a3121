/**
 * Entry point: loads `.env`, then runs the CLI.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import { cli } from "./Cli.js"
import * as Logging from "./Logging.js"

if (existsSync(".env")) process.loadEnvFile(".env")

cli(process.argv).pipe(
  Effect.provide(Layer.merge(NodeContext.layer, Logging.layer)),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
