/**
 * From a raw Redis read to an `Observation` for `decide`: hash the bytes, decode the ones that changed.
 */
import { Either } from "effect"
import type { Observation } from "../core/Decide.js"
import { snapshotHash } from "../core/MessageKey.js"
import { decodeSnapshot, storable } from "../core/Snapshot.js"
import type { RawSession } from "../redis/SessionSource.js"

/** How much of a rejected value the ledger keeps (characters). */
export const EXCERPT_LENGTH = 200

/** The hash a non-string Redis type is recorded under, so a rejected hash or set is rejected once. */
const typeHash = (type: string) => snapshotHash(`redis-type:${type}`)

/** Hash of what a read found, or null when the key is gone. */
export const hashOf = (raw: RawSession): string | null =>
  raw.value !== null ? snapshotHash(raw.value) : raw.redisType === "none" ? null : typeHash(raw.redisType)

/** The observation a read stands for; null when the key is gone. `hash` is `hashOf(raw)`, passed to avoid rehashing. */
export const observe = (raw: RawSession, hash: string | null = hashOf(raw)): Observation | null => {
  if (hash === null) return null
  if (raw.value === null) {
    return {
      _tag: "Snapshot",
      sessionId: raw.sessionId,
      hash,
      decode: () => Either.left({ reason: `the key holds a Redis ${raw.redisType}, not a string` }),
      excerpt: "",
      length: 0
    }
  }
  const value = raw.value
  // Decoded from the bytes, not from text kept beside them: a batch's observations live until its transaction
  // commits, and 6 KB strings held that long were copied by every young-generation collection and promoted (about a
  // fifth of what a full sync promoted), where the bytes lie outside the JavaScript heap. A live write that appends
  // to what its memo holds turns only the appended bytes into text.
  const text = () => value.toString("utf8")
  // Decoding with no known message is the same every time: kept, so it can be done ahead (`decodeAhead`), out of
  // the transaction, for sessions PostgreSQL does not hold yet.
  let fresh: ReturnType<typeof decodeSnapshot> | undefined
  return {
    _tag: "Snapshot",
    sessionId: raw.sessionId,
    hash,
    decode: (known, memo) =>
      known.size === 0 && memo === undefined
        ? (fresh ??= decodeSnapshot(raw.sessionId, value))
        : decodeSnapshot(raw.sessionId, value, known, memo, hash),
    // Read by a rejection (and by a spread of the observation, which reads every getter).
    // Cut by UTF-16 units, the excerpt may end in half a surrogate pair, which jsonb refuses as much as NUL. Only
    // the first bytes are decoded: UTF-8 spends at most three bytes on a UTF-16 unit, so four bytes a unit give more
    // units than the excerpt takes, and they decode as the whole value does up to the last (possibly cut) character.
    get excerpt() {
      return storable(value.subarray(0, 4 * EXCERPT_LENGTH).toString("utf8").slice(0, EXCERPT_LENGTH))
    },
    get length() {
      return text().length
    }
  }
}

const NONE: ReadonlySet<string> = new Set()

/** Decodes, now, an observation of a session PostgreSQL does not hold yet (see `observe`). */
export const decodeAhead = (o: Observation): void => {
  if (o._tag === "Snapshot") o.decode(NONE)
}
