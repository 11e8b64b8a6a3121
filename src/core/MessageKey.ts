/**
 * Message identity (DESIGN §3). A message is the same message across snapshots of its session when it has the
 * same explicit `id`/`message_id`, or else the same (sender, raw timestamp, raw content) — and, to tell apart
 * the same words said twice, the same occurrence number of that tuple within the session.
 *
 * Keys hash raw values, not normalised ones, so a change in how we normalise can never change an identity.
 * Known limit: if a snapshot both trims away an earlier occurrence of an identical tuple and adds a new one,
 * the new one takes the old one's occurrence number and is taken as already known.
 */
import { hash } from "node:crypto"

/**
 * 128 bits of SHA-256, hex: wide enough that a collision across every message ever synced is not a concern.
 * Formatted from the bytes rather than sliced from the full hex, so no key keeps a 64-character parent alive;
 * the bytes come as a "binary" (latin1) string, which is three times faster than a Buffer from `crypto.hash`.
 */
const digest = (s: string): string => Buffer.from(hash("sha256", s, "binary").slice(0, 16), "binary").toString("hex")

/** The values that identify a message, in order (see `Snapshot.ts`): `[sender, timestamp, content]` or `["id", id]`. */
export type Identity = ReadonlyArray<unknown>

/**
 * The keys of the last snapshot decoded for one session, position by position. The live path re-reads a whole
 * session for each new message: the messages that stand where they stood before (or all shifted by the same
 * number, when the oldest were trimmed away) keep their keys, found by comparing values, and only the others are
 * serialised and hashed. A key is a pure function of the session, the identity and its occurrence, so a memo
 * never goes stale; it is only ever a shortcut to the keys `messageKeys` computes without it.
 */
export class KeyMemo {
  identities: ReadonlyArray<Identity> = []
  keys: ReadonlyArray<string> = []
  /** How many earlier messages of that snapshot have the same identity. */
  occurrences: ReadonlyArray<number> = []
  /** Keys held. */
  get size(): number {
    return this.keys.length
  }
}

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
 * Keys (and occurrence numbers) of `identities[from..]`, written into `keys` and `occurrences`: each identity is
 * numbered by the equal ones before it, compared by value (all must be `comparable`).
 */
const keyByValue = (
  session: string,
  identities: ReadonlyArray<Identity>,
  from: number,
  keys: Array<string>,
  occurrences: Array<number>
): void => {
  for (let i = from; i < identities.length; i++) {
    const identity = identities[i]!
    let occurrence = 0
    for (let j = 0; j < i; j++) if (same(identities[j]!, identity)) occurrence++
    keys[i] = digest(`${session}|${JSON.stringify(identity)}|${occurrence}`)
    occurrences[i] = occurrence
  }
}

/**
 * Every key from scratch: equal identities (as JSON) get successive occurrence numbers. Up to `LINEAR_LIMIT`
 * identities that compare by value are counted by comparing them pairwise (cheap: two messages usually differ in
 * their first characters); beyond, or with values JSON alone can compare, with a map of their JSON, whose
 * hashing of every serialised message was a third of the cost of keying it.
 */
const fresh = (session: string, identities: ReadonlyArray<Identity>) => {
  const n = identities.length
  const keys = new Array<string>(n)
  const occurrences = new Array<number>(n)
  if (n <= LINEAR_LIMIT && identities.every(comparable)) {
    keyByValue(session, identities, 0, keys, occurrences)
    return { keys, occurrences }
  }
  const seen = new Map<string, number>()
  identities.forEach((identity, i) => {
    const tuple = JSON.stringify(identity)
    const occurrence = seen.get(tuple) ?? 0
    seen.set(tuple, occurrence + 1)
    keys[i] = digest(`${session}|${tuple}|${occurrence}`)
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
  if (memo === undefined) return fresh(session, identities).keys
  const n = identities.length
  const keys = new Array<string>(n)
  const occurrences = new Array<number>(n)
  const byValue = identities.every(comparable)
  // The leading messages found in the memo's snapshot, at one shift (0: nothing trimmed).
  let reused = 0
  let shift = 0
  const previous = memo.identities
  if (n > 0 && byValue) {
    while (shift < previous.length && !same(identities[0]!, previous[shift]!)) shift++
    while (reused < n && reused + shift < previous.length && same(identities[reused]!, previous[reused + shift]!)) {
      const occurrence = memo.occurrences[reused + shift]!
      // Shifted, an identity repeated before the shift would be numbered differently now: key it afresh.
      if (shift > 0 && occurrence > 0) break
      keys[reused] = memo.keys[reused + shift]!
      occurrences[reused] = occurrence
      reused++
    }
  }
  if (n - reused > LINEAR_LIMIT || (reused < n && !byValue)) {
    const all = fresh(session, identities)
    memo.identities = identities
    memo.keys = all.keys
    memo.occurrences = all.occurrences
    return all.keys
  }
  // The memo keeps the identities it already held (long-lived, not garbage) and the new ones: this parse's copies
  // of the others die young.
  keyByValue(session, identities, reused, keys, occurrences)
  const kept = new Array<Identity>(n)
  for (let i = 0; i < reused; i++) kept[i] = previous[i + shift]!
  for (let i = reused; i < n; i++) kept[i] = identities[i]!
  memo.identities = kept
  memo.keys = keys
  memo.occurrences = occurrences
  return keys
}

/** Hash of a raw Redis value (`snapshot_hash`): SHA-256, hex. */
export const snapshotHash = (raw: string | Buffer): string => hash("sha256", raw, "hex")
