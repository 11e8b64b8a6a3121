/**
 * Entry point: loads `.env`, then runs the CLI.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { cli } from "./Cli.js"

if (existsSync(".env")) process.loadEnvFile(".env")

cli(process.argv).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain({ disableErrorReporting: true }))
