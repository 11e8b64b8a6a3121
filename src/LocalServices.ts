/**
 * With no configuration at all, the program starts throwaway Redis and PostgreSQL under `.data/` (through
 * `scripts/services.mjs`, the same script the tests and CI use) and points itself at them.
 */
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { CONNECTION_VARIABLES } from "./Config.js"

/** True when none of REDIS_URL, REDIS_HOST, DATABASE_URL is set. */
export const unconfigured = (): boolean => CONNECTION_VARIABLES.every((name) => !process.env[name])

const servicesScript = (): URL | undefined =>
  [new URL("../scripts/services.mjs", import.meta.url), new URL("../../scripts/services.mjs", import.meta.url)]
    .find((u) => existsSync(u))

/**
 * When unconfigured, starts (or reuses) the local services and sets REDIS_URL and DATABASE_URL for this
 * process; says so in the log. Otherwise does nothing.
 */
export const ensureLocalServices = Effect.gen(function*() {
  if (!unconfigured()) return
  const script = servicesScript()
  if (script === undefined) {
    return yield* Effect.fail(new Error("no REDIS_URL/REDIS_HOST or DATABASE_URL configured, and scripts/services.mjs is not here to start local ones"))
  }
  yield* Effect.logInfo("No REDIS_URL/REDIS_HOST or DATABASE_URL configured: starting throwaway local Redis and PostgreSQL under .data/ (set them to use your own servers)")
  const services = yield* Effect.tryPromise({
    try: async () => {
      const mod = (await import(script.href)) as { start: (o?: object) => Promise<{ redisUrl: string; databaseUrl: string }> }
      return mod.start({})
    },
    catch: (cause) => new Error(`starting local services failed: ${cause instanceof Error ? cause.message : String(cause)}`)
  })
  process.env.REDIS_URL = services.redisUrl
  process.env.DATABASE_URL = services.databaseUrl
  yield* Effect.logInfo(`Using local Redis at ${services.redisUrl} and PostgreSQL at ${services.databaseUrl}`)
})
