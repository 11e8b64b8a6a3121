// What every benchmark script starts with: the servers, and the reference benchmarks installed beside them.
//
// - servers: throwaway Redis + PostgreSQL under .data/bench (scripts/services.mjs), unless REDIS_URL and
//   DATABASE_URL are set;
// - ../shared/bench (read-only) copied to .data/bench-ref, its dependencies installed once;
// - results of the reference scripts go to bench-results/.
import { execFileSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** `--name value` from the command line, or `fallback`. */
export const option = (args, name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : fallback
}

export const setUp = async () => {
  const { start } = await import(path.join(root, "scripts/services.mjs"))
  let { REDIS_URL: redisUrl, DATABASE_URL: databaseUrl } = process.env
  if (!redisUrl || !databaseUrl) ({ redisUrl, databaseUrl } = await start({ dir: path.join(root, ".data/bench") }))
  const env = { ...process.env, REDIS_URL: redisUrl, DATABASE_URL: databaseUrl }
  const refDir = path.join(root, ".data/bench-ref")
  if (!existsSync(path.join(refDir, "node_modules"))) {
    mkdirSync(refDir, { recursive: true })
    cpSync(path.resolve(root, "../shared/bench"), refDir, { recursive: true, filter: (src) => !src.includes("node_modules") })
    console.log("installing the reference benchmarks' dependencies in .data/bench-ref ...")
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--silent"], { cwd: refDir, stdio: "inherit" })
  }
  const resultsDir = path.join(root, "bench-results")
  return { redisUrl, databaseUrl, env, refDir, resultsDir, refEnv: { ...env, BENCH_RESULTS_DIR: resultsDir } }
}
