/**
 * Starts (or reuses) throwaway Redis and PostgreSQL under `.data/test` for the whole run, through the same
 * script the daemon and CI use. Tests reach them through `inject("redisUrl")` / `inject("databaseUrl")`;
 * each test file works in its own PostgreSQL schema and Redis key prefix, so files may run in parallel.
 */
import { fileURLToPath } from "node:url"
import type { TestProject } from "vitest/node"
import { start } from "../../scripts/services.mjs"

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string
    databaseUrl: string
  }
}

export default async function setup(project: TestProject) {
  const dir = process.env.TEST_DATA_DIR ?? fileURLToPath(new URL("../../.data/test", import.meta.url))
  const { redisUrl, databaseUrl } = await start({ dir, quiet: true })
  project.provide("redisUrl", redisUrl)
  project.provide("databaseUrl", databaseUrl)
}
