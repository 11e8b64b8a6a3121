/**
 * From a raw Redis read to an `Observation` for `decide`: hash the bytes, decode the ones that changed.
 */
import { Either } from "effect"
import type { Observation } from "../core/Decide.js"
import { type KeyMemo, type PrefixHash, snapshotHash, snapshotHashWithPrefix } from "../core/MessageKey.js"
import { decodeSnapshot, storable } from "../core/Snapshot.js"
import type { RawSession } from "../redis/SessionSource.js"

/** How much of a rejected value the ledger keeps (characters). */
export const EXCERPT_LENGTH = 200

/** The hash a non-string Redis type is recorded under, so a rejected hash or set is rejected once. */
const typeHash = (type: string) => snapshotHash(`redis-type:${type}`)

/** Hash of what a read found, or null when the key is gone. */
export const hashOf = (raw: RawSession): string | null =>
  raw.value !== null ? snapshotHash(raw.value) : raw.redisType === "none" ? null : typeHash(raw.redisType)

/**
 * The observation a read stands for; null when the key is gone. `hash`: `hashOf(raw)`, when the caller has it;
 * otherwise a string value is hashed when its hash is first read (see `ValueObservation.hashAlong`).
 */
export const observe = (raw: RawSession, hash?: string): Observation | null => {
  if (raw.value === null) {
    if (raw.redisType === "none") return null
    return {
      _tag: "Snapshot",
      sessionId: raw.sessionId,
      hash: hash ?? typeHash(raw.redisType),
      decode: () => Either.left({ reason: `the key holds a Redis ${raw.redisType}, not a string` }),
      excerpt: "",
      length: 0
    }
  }
  return new ValueObservation(raw.sessionId, raw.value, hash)
}

/**
 * A string value read, decoded from its bytes when asked. A class, so that its methods are shared: made by an object
 * literal, each read's closures and getters were a seventh of what a live write kept past a young-generation
 * collection (a batch's observations live until its transaction commits). Copy one with `Decide.withChanges`: a
 * spread would drop its methods and getters.
 *
 * Decoded from the bytes, not from text kept beside them: 6 KB strings held until the commit were copied by every
 * young-generation collection and promoted (about a fifth of what a full sync promoted), where the bytes lie outside
 * the JavaScript heap. A live write that appends to what its memo holds turns only the appended bytes into text.
 */
class ValueObservation {
  readonly _tag = "Snapshot"
  /**
   * Decoding with no known message is the same every time: kept, so it can be done ahead (`decodeAhead`), out of
   * the transaction, for sessions PostgreSQL does not hold yet.
   */
  private fresh: ReturnType<typeof decodeSnapshot> | undefined = undefined
  private prefix: PrefixHash | undefined = undefined

  constructor(readonly sessionId: string, private readonly value: Buffer, private valueHash: string | undefined) {}

  /** The value's `snapshotHash`, taken when first read (unless given). */
  get hash(): string {
    return this.valueHash ??= snapshotHash(this.value)
  }

  /**
   * Before the hash is first read: takes it in one pass with the hash of the bytes before `end` followed by `rest`,
   * which `decode` then checks an append against (`decodeSnapshot` hashed those bytes a second time).
   */
  hashAlong(end: number, rest: Uint8Array): void {
    if (this.valueHash !== undefined || end > this.value.length) return
    const both = snapshotHashWithPrefix(this.value, end, rest)
    this.valueHash = both.hash
    this.prefix = both.prefix
  }

  decode(known: ReadonlySet<string>, memo?: KeyMemo): ReturnType<typeof decodeSnapshot> {
    return known.size === 0 && memo === undefined
      ? (this.fresh ??= decodeSnapshot(this.sessionId, this.value))
      : decodeSnapshot(this.sessionId, this.value, known, memo, this.hash, this.prefix)
  }

  /**
   * Read by a rejection. Cut by UTF-16 units, the excerpt may end in half a surrogate pair, which jsonb refuses as
   * much as NUL. Only the first bytes are decoded: UTF-8 spends at most three bytes on a UTF-16 unit, so four bytes
   * a unit give more units than the excerpt takes, and they decode as the whole value does up to the last (possibly
   * cut) character.
   */
  get excerpt(): string {
    return storable(this.value.subarray(0, 4 * EXCERPT_LENGTH).toString("utf8").slice(0, EXCERPT_LENGTH))
  }

  get length(): number {
    return this.value.toString("utf8").length
  }
}

const NONE: ReadonlySet<string> = new Set()

/** Decodes, now, an observation of a session PostgreSQL does not hold yet (see `observe`). */
export const decodeAhead = (o: Observation): void => {
  if (o._tag === "Snapshot") o.decode(NONE)
}
