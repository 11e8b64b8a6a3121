/**
 * What an operator's commands print and do to the servers, as processes: no secret ever appears in their output,
 * whatever fails, and a sync reads Redis with SCAN only (a Redis user that may not run KEYS syncs fine).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { Redis } from "ioredis"
import { inject } from "vitest"
import { urlAs } from "../support/Urls.js"

const bin = fileURLToPath(new URL("../../bin/redis-pg-sync.mjs", import.meta.url))

/** Runs a command to its end (or kills it once `until` is in its output); everything it printed, and its code. */
const run = (args: ReadonlyArray<string>, env: Record<string, string>, until?: string) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    const seen = (d: Buffer) => {
      out += d
      if (until !== undefined && out.includes(until)) child.kill("SIGTERM")
    }
    child.stdout.on("data", seen)
    child.stderr.on("data", seen)
    child.on("exit", (code) => resolve({ code, out }))
  })

/**
 * A key prefix and a schema of a test's own (`name` and a random suffix), with admin clients of both servers;
 * `cleanUp` deletes the prefix's keys, drops the schema and closes the clients.
 */
const scratch = async (name: string) => {
  const suffix = randomBytes(4).toString("hex")
  const prefix = `test:${name}:${suffix}:`
  const schema = `t_${name}_${suffix}`
  const admin = new Redis(inject("redisUrl"))
  const db = new pg.Client({ connectionString: inject("databaseUrl") })
  await db.connect()
  const cleanUp = async () => {
    const keys = await admin.keys(`${prefix}*`)
    if (keys.length > 0) await admin.del(...keys)
    admin.disconnect()
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await db.end()
  }
  return { suffix, prefix, schema, admin, db, cleanUp }
}

describe("operator commands, as processes", () => {
  it("never print a password: not in check's lines, errors, or the daemon's log while it waits", async () => {
    const suffix = randomBytes(4).toString("hex")
    const redisSecret = `r3dis-s3cret-${suffix}`
    const pgSecret = `pg-s3cret-${suffix}`
    const user = `ops-${suffix}`
    const schema = `t_ops_${suffix}`
    const admin = new Redis(inject("redisUrl"))
    const db = new pg.Client({ connectionString: inject("databaseUrl") })
    await db.connect()
    try {
      await admin.acl("SETUSER", user, "on", `>${redisSecret}`, "~*", "&*", "+@all")
      // The test PostgreSQL trusts local connections, so any password is accepted and never checked.
      const redisUrl = urlAs(inject("redisUrl"), user, redisSecret)
      const databaseUrl = urlAs(inject("databaseUrl"), "postgres", pgSecret)
      const unreachable = `postgres://postgres:${pgSecret}@127.0.0.1:1/db`
      const base = { PG_SCHEMA: schema, LOG_FORMAT: "json" }
      const outputs = [
        await run(["check"], { ...base, REDIS_URL: redisUrl, DATABASE_URL: databaseUrl }),
        await run(["check"], { ...base, REDIS_URL: `redis://127.0.0.1:1/0?password=${redisSecret}`, DATABASE_URL: unreachable }),
        await run(["sync"], { ...base, REDIS_URL: redisUrl, DATABASE_URL: `${unreachable}?password=${pgSecret}` }),
        await run(["start"], { ...base, HTTP_PORT: "0", REDIS_URL: redisUrl, DATABASE_URL: unreachable }, "Waiting for")
      ]
      assert.include(outputs[0]!.out, "OK   PostgreSQL")
      assert.include(outputs[1]!.out, "FAIL Redis")
      assert.notStrictEqual(outputs[2]!.code, 0)
      assert.include(outputs[3]!.out, "Waiting for")
      for (const { out } of outputs) {
        assert.notInclude(out, redisSecret)
        assert.notInclude(out, pgSecret)
      }
    } finally {
      await admin.acl("DELUSER", user).catch(() => 0)
      admin.disconnect()
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await db.end()
    }
  }, 90_000)

  it("a full sync reads Redis by SCAN: a Redis user that may not run KEYS syncs every session", async () => {
    const { suffix, prefix, schema, admin, db, cleanUp } = await scratch("nokeys")
    const user = `nokeys-${suffix}`
    try {
      await admin.acl("SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-keys")
      const pipeline = admin.pipeline()
      for (let i = 0; i < 250; i++) {
        pipeline.set(`${prefix}s${i}`, JSON.stringify({ topic: "t", messages: [{ content: "hi", sender_id: 1, timestamp: "2025-06-01T10:00:00Z" }] }))
      }
      await pipeline.exec()
      const sync = await run(["sync"], {
        REDIS_URL: urlAs(inject("redisUrl"), user, "pw"),
        DATABASE_URL: inject("databaseUrl"),
        PG_SCHEMA: schema,
        SYNC_KEY_PREFIX: prefix,
        SYNC_SCAN_COUNT: "100"
      })
      assert.strictEqual(sync.code, 0, sync.out)
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM ${schema}.messages`)
      assert.strictEqual(rows[0].n, 250)
      // The user really may not run KEYS.
      const probe = new Redis(urlAs(inject("redisUrl"), user, "pw"))
      const refused = await probe.keys(`${prefix}*`).then(() => "allowed", (e: Error) => e.message)
      probe.disconnect()
      assert.match(refused, /NOPERM/)
    } finally {
      await admin.acl("DELUSER", user).catch(() => 0)
      await cleanUp()
    }
  }, 90_000)

  it("print all they have to a pipe that is read late: a report larger than the pipe's buffer arrives whole", async () => {
    const { prefix, schema, admin, cleanUp } = await scratch("pipe")
    try {
      // 1,000 sessions with long ids, none synced: `compare` lists each twice (Redis's ids, missing in PostgreSQL).
      const pipeline = admin.pipeline()
      for (let i = 0; i < 1000; i++) pipeline.set(`${prefix}${"long-session-id-".repeat(64)}${i}`, JSON.stringify({ topic: "t", messages: [] }))
      await pipeline.exec()
      const child = spawn(process.execPath, [bin, "compare", "--json", "--limit", "1000"], {
        env: { ...process.env, REDIS_URL: inject("redisUrl"), DATABASE_URL: inject("databaseUrl"), PG_SCHEMA: schema, SYNC_KEY_PREFIX: prefix },
        stdio: ["ignore", "pipe", "pipe"]
      })
      // Nothing is read from the pipe for a while: the command has printed and would exit meanwhile.
      child.stdout.pause()
      const chunks: Array<Buffer> = []
      child.stdout.on("data", (d: Buffer) => chunks.push(d))
      let err = ""
      child.stderr.on("data", (d) => (err += d))
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve))
      await new Promise((resolve) => setTimeout(resolve, 1500))
      child.stdout.resume()
      const code = await exited
      const out = Buffer.concat(chunks).toString("utf8")
      assert.strictEqual(code, 0, err)
      assert.isAbove(out.length, 1_000_000)
      const report = JSON.parse(out)
      assert.strictEqual(report.missing_in_postgresql.count, 1000)
      assert.strictEqual(report.missing_in_postgresql.session_ids.length, 1000)
    } finally {
      await cleanUp()
    }
  }, 90_000)
})
