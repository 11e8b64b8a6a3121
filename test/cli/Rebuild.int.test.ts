/**
 * `redis-pg-sync verify` and `rebuild` as a person runs them: what they print and how they exit.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { Redis } from "ioredis"
import { inject } from "vitest"

const bin = fileURLToPath(new URL("../../bin/redis-pg-sync.mjs", import.meta.url))

const run = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("exit", (code) => resolve({ code, stdout, stderr }))
  })

describe("redis-pg-sync verify and rebuild, as processes", () => {
  it("verify passes on synced tables, fails with a diff on tampered ones; rebuild repairs them and says what changed", async () => {
    const suffix = randomBytes(4).toString("hex")
    const schema = `t_cli_rebuild_${suffix}`
    const prefix = `test:cli_rebuild:${suffix}:`
    const env = { REDIS_URL: inject("redisUrl"), DATABASE_URL: inject("databaseUrl"), PG_SCHEMA: schema, SYNC_KEY_PREFIX: prefix }
    const redis = new Redis(inject("redisUrl"))
    const db = new pg.Client({ connectionString: inject("databaseUrl") })
    await db.connect()
    try {
      const message = (content: string, second: number) => ({ content, sender_id: 1, timestamp: `2025-06-01T10:00:0${second}Z` })
      await redis.set(`${prefix}a`, JSON.stringify({ topic: "a", messages: [message("one", 1), message("two", 2)] }))
      await redis.set(`${prefix}b`, JSON.stringify({ topic: "b", messages: [message("three", 3)] }))
      assert.strictEqual((await run(["sync"], env)).code, 0)

      const clean = await run(["verify"], env)
      assert.strictEqual(clean.code, 0, clean.stderr)
      assert.match(clean.stdout, /^The live tables are exactly a replay of the ledger \(\d+ events, up to seq \d+; .*messages 3, .*\)/)

      const { rows } = await db.query(`UPDATE ${schema}.messages SET content = 'tampered' WHERE content = 'two' RETURNING id::text`)
      const tampered = await run(["verify"], env)
      assert.strictEqual(tampered.code, 1)
      assert.strictEqual(
        tampered.stdout.split("\n").slice(1, 3).join("\n"),
        `  messages: 3 rows live, 3 replay; 0 only live, 0 only replay, 1 with other values; e.g. (${rows[0].id})\n` +
          "Run redis-pg-sync rebuild to replace them with the replay."
      )

      const rebuilt = await run(["rebuild", "--diff"], env)
      assert.strictEqual(rebuilt.code, 0, rebuilt.stderr)
      assert.match(rebuilt.stdout, /^Rebuilt the projection in schema t_cli_rebuild_\w+: \d+ events replayed up to seq \d+, 3 messages/)
      assert.include(rebuilt.stdout, "what changed:\n    messages: 3 rows before, 3 rebuilt; 0 only before, 0 only rebuilt, 1 with other values")
      assert.strictEqual((await run(["verify"], env)).code, 0)

      const refused = await run(["rebuild", "--until-seq", "1"], env)
      assert.deepStrictEqual([refused.code, refused.stderr.trim().split("\n").at(-1)], [
        1,
        "redis-pg-sync: --until-seq and --until-time build a past state for inspection: give --into SCHEMA too"
      ])
    } finally {
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await db.end()
      await redis.del(`${prefix}a`, `${prefix}b`)
      redis.disconnect()
    }
  }, 90_000)
})
