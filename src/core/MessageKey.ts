/**
 * Message identity (DESIGN §3). A message is the same message across snapshots of its session when it has the
 * same explicit `id`/`message_id`, or else the same (sender, raw timestamp, raw content) — and, to tell apart
 * the same words said twice, the same occurrence number of that tuple within the session.
 *
 * Keys hash raw values, not normalised ones, so a change in how we normalise can never change an identity.
 * Known limit: if a snapshot both trims away an earlier occurrence of an identical tuple and adds a new one,
 * the new one takes the old one's occurrence number and is taken as already known.
 */
import { createHash, hash, randomInt } from "node:crypto"
import type { AppendPoint } from "./Snapshot.js"

/**
 * 128 bits of SHA-256, hex: wide enough that a collision across every message ever synced is not a concern.
 * Formatted from the bytes rather than sliced from the full hex, so no key keeps a 64-character parent alive;
 * the bytes come as a "binary" (latin1) string, which is three times faster than a Buffer from `crypto.hash`.
 */
const digest = (s: string): string => Buffer.from(hash("sha256", s, "binary").slice(0, 16), "binary").toString("hex")

/**
 * The same key as `digest`, for keys no memo keeps (a session decoded without one: new to the writer, or a full
 * sync's): a slice of the full hex, which keeps its 64-character parent alive as long as it lives, but costs half as
 * much to make (1.2 against 2.2 µs a key in a micro-benchmark).
 */
const transientDigest = (s: string): string => hash("sha256", s, "hex").slice(0, 32)

/** The values that identify a message, in order (see `Snapshot.ts`): `[sender, timestamp, content]` or `["id", id]`. */
export type Identity = ReadonlyArray<unknown>

const NO_PRINTS = new Int32Array(0)

/**
 * The keys of the last snapshot decoded for one session, position by position. The live path re-reads a whole
 * session for each new message: the messages that stand where they stood before (or all shifted by the same
 * number, when the oldest were trimmed away) keep their keys, and only the others are serialised and hashed.
 *
 * A memo holds no message values, only a 64-bit fingerprint of each identity (see `fingerprintInto`): comparing
 * a fresh parse's strings with the ones a memo kept from an earlier parse was most of the cost of keying (the
 * old strings lie scattered in the old generation, a cache miss each), and holding them was most of the
 * daemon's heap. A message is taken to stand where it stood when its fingerprint is the one held for that
 * place; two different identities share a fingerprint with a chance of 2^-64, and only a message edited or moved
 * in place could meet one. A key is a pure function of the session, the identity and its occurrence, so a memo
 * never goes stale: it is only a shortcut to the keys `messageKeys` computes without it.
 */
export class KeyMemo {
  /** Two 32-bit lanes per message: `[2i]` and `[2i + 1]` belong to message `i`. */
  fingerprints: Int32Array = NO_PRINTS
  keys: ReadonlyArray<string> = []
  /** How many earlier messages of that snapshot have the same identity. */
  occurrences: Int32Array = NO_PRINTS
  /** Bumped whenever the memo takes a new snapshot: a caller can tell whether it still holds the one it saw. */
  version = 0
  /**
   * Where the raw value of that snapshot can grow by appended messages, when `decodeSnapshot` found such a place
   * (see `Snapshot.AppendPoint`); reset by every snapshot keyed without it.
   */
  appendPoint: AppendPoint | undefined = undefined
  /** Whether every identity of that snapshot compares by value (`comparable`). */
  comparable = true
  /** The session of that snapshot: keys are a session's own, so a memo given another session starts afresh. */
  session: string | undefined = undefined
  /** Keys held. */
  get size(): number {
    return this.keys.length
  }
}

/** Lookups answered by scanning the list before `HeldKeys` makes its set. */
const SCANNED_LOOKUPS = 4

/**
 * A set of message keys made from a list without copying it: the keys a memo vouches the projection holds
 * (`KeyMemo.keys`, an array replaced, never changed, when the memo takes a snapshot). A live write used to copy that
 * list into a `Set` for every session, though it looks up only the one or two messages it appends: the copy was a
 * twentieth of the daemon's CPU and a tenth of what it allocated at 5,000 updates/s.
 *
 * The first few lookups scan the list; then, or on the first `add` or iteration, the set is made. `leadingIn` and
 * `madeFrom` answer by position and identity, without lookups. As a `ReadonlySet` it is the set of its keys, whatever form it
 * takes inside.
 */
export class HeldKeys implements ReadonlySet<string> {
  private set: Set<string> | undefined = undefined
  private scans = 0

  constructor(private readonly list: ReadonlyArray<string>) {}

  get size(): number {
    return this.set?.size ?? this.list.length
  }

  has(key: string): boolean {
    if (this.set === undefined && ++this.scans <= SCANNED_LOOKUPS) return this.list.includes(key)
    return this.all().has(key)
  }

  /** Adds a key (the set is made first). */
  add(key: string): this {
    this.all().add(key)
    return this
  }

  /**
   * How many leading `messages` are known held by position: the list's length when their keys are the list's, in
   * its order, else 0. Pointer comparisons, mostly: a memo's keys are the very strings its snapshots' messages carry.
   */
  leadingIn(messages: ReadonlyArray<{ readonly key: string }>): number {
    const n = this.list.length
    if (messages.length < n) return 0
    for (let i = 0; i < n; i++) if (messages[i]!.key !== this.list[i]) return 0
    return n
  }

  /** Whether `keys` is the very list this set was made from (then every one of them is held). */
  madeFrom(keys: ReadonlyArray<string>): boolean {
    return keys === this.list
  }

  forEach(f: (value: string, key: string, set: ReadonlySet<string>) => void, thisArg?: unknown): void {
    this.all().forEach((k) => f.call(thisArg, k, k, this))
  }
  entries(): SetIterator<[string, string]> {
    return this.all().entries()
  }
  keys(): SetIterator<string> {
    return this.all().keys()
  }
  values(): SetIterator<string> {
    return this.all().values()
  }
  [Symbol.iterator](): SetIterator<string> {
    return this.all()[Symbol.iterator]()
  }

  private all(): Set<string> {
    return this.set ??= new Set(this.list)
  }
}

/** Whether `known` holds every key of `keys` (by position when it is a `HeldKeys` made from them). */
export const holdsAll = (known: ReadonlySet<string>, keys: ReadonlyArray<string>): boolean => {
  if (known instanceof HeldKeys && known.madeFrom(keys)) return true
  for (const key of keys) if (!known.has(key)) return false
  return true
}

/** How many leading `messages` `known` holds by position (see `HeldKeys.leadingIn`); 0 for any other set. */
export const leadingHeld = (known: ReadonlySet<string>, messages: ReadonlyArray<{ readonly key: string }>): number =>
  known instanceof HeldKeys ? known.leadingIn(messages) : 0

/** Above this many messages to key afresh, occurrences are counted with a map of serialised identities. */
const LINEAR_LIMIT = 32

/**
 * Strings, finite numbers, booleans and null compare by value with `===` exactly as their JSON does. Not
 * ±Infinity (`1e999` parses to it): its JSON is `null`, so it is the same identity as null, but not `===`.
 */
const comparable = (identity: Identity): boolean => {
  for (const v of identity) {
    if (typeof v === "object" ? v !== null : typeof v === "number" && !Number.isFinite(v)) return false
  }
  return true
}

/** Last element first: two messages' contents usually differ in their first characters, their times in their last. */
const same = (a: Identity, b: Identity): boolean => {
  if (a.length !== b.length) return false
  for (let i = a.length - 1; i >= 0; i--) if (a[i] !== b[i]) return false
  return true
}

/**
 * The lanes' seeds, drawn per process (memos live in one process only): a pair of identities that collide cannot
 * be worked out ahead, as it could for fixed seeds (the hash is not cryptographic).
 */
const SEEDS = [randomInt(2 ** 31), randomInt(2 ** 31)] as const

/**
 * Writes the fingerprint of `identity` at `out[2 * at]` and `out[2 * at + 1]`: two multiplicative hash lanes over
 * each value's type and characters, mixed at the end (as `cyrb53` does, widened to 64 bits). Equal identities
 * (by `same`, or by JSON for those that are not `comparable`) always get equal fingerprints. Returns whether
 * the identity is `comparable`.
 */
const fingerprintInto = (identity: Identity, out: Int32Array, at: number): boolean => {
  let h1 = SEEDS[0] ^ identity.length
  let h2 = SEEDS[1] ^ identity.length
  const byValue = comparable(identity)
  const count = byValue ? identity.length : 1
  for (let e = 0; e < count; e++) {
    const v = byValue ? identity[e] : JSON.stringify(identity)
    // A type tag (5: the JSON of an identity that is not comparable), the characters, then the length: no two
    // different value lists read alike.
    const tag = !byValue ? 5 : typeof v === "string" ? 1 : v === null ? 2 : typeof v === "number" ? 3 : 4
    const s = typeof v === "string" ? v : v === null ? "" : String(v)
    h1 = Math.imul(h1 ^ tag, 2654435761)
    h2 = Math.imul(h2 ^ tag, 1597334677)
    for (let k = 0; k < s.length; k++) {
      const c = s.charCodeAt(k)
      h1 = Math.imul(h1 ^ c, 2654435761)
      h2 = Math.imul(h2 ^ c, 1597334677)
    }
    h1 = Math.imul(h1 ^ s.length, 2654435761)
    h2 = Math.imul(h2 ^ s.length, 1597334677)
  }
  const a = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  const b = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  out[2 * at] = a
  out[2 * at + 1] = b
  return byValue
}

const samePrint = (a: Int32Array, i: number, b: Int32Array, j: number): boolean =>
  a[2 * i] === b[2 * j] && a[2 * i + 1] === b[2 * j + 1]

/**
 * Keys (and occurrence numbers) of `identities[from..]`, written into `keys` and `occurrences`: each identity is
 * numbered by the equal ones before it, compared by value (all must be `comparable`); `prints`, when given, are
 * their fingerprints, compared first.
 */
const keyByValue = (
  session: string,
  identities: ReadonlyArray<Identity>,
  from: number,
  keys: Array<string>,
  occurrences: Int32Array,
  prints?: Int32Array,
  keyOf: (s: string) => string = digest
): void => {
  for (let i = from; i < identities.length; i++) {
    const identity = identities[i]!
    let occurrence = 0
    for (let j = 0; j < i; j++) {
      if ((prints === undefined || samePrint(prints, j, prints, i)) && same(identities[j]!, identity)) occurrence++
    }
    keys[i] = keyOf(`${session}|${JSON.stringify(identity)}|${occurrence}`)
    occurrences[i] = occurrence
  }
}

/**
 * Every key from scratch: equal identities (as JSON) get successive occurrence numbers. Up to `LINEAR_LIMIT`
 * identities that compare by value are counted by comparing them pairwise (cheap: two messages usually differ in
 * their first characters); beyond, or with values JSON alone can compare, with a map of their JSON, whose
 * hashing of every serialised message was a third of the cost of keying it.
 */
const fresh = (session: string, identities: ReadonlyArray<Identity>, keyOf: (s: string) => string = digest) => {
  const n = identities.length
  const keys = new Array<string>(n)
  const occurrences = new Int32Array(n)
  if (n <= LINEAR_LIMIT && identities.every(comparable)) {
    keyByValue(session, identities, 0, keys, occurrences, undefined, keyOf)
    return { keys, occurrences }
  }
  const seen = new Map<string, number>()
  identities.forEach((identity, i) => {
    const tuple = JSON.stringify(identity)
    const occurrence = seen.get(tuple) ?? 0
    seen.set(tuple, occurrence + 1)
    keys[i] = keyOf(`${session}|${tuple}|${occurrence}`)
    occurrences[i] = occurrence
  })
  return { keys, occurrences }
}

/**
 * Keys for the messages of one snapshot, in order. `identities[i]` is the tuple that identifies message `i`;
 * equal tuples get successive occurrence numbers. `memo` (see `KeyMemo`) is read, then holds this snapshot.
 */
export const messageKeys = (
  sessionId: string,
  identities: ReadonlyArray<Identity>,
  memo?: KeyMemo
): ReadonlyArray<string> => {
  const session = JSON.stringify(sessionId)
  if (memo === undefined) return fresh(session, identities, transientDigest).keys
  const n = identities.length
  const prints = new Int32Array(2 * n)
  let allComparable = true
  for (let i = 0; i < n; i++) if (!fingerprintInto(identities[i]!, prints, i)) allComparable = false
  const keys = new Array<string>(n)
  const occurrences = new Int32Array(n)
  // The leading messages found in the memo's snapshot, at one shift (0: nothing trimmed).
  let reused = 0
  let shift = 0
  const previous = memo.fingerprints
  const held = memo.session === sessionId ? memo.keys.length : 0
  memo.session = sessionId
  if (n > 0) {
    while (shift < held && !samePrint(prints, 0, previous, shift)) shift++
    while (reused < n && reused + shift < held && samePrint(prints, reused, previous, reused + shift)) {
      const occurrence = memo.occurrences[reused + shift]!
      // Shifted, an identity repeated before the shift would be numbered differently now: key it afresh.
      if (shift > 0 && occurrence > 0) break
      keys[reused] = memo.keys[reused + shift]!
      occurrences[reused] = occurrence
      reused++
    }
  }
  memo.fingerprints = prints
  memo.version++
  memo.appendPoint = undefined
  memo.comparable = allComparable
  if (n - reused > LINEAR_LIMIT || (reused < n && !allComparable)) {
    const all = fresh(session, identities)
    memo.keys = all.keys
    memo.occurrences = all.occurrences
    return all.keys
  }
  keyByValue(session, identities, reused, keys, occurrences, prints)
  memo.keys = keys
  memo.occurrences = occurrences
  return keys
}

/**
 * Keys for messages appended to the memo's snapshot, whose messages all stand where they stood: the memo then holds
 * the longer snapshot (its `appendPoint` is the caller's to set). The keys are those `messageKeys` gives the whole
 * snapshot, found without the earlier messages' values: an appended identity whose fingerprint is none of theirs
 * repeats none of them (equal identities have equal fingerprints), so its occurrence is counted among the appended
 * ones alone. Undefined, and the memo untouched, when a fingerprint is one the memo holds (an identity said again,
 * or a collision) or an identity only JSON can compare: the caller keys the whole snapshot then.
 */
export const appendKeys = (
  sessionId: string,
  identities: ReadonlyArray<Identity>,
  memo: KeyMemo
): ReadonlyArray<string> | undefined => {
  // An earlier identity only JSON can compare may equal an appended one whose fingerprint differs (`[1, Infinity]`
  // and `[1, null]` are one identity): its occurrences are not told by fingerprints.
  if (!memo.comparable || memo.session !== sessionId) return undefined
  const held = memo.keys.length
  const n = held + identities.length
  const prints = new Int32Array(2 * n)
  prints.set(memo.fingerprints)
  for (let i = held; i < n; i++) {
    if (!fingerprintInto(identities[i - held]!, prints, i)) return undefined
    for (let j = 0; j < held; j++) if (samePrint(prints, i, prints, j)) return undefined
  }
  // Numbered among the appended ones alone: their own keys, occurrences and fingerprints, as one list.
  const keys = new Array<string>(identities.length)
  const occurrences = new Int32Array(n)
  occurrences.set(memo.occurrences)
  keyByValue(JSON.stringify(sessionId), identities, 0, keys, occurrences.subarray(held), prints.subarray(2 * held))
  memo.fingerprints = prints
  // `concat`, not a copy grown in place: an array grown past its length keeps spare room (half again), which over
  // every live session's memo was megabytes.
  memo.keys = memo.keys.concat(keys)
  memo.occurrences = occurrences
  memo.version++
  return keys
}

/** The `snapshotHash` of a value's bytes before `end` followed by `rest`, taken along with the value's own. */
export interface PrefixHash {
  readonly end: number
  readonly rest: Uint8Array
  readonly digest: string
}

/** The `snapshotHash` of `value`'s bytes before `end` followed by `rest` (see `Snapshot.AppendPoint`). */
export const prefixHash = (value: Uint8Array, end: number, rest: Uint8Array): string =>
  createHash("sha256").update(value.subarray(0, end)).update(rest).digest("hex")

/**
 * The value's `snapshotHash` and, in the same pass over its bytes, its `prefixHash` (what `decodeSnapshot` checks an
 * append against). Hashed apart, the bytes before `end` were hashed twice: 17 µs more per update of a 200-message
 * session (22 KB) on this machine.
 */
export const snapshotHashWithPrefix = (
  value: Uint8Array,
  end: number,
  rest: Uint8Array
): { readonly hash: string; readonly prefix: PrefixHash } => {
  const whole = createHash("sha256").update(value.subarray(0, end))
  const prefix = whole.copy().update(rest).digest("hex")
  return { hash: whole.update(value.subarray(end)).digest("hex"), prefix: { end, rest, digest: prefix } }
}

/** Hash of a raw Redis value (`snapshot_hash`): SHA-256, hex. */
export const snapshotHash = (raw: string | Uint8Array): string => hash("sha256", raw, "hex")
