/**
 * Port: where sessions are read from. The ioredis adapter reads `{prefix}{session id}` keys with SCAN (never
 * KEYS) and MGET; `layerMemory` serves tests of the sync logic without a server.
 */
import { Chunk, Context, Effect, Layer, Option, Stream } from "effect"
import type { Redis } from "ioredis"
import { isUtf8 } from "node:buffer"
import { fromCause, type RedisError } from "./RedisError.js"

/** One key's value as read: the raw bytes of a string value, or why there are none. */
export interface RawSession {
  readonly sessionId: string
  /** The value when the key holds a string; null otherwise. */
  readonly value: Buffer | null
  /** `string`, `none` (no such key) or the other Redis type the key holds. */
  readonly redisType: string
}

export class SessionSource extends Context.Tag("redis-pg-sync/redis/SessionSource")<SessionSource, {
  /** Pages of session ids, as SCAN returns them: a key may come twice, keys written meanwhile may be missed. */
  readonly scan: (count: number) => Stream.Stream<ReadonlyArray<string>, RedisError>
  /** The values of the given sessions, in order. */
  readonly read: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<RawSession>, RedisError>
  /** Which of the given sessions still have a key, in order (cheap: no values are read). */
  readonly exists: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<boolean>, RedisError>
}>() {}

/** Escapes glob characters so a key prefix matches itself only. */
export const globEscape = (s: string): string => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

/** Whether PostgreSQL can store `id` (a text column holds no NUL). */
export const storableId = (id: string): boolean => !id.includes("\u0000")

/** The ioredis adapter over a connected client. */
export const make = (client: Redis, prefix: string) => {
  const pattern = `${globEscape(prefix)}*`
  const scan = (count: number) =>
    Stream.paginateChunkEffect("0", (cursor) =>
      Effect.tryPromise({
        // As bytes: a key name that is not UTF-8 would come back with U+FFFD in it, and reading that name would
        // find nothing, so the session would pass for deleted without a word.
        try: () => client.scanBuffer(cursor, "MATCH", pattern, "COUNT", count),
        catch: (cause) => fromCause(cause, "SCAN failed")
      }).pipe(Effect.flatMap(([next, keys]) => {
        const unreadable: Array<Buffer> = []
        const names = new Set<string>()
        for (const k of keys) {
          if (isUtf8(k)) names.add(k.toString("utf8"))
          else unreadable.push(k)
        }
        const ids: Array<string> = []
        const unstorable: Array<string> = []
        for (const name of names) {
          const id = name.slice(prefix.length)
          ;(storableId(id) ? ids : unstorable).push(id)
        }
        const page = [Chunk.of(ids), String(next) === "0" ? Option.none() : Option.some(String(next))] as const
        const warnings = [
          ...(unreadable.length === 0 ? [] : [
            `skipped ${unreadable.length} key(s) whose name is not UTF-8 text, which a session id must be (hex): ` +
            unreadable.slice(0, 5).map((k) => k.toString("hex")).join(", ")
          ]),
          ...(unstorable.length === 0 ? [] : [
            `skipped ${unstorable.length} key(s) whose session id holds a NUL character, which PostgreSQL cannot ` +
            `store: ${unstorable.slice(0, 5).map((id) => JSON.stringify(id)).join(", ")}`
          ])
        ]
        return Effect.as(Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true }), page)
      }))).pipe(Stream.filter((page) => page.length > 0))

  const read = (ids: ReadonlyArray<string>) =>
    Effect.tryPromise({
      try: async (): Promise<ReadonlyArray<RawSession>> => {
        if (ids.length === 0) return []
        const values = await client.mgetBuffer(...ids.map((id) => prefix + id))
        const missing = ids.flatMap((_, i) => (values[i] === null ? [i] : []))
        const types = new Map<number, string>()
        if (missing.length > 0) {
          const pipeline = client.pipeline()
          for (const i of missing) pipeline.type(prefix + ids[i])
          const replies = (await pipeline.exec()) ?? []
          missing.forEach((i, j) => {
            const [err, type] = replies[j] ?? [null, "none"]
            if (err) throw err
            types.set(i, String(type))
          })
        }
        // A key MGET missed but TYPE finds a string was (re)created between the two: read it again, rather than
        // reject a string for not being one.
        const recreated = missing.filter((i) => types.get(i) === "string")
        if (recreated.length > 0) {
          const again = await client.mgetBuffer(...recreated.map((i) => prefix + ids[i]))
          recreated.forEach((i, j) => {
            values[i] = again[j] ?? null
            if (again[j] === null) types.set(i, "none")
          })
        }
        return ids.map((sessionId, i) => {
          const value = values[i] ?? null
          return { sessionId, value, redisType: value !== null ? "string" : types.get(i) ?? "none" }
        })
      },
      catch: (cause) => fromCause(cause, "reading sessions failed")
    })

  const exists = (ids: ReadonlyArray<string>) =>
    Effect.tryPromise({
      try: async (): Promise<ReadonlyArray<boolean>> => {
        if (ids.length === 0) return []
        const pipeline = client.pipeline()
        for (const id of ids) pipeline.exists(prefix + id)
        const replies = (await pipeline.exec()) ?? []
        return ids.map((_, i) => {
          const [err, n] = replies[i] ?? [null, 0]
          if (err) throw err
          return Number(n) > 0
        })
      },
      catch: (cause) => fromCause(cause, "EXISTS failed")
    })

  return SessionSource.of({ scan, read, exists })
}

/** In-memory source over `entries` (session id → value), which the test may change between calls. */
export const layerMemory = (entries: Map<string, string>) =>
  Layer.succeed(
    SessionSource,
    SessionSource.of({
      scan: (count) =>
        Stream.suspend(() => {
          const ids = Array.from(entries.keys())
          const pages: Array<ReadonlyArray<string>> = []
          for (let i = 0; i < ids.length; i += count) pages.push(ids.slice(i, i + count))
          return Stream.fromIterable(pages)
        }),
      read: (ids) =>
        Effect.sync(() =>
          ids.map((sessionId) => {
            const v = entries.get(sessionId)
            return v === undefined
              ? { sessionId, value: null, redisType: "none" }
              : { sessionId, value: Buffer.from(v), redisType: "string" }
          })
        ),
      exists: (ids) => Effect.sync(() => ids.map((id) => entries.has(id)))
    })
  )
