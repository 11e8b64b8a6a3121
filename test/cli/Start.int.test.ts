/**
 * The daemon as a process: `redis-pg-sync start` syncs what is in Redis, and SIGTERM or SIGINT stop it cleanly,
 * exit 0, within SYNC_SHUTDOWN_TIMEOUT.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import net from "node:net"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { Redis } from "ioredis"
import { inject } from "vitest"
import { Effect } from "effect"
import * as TcpProxy from "../support/TcpProxy.js"

const bin = fileURLToPath(new URL("../../bin/redis-pg-sync.mjs", import.meta.url))

/** `redis-pg-sync start` as a child process, its stdout and stderr gathered into `log()`. */
const startDaemon = (env: Record<string, string>) => {
  const child = spawn(process.execPath, [bin, "start"], {
    env: { ...process.env, LOG_FORMAT: "json", HTTP_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let log = ""
  child.stderr.on("data", (d) => (log += d))
  child.stdout.on("data", (d) => (log += d))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  /** Resolves once `text` is in the log; fails after 30 s, showing the log. */
  const logged = async (text: string) => {
    const deadline = Date.now() + 30_000
    while (!log.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no "${text}" in the daemon's log:\n${log}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return { child, exited, logged, log: () => log }
}

/** Opens a connection to the daemon's HTTP API and sends a request without its final blank line. */
const halfSendRequest = async (log: string) => {
  const port = Number(/HTTP API on http:\/\/[^:/]+:(\d+)/.exec(log)?.[1])
  const socket = net.connect(port, "127.0.0.1")
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  socket.write("GET /health HTTP/1.1\r\nHost: x\r\n")
  return socket
}

const runDaemon = async (signal: "SIGTERM" | "SIGINT", options: { readonly halfSentRequest?: boolean } = {}) => {
  const suffix = randomBytes(4).toString("hex")
  const schema = `t_start_${suffix}`
  const prefix = `test:start:${suffix}:`
  const redis = new Redis(inject("redisUrl"))
  const db = new pg.Client({ connectionString: inject("databaseUrl") })
  await db.connect()
  try {
    await redis.set(`${prefix}s1`, JSON.stringify({ topic: "process", messages: [{ content: "hi", sender_id: 1, timestamp: "2025-06-01T10:00:00Z" }] }))
    const daemon = startDaemon({
      REDIS_URL: inject("redisUrl"),
      DATABASE_URL: inject("databaseUrl"),
      PG_SCHEMA: schema,
      SYNC_KEY_PREFIX: prefix,
      SYNC_CHANNEL_PREFIX: `${prefix}updated:`,
      SYNC_SHUTDOWN_TIMEOUT: "5 seconds"
    })
    await daemon.logged("Initial sync completed")
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM ${schema}.messages`)
    const socket = options.halfSentRequest === true ? await halfSendRequest(daemon.log()) : undefined
    const stoppedAt = Date.now()
    daemon.child.kill(signal)
    const code = await daemon.exited
    socket?.destroy()
    return { code, messages: rows[0].n as number, stopMs: Date.now() - stoppedAt, log: daemon.log() }
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await db.end()
    await redis.del(`${prefix}s1`)
    redis.disconnect()
  }
}

describe("redis-pg-sync start, as a process", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`syncs at start, and ${signal} stops it with exit 0 within the shutdown timeout`, async () => {
      const { code, messages, stopMs, log } = await runDaemon(signal)
      assert.strictEqual(messages, 1)
      assert.strictEqual(code, 0, log)
      assert.isBelow(stopMs, 5_000 + 2_000)
      assert.include(log, "Capture mode: notifications+channel+reconcile")
    }, 60_000)
  }

  it("npm start passes SIGTERM on: the daemon under it stops too", async () => {
    const suffix = randomBytes(4).toString("hex")
    const schema = `t_npm_${suffix}`
    const child = spawn("npm", ["start", "--silent"], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
      env: {
        ...process.env, LOG_FORMAT: "json", HTTP_PORT: "0", REDIS_URL: inject("redisUrl"), DATABASE_URL: inject("databaseUrl"),
        PG_SCHEMA: schema, SYNC_KEY_PREFIX: `test:npm:${suffix}:`, SYNC_CHANNEL_PREFIX: `test:npm:${suffix}:updated:`
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let log = ""
    child.stdout.on("data", (d) => (log += d))
    child.stderr.on("data", (d) => (log += d))
    const db = new pg.Client({ connectionString: inject("databaseUrl") })
    await db.connect()
    let under: Array<number> = []
    try {
      const deadline = Date.now() + 30_000
      while (!log.includes("Initial sync completed") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
      assert.include(log, "Initial sync completed")
      // Every process under npm (with `exec`, the daemon itself; without, also a shell that does not pass signals on).
      const descendants = (pid: number): Array<number> => {
        const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)
        return kids.flatMap((kid) => [kid, ...descendants(kid)])
      }
      under = descendants(child.pid!)
      assert.isAbove(under.length, 0)
      child.kill("SIGTERM")
      await new Promise((resolve) => child.on("exit", resolve))
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      }
      const stopDeadline = Date.now() + 12_000
      while (under.some(alive) && Date.now() < stopDeadline) await new Promise((r) => setTimeout(r, 100))
      assert.deepStrictEqual(under.filter(alive), [], log)
    } finally {
      for (const pid of [child.pid!, ...under]) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone already
        }
      }
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await db.end()
    }
  }, 60_000)

  it("SIGTERM stops it within the shutdown timeout even while a client has sent half a request", async () => {
    const { code, stopMs, log } = await runDaemon("SIGTERM", { halfSentRequest: true })
    assert.strictEqual(code, 0, log)
    assert.isBelow(stopMs, 5_000 + 2_000)
  }, 60_000)
})

describe("redis-pg-sync start, with PostgreSQL not up yet", () => {
  it("waits for it (logging why), then syncs, and still stops with exit 0", async () => {
    const suffix = randomBytes(4).toString("hex")
    const schema = `t_start_wait_${suffix}`
    const prefix = `test:start_wait:${suffix}:`
    const target = new URL(inject("databaseUrl"))
    const redis = new Redis(inject("redisUrl"))
    const db = new pg.Client({ connectionString: inject("databaseUrl") })
    await db.connect()
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const proxy = yield* TcpProxy.make(target.hostname, Number(target.port))
      yield* proxy.cut
      const viaProxy = new URL(inject("databaseUrl"))
      viaProxy.port = String(proxy.port)
      yield* Effect.promise(() =>
        redis.set(`${prefix}s1`, JSON.stringify({ topic: "late", messages: [{ content: "hi", sender_id: 1, timestamp: "2025-06-01T10:00:00Z" }] }))
      )
      const daemon = startDaemon({
        REDIS_URL: inject("redisUrl"),
        DATABASE_URL: viaProxy.toString(),
        PG_SCHEMA: schema,
        SYNC_KEY_PREFIX: prefix,
        SYNC_CHANNEL_PREFIX: `${prefix}updated:`,
        SYNC_RETRY_MAX_DELAY: "1 second"
      })
      yield* Effect.promise(() => daemon.logged("Waiting for the servers: PostgreSQL at postgres"))
      assert.isNull(daemon.child.exitCode, "still running while PostgreSQL is away")
      yield* proxy.restore
      yield* Effect.promise(() => daemon.logged("Initial sync completed"))
      const { rows } = yield* Effect.promise(() => db.query(`SELECT count(*)::int AS n FROM ${schema}.messages`))
      assert.strictEqual(rows[0].n, 1)
      daemon.child.kill("SIGTERM")
      assert.strictEqual(yield* Effect.promise(() => daemon.exited), 0, daemon.log())
    }))).finally(async () => {
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await db.end()
      await redis.del(`${prefix}s1`)
      redis.disconnect()
    })
  }, 60_000)
})
