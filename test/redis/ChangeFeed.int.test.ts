import { assert, describe, expect, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Queue, Schedule, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as ChangeFeed from "../../src/redis/ChangeFeed.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import type { Redis } from "ioredis"
import { connectionOf, makeRedisEnv, RedisEnvTag, redisOnlyLayer } from "../support/RedisOnly.js"
import { urlAs } from "../support/Urls.js"

type Signal = ChangeFeed.ChangeSignal

const env = makeRedisEnv("changefeed")
const redis = <A>(what: string, f: (c: Redis) => Promise<A>) => RedisClient.use(what, f).pipe(Effect.orDie)
const uniq = () => randomBytes(3).toString("hex")
const withTimeout = (duration: Duration.DurationInput, what: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  self.pipe(
    Effect.timeoutFail({ duration, onTimeout: () => new Error(`${what} within ${Duration.format(duration)}`) }),
    Effect.orDie
  )

const changed = (sessionId: string, source: "keyspace" | "channel"): Signal => ({ _tag: "Changed", sessionId, source })
const gone = (sessionId: string, kind: ChangeFeed.GoneKind): Signal => ({
  _tag: "Gone",
  sessionId,
  kind,
  source: "keyspace"
})
const about = (id: string) => (s: Signal) => s._tag !== "Resubscribed" && s.sessionId === id

/** Starts a feed in the current scope and collects its signals; `until` returns everything up to a match. */
const startFeed = (options: Partial<ChangeFeed.ChangeFeedOptions> = {}) =>
  Effect.gen(function*() {
    const connectionName = `rps-test-feed-${uniq()}`
    const feed = yield* ChangeFeed.make({
      keyPrefix: env.prefix,
      channelPrefix: env.channelPrefix,
      connectionName,
      ...options
    })
    const inbox = yield* Queue.unbounded<Signal>()
    yield* feed.signals.pipe(Stream.runForEach((s) => Queue.offer(inbox, s)), Effect.forkScoped)
    const until = (match: (s: Signal) => boolean, timeout: Duration.DurationInput = "3 seconds") =>
      Effect.gen(function*() {
        const seen: Array<Signal> = []
        while (true) {
          const s = yield* Queue.take(inbox)
          seen.push(s)
          if (match(s)) return seen
        }
      }).pipe(withTimeout(timeout, "no matching signal"))
    const next = (match: (s: Signal) => boolean, timeout?: Duration.DurationInput) =>
      Effect.map(until(match, timeout), (seen) => seen[seen.length - 1]!)
    return { feed, connectionName, until, next }
  })

/** The redis URL with an ACL user who may not run CONFIG (and, unless `channels`, may not subscribe). */
const restrictedUser = (channels: boolean) =>
  Effect.gen(function*() {
    const name = `rps-test-${uniq()}`
    yield* Effect.acquireRelease(
      redis("ACL SETUSER", (c) =>
        c.acl("SETUSER", name, "on", ">pw", "~*", channels ? "&*" : "resetchannels", "+@all", "-config")),
      () => redis("ACL DELUSER", (c) => c.acl("DELUSER", name))
    )
    return connectionOf(urlAs(env.redisUrl, name, "pw"))
  })

describe("ChangeFeed on a real Redis", () => {
  layer(redisOnlyLayer(env), { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.effect("CONFIG switches notifications on with K$gxe, keeping other flags, idempotently", () =>
      Effect.gen(function*() {
        const { client } = yield* RedisClient.RedisClient
        const first = yield* ChangeFeed.enableNotifications(client)
        assert.isTrue(first.enabled)
        assert.isUndefined(first.refusal)
        const reply = yield* redis("CONFIG GET", (c) => c.config("GET", "notify-keyspace-events"))
        const readBack = String((reply as Array<string>)[1])
        const expanded = readBack.replace("A", "g$lshzxetd")
        for (const flag of ["K", "$", "g", "x", "e"]) assert.include(expanded, flag, `flags "${readBack}"`)
        const again = yield* ChangeFeed.enableNotifications(client)
        assert.deepStrictEqual([again.enabled, again.changed], [true, false])
        assert.strictEqual(ChangeFeed.unionNotifyFlags("Ex"), "ExK$ge")
        assert.strictEqual(ChangeFeed.unionNotifyFlags(""), "K$gxe")
        assert.strictEqual(ChangeFeed.unionNotifyFlags("AKE"), "AKE")
      }))

    it.effect("SETEX gives Changed from keyspace (set, then expire); PUBLISH gives Changed from the channel", () =>
      Effect.scoped(Effect.gen(function*() {
        const { feed, until, next } = yield* startFeed()
        assert.strictEqual(feed.mode, "notifications+channel+reconcile")
        assert.isTrue(feed.notifications.enabled)
        assert.isTrue(yield* feed.connected)
        const id = `s-${uniq()}`
        yield* redis("SETEX", (c) => c.setex(env.prefix + id, 60, "{}"))
        const first = yield* next(about(id))
        const second = yield* next(about(id))
        assert.deepStrictEqual([first, second], [changed(id, "keyspace"), changed(id, "keyspace")])
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + id, JSON.stringify({ content: "hint only" })))
        const seen = yield* until(about(id))
        assert.deepStrictEqual(seen, [changed(id, "channel")])
      })))

    it.effect("the application's own channel prefix session_updated: works, the payload is ignored", () =>
      Effect.scoped(Effect.gen(function*() {
        const { next } = yield* startFeed({ channelPrefix: "session_updated:" })
        const id = `rps-test-${uniq()}:x`
        yield* redis("PUBLISH", (c) => c.publish(`session_updated:${id}`, "some-other-id"))
        assert.deepStrictEqual(yield* next(about(id)), changed(id, "channel"))
      })))

    it.effect("DEL gives Gone deleted; RENAME gives Gone deleted for the source and Changed for the target", () =>
      Effect.scoped(Effect.gen(function*() {
        const { next } = yield* startFeed()
        const id = `d-${uniq()}`
        yield* redis("SET", (c) => c.set(env.prefix + id, "{}"))
        assert.deepStrictEqual(yield* next(about(id)), changed(id, "keyspace"))
        yield* redis("DEL", (c) => c.del(env.prefix + id))
        assert.deepStrictEqual(yield* next(about(id)), gone(id, "deleted"))
        const [from, to] = [`r1-${uniq()}`, `r2-${uniq()}`]
        yield* redis("SET", (c) => c.set(env.prefix + from, "{}"))
        assert.deepStrictEqual(yield* next(about(from)), changed(from, "keyspace"))
        yield* redis("RENAME", (c) => c.rename(env.prefix + from, env.prefix + to))
        assert.deepStrictEqual(yield* next(about(from)), gone(from, "deleted"))
        assert.deepStrictEqual(yield* next(about(to)), changed(to, "keyspace"))
      })))

    it.effect("a key with a 1 s TTL gives Gone expired", () =>
      Effect.scoped(Effect.gen(function*() {
        const { until } = yield* startFeed()
        const id = `e-${uniq()}`
        const started = Date.now()
        yield* redis("SET EX", (c) => c.set(env.prefix + id, "{}", "EX", 1))
        const seen = yield* until((s) => about(id)(s) && s._tag === "Gone", "6 seconds")
        assert.deepStrictEqual(seen.filter(about(id)).at(-1), gone(id, "expired"))
        assert.isAtLeast(Date.now() - started, 900)
      })))

    it.effect("session ids with spaces, colons, unicode and glob characters round-trip on both paths", () =>
      Effect.scoped(Effect.gen(function*() {
        const { until } = yield* startFeed()
        const ids = ["with space", "a:b:c", "ünï cødé ✓ 日本 🚀", "glob*?[x]\\y", ""]
        for (const id of ids) {
          yield* redis("SETEX", (c) => c.setex(env.prefix + id, 60, "{}"))
          yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + id, "x"))
        }
        const marker = `m-${uniq()}`
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + marker, "x"))
        const seen = yield* until(about(marker))
        for (const id of ids) {
          const expected = [changed(id, "keyspace"), changed(id, "keyspace"), changed(id, "channel")]
          expect(seen.filter(about(id))).toEqual(expected)
        }
      })))

    it.effect("events of other keys and channels are ignored", () =>
      Effect.scoped(Effect.gen(function*() {
        const { until } = yield* startFeed()
        const near = env.prefix.slice(0, -1) // `…:s` without its colon, and `…:sX:…`
        yield* redis("SET", (c) => c.set(near, "x", "EX", 60))
        yield* redis("SET", (c) => c.set(`${near}X:1`, "x", "EX", 60))
        yield* redis("DEL", (c) => c.del(near, `${near}X:1`))
        yield* redis("PUBLISH", (c) => c.publish(`${env.channelPrefix.slice(0, -1)}X:1`, "x"))
        const marker = `m-${uniq()}`
        yield* redis("SET", (c) => c.set(env.prefix + marker, "{}"))
        assert.deepStrictEqual(yield* until(about(marker)), [changed(marker, "keyspace")])
        const p = ChangeFeed.patterns(0, "chat:session:", "session_updated:")
        assert.strictEqual(p.keyspace, "__keyspace@0__:chat:session:*")
        assert.isUndefined(p.parse(p.keyspace, "__keyspace@0__:chat:other", "set"))
        const ks = (key: string, event: string) => p.parse(p.keyspace, `__keyspace@0__:${key}`, event)
        assert.deepStrictEqual(ks("chat:session:a b", "evicted"), gone("a b", "evicted"))
        assert.deepStrictEqual(ks("chat:session:a", "rename_from"), gone("a", "deleted"))
        assert.deepStrictEqual(ks("chat:session:a", "rename_to"), changed("a", "keyspace"))
        assert.deepStrictEqual(p.parse(p.channel, "session_updated:a:b", "{}"), changed("a:b", "channel"))
      })))

    it.effect("CLIENT KILL TYPE pubsub: Resubscribed follows, and later events still arrive", () =>
      Effect.scoped(Effect.gen(function*() {
        const { connectionName, feed, next, until } = yield* startFeed()
        const before = `m-${uniq()}`
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + before, "x"))
        assert.deepStrictEqual(yield* until(about(before)), [changed(before, "channel")]) // no Resubscribed at start
        const list = yield* redis("CLIENT LIST", (c) => c.call("CLIENT", "LIST", "TYPE", "pubsub") as Promise<string>)
        const line = list.split("\n").find((l) => l.includes(` name=${connectionName} `))
        assert.isDefined(line, list)
        const clientId = /^id=(\d+) /.exec(line!)![1]!
        // TYPE pubsub narrowed to our subscriber: parallel test files have subscribers of their own
        const killed = yield* redis("CLIENT KILL", (c) => c.call("CLIENT", "KILL", "TYPE", "pubsub", "ID", clientId))
        assert.strictEqual(killed, 1)
        const seen = yield* until((s) => s._tag === "Resubscribed", "5 seconds")
        assert.deepStrictEqual(seen, [{ _tag: "Resubscribed" }])
        assert.isTrue(yield* feed.connected)
        const id = `k-${uniq()}`
        yield* redis("SETEX", (c) => c.setex(env.prefix + id, 60, "{}"))
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + id, "x"))
        assert.deepStrictEqual(yield* next(about(id)), changed(id, "keyspace"))
        const fromChannel = (s: Signal) => s._tag === "Changed" && s.sessionId === id && s.source === "channel"
        assert.deepStrictEqual(yield* next(fromChannel), changed(id, "channel"))
      })))

    it.effect("notifications disabled by option: channel+reconcile, channel signals only", () =>
      Effect.scoped(Effect.gen(function*() {
        const { feed, until } = yield* startFeed({ notifications: false })
        assert.strictEqual(feed.mode, "channel+reconcile")
        assert.isFalse(feed.notifications.enabled)
        const id = `c-${uniq()}`
        // the keyspace events of this SETEX would reach the subscriber before the PUBLISH that follows it
        yield* redis("SETEX", (c) => c.setex(env.prefix + id, 60, "{}"))
        yield* redis("DEL", (c) => c.del(env.prefix + id))
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + id, "x"))
        assert.deepStrictEqual(yield* until(about(id)), [changed(id, "channel")])
      })))

    it.effect("CONFIG refused (NOPERM) is reported, not failed: channel+reconcile; channels refused: reconcile", () =>
      Effect.scoped(Effect.gen(function*() {
        const noConfig = yield* restrictedUser(true)
        const status = yield* RedisClient.RedisClient.pipe(
          Effect.flatMap(({ client }) => ChangeFeed.enableNotifications(client)),
          Effect.provide(RedisClient.layer(noConfig))
        )
        assert.isFalse(status.enabled)
        assert.match(status.refusal ?? "", /^NOPERM .*config/)
        // The service's configuration has notifications on (as a managed Redis's parameter group would).
        assert.isTrue((yield* Effect.flatMap(RedisClient.RedisClient, ({ client }) => ChangeFeed.enableNotifications(client))).enabled)
        const { feed, next } = yield* startFeed().pipe(Effect.provide(RedisClient.layer(noConfig)))
        assert.strictEqual(feed.mode, "channel+reconcile")
        assert.match(feed.notifications.detail, /^CONFIG GET refused \(NOPERM.*\): keyspace notifications off; subscribed anyway: used if the service sends them$/)
        const id = `n-${uniq()}`
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + id, "x"))
        assert.deepStrictEqual(yield* next(about(id)), changed(id, "channel"))
        // Subscribed without CONFIG: the service's notifications arrive.
        const seen = `k-${uniq()}`
        yield* redis("SET", (c) => c.set(env.prefix + seen, "{}"))
        assert.deepStrictEqual(yield* next(about(seen)), changed(seen, "keyspace"))

        const nothing = yield* restrictedUser(false)
        const blind = yield* Effect.scoped(Effect.gen(function*() {
          const { feed } = yield* startFeed().pipe(Effect.provide(RedisClient.layer(nothing)))
          return feed
        }))
        assert.strictEqual(blind.mode, "reconcile")
        assert.match(blind.channelRefusal ?? "", /^NOPERM/)
      })))

    it.effect("a burst of 5,000 SETEX (10,000 keyspace events) arrives whole while nobody slows the reader", () =>
      Effect.scoped(Effect.gen(function*() {
        const { until } = yield* startFeed()
        const batch = `b-${uniq()}-`
        yield* redis("burst", async (c) => {
          const p = c.pipeline()
          for (let i = 0; i < 5000; i++) p.setex(`${env.prefix}${batch}${i}`, 60, "{}")
          await p.exec()
        })
        const marker = `m-${uniq()}`
        yield* redis("PUBLISH", (c) => c.publish(env.channelPrefix + marker, "x"))
        const seen = yield* until(about(marker), "10 seconds")
        const ours = seen.filter((s) => s._tag === "Changed" && s.sessionId.startsWith(batch))
        assert.strictEqual(ours.length, 10_000)
        assert.strictEqual(new Set(ours.map((s) => s._tag === "Changed" && s.sessionId)).size, 5000)
      })))

    it.effect("closing the scope ends the signals and quits the subscriber", () =>
      Effect.gen(function*() {
        const [name, consumer] = yield* Effect.scoped(Effect.gen(function*() {
          const { connectionName, feed } = yield* startFeed({ notifications: false })
          const consumer = yield* feed.signals.pipe(Stream.runCollect, Effect.fork)
          return [connectionName, consumer] as const
        }))
        yield* Fiber.join(consumer).pipe(withTimeout("2 seconds", "the stream did not end"))
        const listed = redis("CLIENT LIST", (c) => c.call("CLIENT", "LIST") as Promise<string>).pipe(
          Effect.map((list) => list.includes(` name=${name} `))
        )
        // QUIT is answered before the server frees the connection: allow it a moment
        const stillThere = yield* listed.pipe(
          Effect.flatMap((found) => (found ? Effect.fail("still listed" as const) : Effect.succeed(false))),
          Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(20)))),
          Effect.orElseSucceed(() => true)
        )
        assert.isFalse(stillThere)
      }))

    it.effect("expiringSoon returns only the sessions whose PTTL is within the window, across SCAN pages", () =>
      Effect.gen(function*() {
        const { client } = yield* RedisClient.RedisClient
        const { prefix } = yield* RedisEnvTag
        const soon = Array.from({ length: 5 }, (_, i) => `soon ${i}`)
        yield* redis("seed", async (c) => {
          const p = c.pipeline()
          for (const id of soon) p.set(prefix + id, "{}", "PX", 3000)
          for (let i = 0; i < 5; i++) p.set(`${prefix}later ${i}`, "{}", "EX", 3600)
          for (let i = 0; i < 250; i++) p.set(`${prefix}forever ${i}`, "{}")
          p.set(`${prefix.slice(0, -1)}X:outside`, "{}", "PX", 3000)
          await p.exec()
        })
        const found = yield* ChangeFeed.expiringSoon(client, prefix, "10 seconds", 50)
        assert.deepStrictEqual([...found].sort(), soon)
        assert.deepStrictEqual(yield* ChangeFeed.expiringSoon(client, prefix, "1 millis"), [])
        yield* redis("DEL", (c) => c.del(`${prefix.slice(0, -1)}X:outside`))
      }))
  })
})
