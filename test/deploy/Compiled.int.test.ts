/**
 * The compiled daemon, built and run the way the Docker image builds and runs it (`npm run build`, then
 * `node dist/main.js start`), checked end to end by `scripts/test-sync` and stopped by SIGTERM. No Docker engine
 * is available where the tests run, so this is what keeps the image's path from rotting unnoticed. The image's
 * `npm ci --omit=dev` is stood in for by a check that dist/ imports only production dependencies. The build goes
 * to a directory of its own under .data/ (inside the checkout, so that node_modules resolves), never over a dist/
 * that someone may be running.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { builtinModules } from "node:module"
import { tmpdir } from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import pg from "pg"
import { Redis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { globEscape } from "../../src/redis/SessionSource.js"
import { makeTestEnv } from "../support/Servers.js"

const root = fileURLToPath(new URL("../..", import.meta.url))
const env = makeTestEnv("deploy")
const outDir = path.join(root, ".data", `build-${env.schema}`)
const token = `token-${env.schema}`

/** What the daemon and scripts/test-sync read: the test servers, this file's schema, key and channel prefixes. */
const deployment = {
  REDIS_URL: env.redisUrl,
  DATABASE_URL: env.databaseUrl,
  PG_SCHEMA: env.schema,
  SYNC_KEY_PREFIX: env.prefix,
  SYNC_CHANNEL_PREFIX: `${env.prefix}updated:`,
  SYNC_API_TOKEN: token
}

/** Runs a program to its end; a failed exit is a result here, not an error. */
const run = (file: string, args: ReadonlyArray<string>, extraEnv: Record<string, string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(file, args, { cwd: outDir, env: { ...process.env, ...extraEnv }, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr }))
  })

const testSync = (extraEnv: Record<string, string>) =>
  run(path.join(root, "scripts/test-sync"), [], { ...deployment, SYNC_TEST_TIMEOUT: "10", ...extraEnv })

/** Every package the compiled modules import by name (`effect`, `@effect/sql`, ...), builtins aside. */
const importedPackages = (dir: string): Set<string> => {
  const names = new Set<string>()
  const specifier = /(?:\bfrom\s*|\bimport\s*\(?\s*)"([^"]+)"/g
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".js")) continue
    for (const [, name] of readFileSync(path.join(entry.parentPath, entry.name), "utf8").matchAll(specifier)) {
      if (name === undefined || name.startsWith(".") || name.startsWith("node:") || builtinModules.includes(name)) continue
      const parts = name.split("/")
      names.add(name.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!)
    }
  }
  return names
}

let daemon: ChildProcess | undefined

// The Dockerfile's build step, into outDir.
beforeAll(async () => {
  await promisify(execFile)("npm", ["run", "build", "--", "--out-dir", outDir], { cwd: root }).catch(
    (error: { stdout?: string; stderr?: string }) => {
      throw new Error(`npm run build failed:\n${error.stdout ?? ""}${error.stderr ?? ""}`)
    }
  )
}, 180_000)

afterAll(async () => {
  daemon?.kill("SIGKILL")
  const db = new pg.Client({ connectionString: env.databaseUrl })
  await db.connect()
  await db.query(`DROP SCHEMA IF EXISTS "${env.schema}" CASCADE`)
  await db.end()
  const redis = new Redis(env.redisUrl)
  const keys = await redis.keys(`${globEscape(env.prefix)}*`)
  if (keys.length > 0) await redis.del(...keys)
  redis.disconnect()
  rmSync(outDir, { recursive: true, force: true })
})

describe("the compiled daemon (npm run build; node dist/main.js start)", () => {
  it("imports no package that `npm ci --omit=dev` leaves out", () => {
    const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { dependencies: object }
    // The compiled tree the bundle is made of (the bundle itself is checked by running it alone, below).
    const missing = [...importedPackages(path.join(outDir, "src"))].filter((name) => !(name in pkg.dependencies))
    assert.deepStrictEqual(missing, [], "imported by dist/ but not in package.json dependencies")
  })

  it("the bundle dist/main.js needs no node_modules: copied alone elsewhere, it reaches Redis and PostgreSQL", async () => {
    const alone = mkdtempSync(path.join(tmpdir(), "redis-pg-sync-bundle-"))
    try {
      copyFileSync(path.join(outDir, "main.js"), path.join(alone, "main.js"))
      writeFileSync(path.join(alone, "package.json"), JSON.stringify({ type: "module" }))
      const result = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [path.join(alone, "main.js"), "check"], {
          cwd: alone,
          env: { ...process.env, ...deployment },
          timeout: 60_000
        }, (_error, stdout, stderr) => resolve({ stdout, stderr }))
      })
      const output = result.stdout + result.stderr
      assert.match(output, /^OK +Redis: reachable/m, output)
      assert.match(output, /^OK +PostgreSQL/m, output)
      // ioredis reads its version from its package.json at run time, which the bundle does not have: it is written in.
      const ioredisVersion = JSON.parse(readFileSync(path.join(root, "node_modules/ioredis/package.json"), "utf8")).version
      assert.include(readFileSync(path.join(alone, "main.js"), "utf8"), `cachedPackageMeta={version:${JSON.stringify(ioredisVersion)}}`)
    } finally {
      rmSync(alone, { recursive: true, force: true })
    }
  })

  it("runs, passes scripts/test-sync, fails it clearly when unreachable, and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, [path.join(outDir, "main.js"), "start"], {
      cwd: outDir,
      env: {
        ...process.env,
        ...deployment,
        HTTP_HOST: "127.0.0.1",
        HTTP_PORT: "0",
        LOG_FORMAT: "json",
        SYNC_SHUTDOWN_TIMEOUT: "5 seconds"
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    daemon = child
    let log = ""
    child.stdout.on("data", (d) => (log += d))
    child.stderr.on("data", (d) => (log += d))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))

    // HTTP_PORT=0: the log says where the API listens. Then wait until it is ready (migrations applied).
    const deadline = Date.now() + 20_000
    let api: string | undefined
    let ready = false
    while (!ready) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the compiled daemon did not become ready:\n${log}`)
      api ??= /HTTP API on (http:\/\/[\d.]+:\d+)/.exec(log)?.[1]
      if (api !== undefined) ready = await fetch(`${api}/ready`).then((r) => r.ok, () => false)
      if (!ready) await new Promise((r) => setTimeout(r, 100))
    }

    const passed = await testSync({ SYNC_API_URL: api! })
    assert.strictEqual(passed.code, 0, `${passed.stdout}${passed.stderr}\ndaemon log:\n${log}`)
    for (const step of ["daemon", "connect", "create", "manual sync", "verify", "real-time", "clean up"]) {
      assert.match(passed.stdout, new RegExp(`^OK   ${step}: `, "m"))
    }
    assert.include(passed.stdout, "test-sync: every step passed")

    const unreachable = await testSync({ SYNC_API_URL: "http://127.0.0.1:1" })
    assert.strictEqual(unreachable.code, 1, unreachable.stdout)
    assert.include(unreachable.stderr, "test-sync: FAILED at step \"daemon\": cannot reach the daemon at http://127.0.0.1:1")

    const unauthorized = await testSync({ SYNC_API_URL: api!, SYNC_API_TOKEN: "wrong" })
    assert.strictEqual(unauthorized.code, 1, unauthorized.stdout)
    assert.include(unauthorized.stderr, "test-sync: FAILED at step \"manual sync\": POST /api/v1/sync/manual answered 401")

    child.kill("SIGTERM")
    assert.strictEqual(await exited, 0, log)
  }, 60_000)
})
