/**
 * `redis-pg-sync check` (the seed's check_setup.py) as a person runs it: one line per check, OK, WARN or FAIL with
 * the fix, and exit 1 when something failed.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import { existsSync, rmSync } from "node:fs"
import net from "node:net"
import os from "node:os"
import path from "node:path"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { Redis } from "ioredis"
import { inject } from "vitest"
import { migrations } from "../../src/pg/Database.js"
import { urlAs } from "../support/Urls.js"

const bin = fileURLToPath(new URL("../../bin/redis-pg-sync.mjs", import.meta.url))

/** redis-server, as the test services found (or installed) it. */
const redisServer = () => execFileSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" }).trim()

const check = (env: Record<string, string>) =>
  new Promise<{ code: number | null; lines: Array<string> }>((resolve) => {
    const child = spawn(process.execPath, [bin, "check"], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.on("exit", (code) => resolve({ code, lines: stdout.trim().split("\n") }))
  })

describe("redis-pg-sync check, as a process", () => {
  it("OK when all is well; WARN without CONFIG (managed Redis); FAIL and exit 1 when a server is unreachable", async () => {
    const suffix = randomBytes(4).toString("hex")
    const schema = `t_check_${suffix}`
    const user = `check-${suffix}`
    const admin = new Redis(inject("redisUrl"))
    const db = new pg.Client({ connectionString: inject("databaseUrl") })
    await db.connect()
    try {
      const base = { REDIS_URL: inject("redisUrl"), DATABASE_URL: inject("databaseUrl"), PG_SCHEMA: schema }
      // Migrations are applied by every command that needs them; check only reports.
      const fresh = await check(base)
      assert.strictEqual(fresh.code, 1)
      assert.strictEqual(fresh.lines.at(-1), "FAIL migrations: 0001_sync_log, 0002_projection, 0003_messages_session_fk not applied: run redis-pg-sync migrate")

      const migrate = await new Promise<number | null>((resolve) =>
        spawn(process.execPath, [bin, "migrate"], { env: { ...process.env, ...base }, stdio: "ignore" }).on("exit", resolve))
      assert.strictEqual(migrate, 0)
      // Flags that cover K$gxe (a superset of what every test needs, so other test files are not disturbed).
      await admin.config("SET", "notify-keyspace-events", "K$gxe")
      const flags = String(((await admin.config("GET", "notify-keyspace-events")) as Array<string>)[1])
      const ok = await check(base)
      assert.strictEqual(ok.code, 0, ok.lines.join("\n"))
      assert.strictEqual(ok.lines.length, 5)
      assert.strictEqual(ok.lines[0], `OK   configuration: Redis ${inject("redisUrl")}, key prefix chat:session:`)
      assert.match(ok.lines[1]!, /^OK   Redis: reachable, version 7\./)
      assert.strictEqual(ok.lines[2], `OK   keyspace notifications: enabled ("${flags}")`)
      assert.match(ok.lines[3]!, /^OK   PostgreSQL: reachable, version 1\d/)
      assert.strictEqual(ok.lines[4], "OK   migrations: all applied")

      await admin.acl("SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-config")
      const warn = await check({ ...base, REDIS_URL: urlAs(inject("redisUrl"), user, "pw") })
      assert.strictEqual(warn.code, 0, "a warning is not a failure")
      assert.include(warn.lines, "WARN keyspace notifications: CONFIG GET is refused (managed Redis?): the flags cannot be seen; the daemon subscribes anyway, and relies on the session_updated channel and reconcile scans if the service sends no notifications")

      // A value `start` would refuse fails `check` too, named (the servers are still checked).
      const badWindow = await check({ ...base, SYNC_BATCH_WINDOW: "30s" })
      assert.strictEqual(badWindow.code, 1)
      assert.match(badWindow.lines[1]!, /^FAIL configuration: SYNC_BATCH_WINDOW: /)
      assert.strictEqual(badWindow.lines.at(-1), "OK   migrations: all applied")

      const down = await check({ ...base, REDIS_URL: "redis://127.0.0.1:1/0" })
      assert.strictEqual(down.code, 1)
      assert.include(down.lines, "FAIL Redis: Redis at redis://127.0.0.1:1/0 is unreachable: connect ECONNREFUSED 127.0.0.1:1")
    } finally {
      await admin.acl("DELUSER", user).catch(() => 0)
      admin.disconnect()
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await db.end()
    }
  }, 90_000)

  it("WARN, not FAIL, when the Redis's notify-keyspace-events lacks the flags (a Redis of its own: the shared one's flags stay)", async () => {
    // A free port, then a throwaway redis-server on it (the one the test services use), with notifications off.
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo
        probe.close(() => resolve(port))
      })
    })
    const server = spawn(redisServer(), ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--notify-keyspace-events", ""], { stdio: "ignore" })
    try {
      // Up once it accepts a connection (within 10 s).
      for (let tries = 0; ; tries++) {
        const up = await new Promise<boolean>((resolve) => {
          const socket = net.connect(port, "127.0.0.1", () => (socket.end(), resolve(true))).on("error", () => resolve(false))
        })
        if (up) break
        if (tries > 100) throw new Error(`redis-server did not start on port ${port}`)
        await new Promise((r) => setTimeout(r, 100))
      }
      const schema = `t_checkwarn_${randomBytes(4).toString("hex")}`
      const result = await check({ REDIS_URL: `redis://127.0.0.1:${port}/0`, DATABASE_URL: inject("databaseUrl"), PG_SCHEMA: schema })
      assert.strictEqual(result.code, 1, "the fresh schema's migrations are not applied, so check still fails on them")
      assert.include(
        result.lines,
        "WARN keyspace notifications: \"\" lacks K$gxe; the daemon sets it at start when CONFIG SET is allowed, or run: redis-cli CONFIG SET notify-keyspace-events 'K$gxe'"
      )
      assert.notInclude(result.lines.join("\n"), "FAIL Redis")
    } finally {
      server.kill("SIGKILL")
    }
  }, 60_000)

  it("a mistyped command with no configuration is reported at once, without starting local servers", async () => {
    const dir = path.join(os.tmpdir(), `rps-nodata-${randomBytes(4).toString("hex")}`)
    const env: Record<string, string | undefined> = { ...process.env, RPS_DATA_DIR: dir }
    for (const name of ["REDIS_URL", "REDIS_HOST", "DATABASE_URL"]) delete env[name]
    const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, "bogus"], { env, cwd: os.tmpdir(), stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      child.stdout.on("data", (d) => (out += d))
      child.stderr.on("data", (d) => (out += d))
      child.on("exit", (code) => resolve({ code, out }))
    })
    const started = existsSync(dir)
    if (started) {
      // The defect this test is for: stop what it started, then fail.
      const services = fileURLToPath(new URL("../../scripts/services.mjs", import.meta.url))
      await new Promise((resolve) => spawn(process.execPath, [services, "stop", "--dir", dir], { stdio: "ignore" }).on("exit", resolve))
      rmSync(dir, { recursive: true, force: true })
    }
    assert.notStrictEqual(result.code, 0)
    assert.include(result.out, "Invalid subcommand")
    assert.notMatch(result.out, /Redis|PostgreSQL/)
    assert.isFalse(started, "no local servers were set up")
  }, 60_000)

  it("four processes migrating one fresh schema at once (replicas starting together) all succeed", async () => {
    const schema = `t_migrate_race_${randomBytes(4).toString("hex")}`
    const db = new pg.Client({ connectionString: inject("databaseUrl") })
    await db.connect()
    try {
      const env = { ...process.env, REDIS_URL: inject("redisUrl"), DATABASE_URL: inject("databaseUrl"), PG_SCHEMA: schema }
      const codes = await Promise.all(Array.from({ length: 4 }, () =>
        new Promise<number | null>((resolve) =>
          spawn(process.execPath, [bin, "migrate"], { env, stdio: "ignore" }).on("exit", resolve))))
      assert.deepStrictEqual(codes, [0, 0, 0, 0])
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM ${schema}.sync_migrations`)
      assert.strictEqual(rows[0].n, Object.keys(migrations).length)
    } finally {
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await db.end()
    }
  }, 90_000)
})
