/**
 * Change capture on the Redis side (DESIGN §1): keyspace notifications and the application channel, read from ONE
 * dedicated subscriber connection and turned into typed hints; `notify-keyspace-events` switched on when CONFIG is
 * allowed; and the pre-expiry sweep. Every signal is a hint only: the pipeline reads the key to learn the truth, and
 * a reconcile scan repairs whatever pub/sub lost.
 */
import type { GoneKind } from "../core/Events.js"
import { Context, Duration, Effect, Either, Layer, Mailbox, type Scope, Stream } from "effect"
import type { Redis } from "ioredis"
import { coversNotifyFlags, REQUIRED_NOTIFY_FLAGS, RedisClient } from "./RedisClient.js"
import { acquire, dbOf } from "./RedisConnection.js"
import { fromCause, type RedisError } from "./RedisError.js"
import { globEscape } from "./SessionSource.js"

/** What the daemon captures with, from the richest to the poorest; found once at start. */
export type CaptureMode = "notifications+channel+reconcile" | "channel+reconcile" | "reconcile"

export type { GoneKind }

/** A key may have changed: read it. */
export interface Changed {
  readonly _tag: "Changed"
  readonly sessionId: string
  readonly source: "keyspace" | "channel"
}

/** The key left Redis (by the keyspace notification that says how). */
export interface Gone {
  readonly _tag: "Gone"
  readonly sessionId: string
  readonly kind: GoneKind
  readonly source: "keyspace"
}

/** The subscriber reconnected and is subscribed again: whatever was published meanwhile is lost, scan. */
export interface Resubscribed {
  readonly _tag: "Resubscribed"
}

export type ChangeSignal = Changed | Gone | Resubscribed

/** What `enableNotifications` found (and did). */
export interface NotificationStatus {
  /** Whether the server's `notify-keyspace-events` covers `K$gxe` now. */
  readonly enabled: boolean
  /** The flags as read back; undefined when CONFIG GET was refused, hides the parameter, or was not tried. */
  readonly flags: string | undefined
  /** Whether this call ran `CONFIG SET`. */
  readonly changed: boolean
  /** The server's refusal (`NOPERM …`, `ERR unknown command 'CONFIG' …`) when CONFIG was refused. */
  readonly refusal: string | undefined
  /** One line for the log: what was found, done, or why notifications are off. */
  readonly detail: string
}

export interface ChangeFeedOptions {
  /** `chat:session:` — session ids are what follows it in a key name. */
  readonly keyPrefix: string
  /** `session_updated:` — session ids are what follows it in a channel name. */
  readonly channelPrefix: string
  /** `false`: neither touch CONFIG nor subscribe to keyspace notifications. Default `true`. */
  readonly notifications?: boolean | undefined
  /** CLIENT SETNAME of the subscriber connection (no spaces). Default `redis-pg-sync:changes`. */
  readonly connectionName?: string | undefined
}

/**
 * A running feed. `signals` is backed by an unbounded buffer filled from the moment of subscription, so nothing
 * published between start-up and the first pull is lost; consume it from ONE fiber. It ends when the feed's scope
 * closes (the subscriber then unsubscribes and quits).
 */
export interface ChangeFeedShape {
  readonly mode: CaptureMode
  readonly notifications: NotificationStatus
  /** Why the channel subscription was refused (mode `reconcile`), if it was. */
  readonly channelRefusal: string | undefined
  readonly signals: Stream.Stream<ChangeSignal>
  /** Whether the subscriber connection is up right now (for the status endpoint). */
  readonly connected: Effect.Effect<boolean>
  /** Ids of sessions whose PTTL is within `window` (see `expiringSoon`). */
  readonly expiringSoon: (window: Duration.DurationInput) => Effect.Effect<ReadonlyArray<string>, RedisError>
}

export class ChangeFeed extends Context.Tag("redis-pg-sync/redis/ChangeFeed")<ChangeFeed, ChangeFeedShape>() {}

const command = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, RedisError> =>
  Effect.tryPromise({ try: f, catch: (cause) => fromCause(cause, what) })

/** A refused command becomes `Left(message)`; a connection failure stays a failure. */
const refusable = <A>(effect: Effect.Effect<A, RedisError>): Effect.Effect<Either.Either<A, string>, RedisError> =>
  effect.pipe(
    Effect.map(Either.right),
    Effect.catchIf((e) => e.reason === "command", (e) => Effect.succeed(Either.left(detailOf(e))))
  )

const detailOf = (e: RedisError): string => (e.cause instanceof Error ? e.cause.message : e.message)

const readFlags = (client: Redis) =>
  refusable(command("CONFIG GET notify-keyspace-events", () => client.config("GET", "notify-keyspace-events"))).pipe(
    Effect.map(Either.map((reply) => {
      const value = Array.isArray(reply) ? reply[1] : undefined
      return value === undefined || value === null ? undefined : String(value)
    }))
  )

/** `flags` plus whichever of `K$gxe` it lacks (`A` counts as `g$lshzxetd`). */
export const unionNotifyFlags = (flags: string): string => {
  const expanded = flags.replace("A", "g$lshzxetd")
  return flags + Array.from(REQUIRED_NOTIFY_FLAGS).filter((f) => !expanded.includes(f)).join("")
}

/**
 * Switches keyspace notifications on when needed and allowed: `CONFIG GET notify-keyspace-events`, and when the
 * flags lack any of `K$gxe`, `CONFIG SET` to their union (never removing a flag someone else relies on), read
 * back. A refused CONFIG (managed Redis) is reported in the result, not failed; only connection failures fail.
 * Idempotent.
 */
export const enableNotifications = (client: Redis): Effect.Effect<NotificationStatus, RedisError> =>
  Effect.gen(function*() {
    const off = (flags: string | undefined, refusal: string | undefined, detail: string): NotificationStatus => ({
      enabled: false,
      flags,
      changed: false,
      refusal,
      detail
    })
    const current = yield* readFlags(client)
    if (Either.isLeft(current)) {
      return off(undefined, current.left, `CONFIG GET refused (${current.left}): keyspace notifications off`)
    }
    if (current.right === undefined) {
      return off(undefined, undefined, "CONFIG GET does not show notify-keyspace-events: keyspace notifications off")
    }
    const before = current.right
    if (coversNotifyFlags(before)) {
      return { enabled: true, flags: before, changed: false, refusal: undefined, detail: `already on ("${before}")` }
    }
    const wanted = unionNotifyFlags(before)
    const set = yield* refusable(
      command("CONFIG SET notify-keyspace-events", () => client.config("SET", "notify-keyspace-events", wanted))
    )
    if (Either.isLeft(set)) {
      return off(before, set.left, `CONFIG SET refused (${set.left}): flags stay "${before}", notifications off`)
    }
    const after = yield* readFlags(client)
    const flags = Either.getOrElse(after, () => wanted) ?? wanted
    return coversNotifyFlags(flags)
      ? { enabled: true, flags, changed: true, refusal: undefined, detail: `set "${before}" -> "${flags}"` }
      : off(flags, undefined, `CONFIG SET "${wanted}" read back as "${flags}": notifications off`)
  })

const GONE: Readonly<Record<string, GoneKind>> = {
  del: "deleted",
  rename_from: "deleted",
  move_from: "deleted",
  expired: "expired",
  evicted: "evicted"
}

/**
 * The signal of one keyspace event on a session key: `del`, `rename_from`, `move_from` → Gone deleted, `expired`,
 * `evicted` → Gone; anything else (`set`, `expire`, `rename_to`, `persist`, …) → Changed, since any change is
 * worth a read.
 */
export const keyspaceSignal = (sessionId: string, event: string): Changed | Gone => {
  const kind = GONE[event]
  return kind === undefined
    ? { _tag: "Changed", sessionId, source: "keyspace" }
    : { _tag: "Gone", sessionId, kind, source: "keyspace" }
}

/** The PSUBSCRIBE patterns of a feed, and the parser of what arrives on them. */
export const patterns = (db: number, keyPrefix: string, channelPrefix: string) => {
  const keyspaceChannel = `__keyspace@${db}__:${keyPrefix}`
  const keyspace = `${globEscape(`__keyspace@${db}__:`)}${globEscape(keyPrefix)}*`
  const channel = `${globEscape(channelPrefix)}*`
  /** The signal of one `pmessage`, or undefined for a message that is not about a session. */
  const parse = (pattern: string, name: string, message: string): ChangeSignal | undefined => {
    if (pattern === channel && name.startsWith(channelPrefix)) {
      return { _tag: "Changed", sessionId: name.slice(channelPrefix.length), source: "channel" }
    }
    if (pattern === keyspace && name.startsWith(keyspaceChannel)) {
      return keyspaceSignal(name.slice(keyspaceChannel.length), message)
    }
    return undefined
  }
  return { keyspace, channel, parse }
}

const captureMode = (keyspace: boolean, channel: boolean): CaptureMode =>
  !channel ? "reconcile" : keyspace ? "notifications+channel+reconcile" : "channel+reconcile"

/**
 * Ids of the sessions whose key expires within `window` (0 ≤ PTTL ≤ window): SCAN `{prefix}*` (never KEYS) and one
 * pipelined PTTL per page. For the pre-expiry sweep: sync these before Redis forgets them.
 */
export const expiringSoon = (
  client: Redis,
  keyPrefix: string,
  window: Duration.DurationInput,
  count = 1000
): Effect.Effect<ReadonlyArray<string>, RedisError> =>
  Effect.gen(function*() {
    const limit = Duration.toMillis(window)
    const pattern = `${globEscape(keyPrefix)}*`
    const found = new Set<string>()
    let cursor = "0"
    do {
      const [next, keys] = yield* command("SCAN failed", () => client.scan(cursor, "MATCH", pattern, "COUNT", count))
      cursor = next
      if (keys.length === 0) continue
      const ttls = yield* command("PTTL failed", async () => {
        const pipeline = client.pipeline()
        for (const key of keys) pipeline.pttl(key)
        const replies = (await pipeline.exec()) ?? []
        return keys.map((_, i) => {
          const [err, ttl] = replies[i] ?? [null, -2]
          if (err) throw err
          return Number(ttl)
        })
      })
      keys.forEach((key, i) => {
        const ttl = ttls[i]!
        if (ttl >= 0 && ttl <= limit) found.add(key.slice(keyPrefix.length))
      })
    } while (cursor !== "0")
    return Array.from(found)
  })

/**
 * Starts the feed: enables notifications on the command connection (unless disabled), opens a second,
 * dedicated subscriber connection with the same options (`maxRetriesPerRequest: null`, auto-resubscribe,
 * reconnecting forever), PSUBSCRIBEs the application channel and, when notifications are on, the keyspace
 * channel of `{keyPrefix}*`. A refused subscription degrades the mode instead of failing; connection failures
 * fail with `RedisError` (retry the whole start). After each reconnect, once the subscriptions are back (a PING
 * answered after them), `Resubscribed` is emitted. The handler only pushes into a buffer: it never blocks.
 */
export const make = (
  options: ChangeFeedOptions
): Effect.Effect<ChangeFeedShape, RedisError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const { client, options: connection } = yield* RedisClient
    const notifications: NotificationStatus = options.notifications === false
      ? { enabled: false, flags: undefined, changed: false, refusal: undefined, detail: "disabled by configuration" }
      : yield* enableNotifications(client)
    const sub = yield* acquire(connection, {
      maxRetriesPerRequest: null,
      autoResubscribe: true,
      connectionName: options.connectionName ?? "redis-pg-sync:changes"
    })
    const mailbox = yield* Mailbox.make<ChangeSignal>()
    const { channel, keyspace, parse } = patterns(dbOf(connection), options.keyPrefix, options.channelPrefix)
    const onMessage = (pattern: string, name: string, message: string) => {
      const signal = parse(pattern, name, message)
      if (signal !== undefined) mailbox.unsafeOffer(signal)
    }
    const resubscribed = () => {
      mailbox.unsafeOffer({ _tag: "Resubscribed" })
    }
    // ioredis re-sends the PSUBSCRIBEs just before emitting "ready": a PING answered after them proves they are back
    const onReady = () => {
      sub.ping().then(resubscribed, resubscribed)
    }
    let subscribed = false
    sub.on("pmessage", onMessage)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        sub.off("pmessage", onMessage)
        sub.off("ready", onReady)
        if (subscribed) {
          yield* Effect.promise(() => sub.punsubscribe().catch(() => 0)).pipe(Effect.timeoutOption("1 second"))
        }
        yield* mailbox.end
      })
    )
    const subscribe = (pattern: string) =>
      refusable(command(`PSUBSCRIBE ${pattern}`, () => sub.psubscribe(pattern))).pipe(
        Effect.tap((r) => Effect.sync(() => (subscribed ||= Either.isRight(r))))
      )
    const channelResult = yield* subscribe(channel)
    const channelOk = Either.isRight(channelResult)
    // Flags unknown (CONFIG GET refused or hiding them, as managed services do): the service's own configuration
    // (a parameter group) may still have notifications on. Subscribing costs nothing if it does not; the mode
    // claims only what was confirmed.
    const unknown = options.notifications !== false && !notifications.enabled && notifications.flags === undefined
    const keyspaceOk = channelOk && (notifications.enabled || unknown) && Either.isRight(yield* subscribe(keyspace))
    if (channelOk) sub.on("ready", onReady)
    return {
      mode: captureMode(keyspaceOk && notifications.enabled, channelOk),
      notifications: keyspaceOk && unknown
        ? { ...notifications, detail: `${notifications.detail}; subscribed anyway: used if the service sends them` }
        : notifications,
      channelRefusal: Either.isLeft(channelResult) ? channelResult.left : undefined,
      signals: Mailbox.toStream(mailbox),
      connected: Effect.sync(() => sub.status === "ready"),
      expiringSoon: (window) => expiringSoon(client, options.keyPrefix, window)
    }
  })

/** The feed as a service; it needs the command connection (`RedisClient`), whose options it reuses. */
export const layer = (options: ChangeFeedOptions): Layer.Layer<ChangeFeed, RedisError, RedisClient> =>
  Layer.scoped(ChangeFeed, make(options))
