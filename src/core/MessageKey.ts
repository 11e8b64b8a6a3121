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

/**
 * Keys already computed for one session, by identity tuple (and occurrence when not the first). A key is a pure
 * function of the session, the tuple and the occurrence, so an entry never goes stale: the live path, which
 * re-reads a whole session for each new message, hashes only the new ones.
 */
export type KeyMemo = Map<string, string>

/**
 * Keys for the messages of one snapshot, in order. `identities[i]` is the tuple that identifies message `i`
 * (from `Snapshot.ts`); equal tuples get successive occurrence numbers. `memo` is read and filled when given.
 */
export const messageKeys = (
  sessionId: string,
  identities: ReadonlyArray<ReadonlyArray<unknown>>,
  memo?: KeyMemo
): ReadonlyArray<string> => {
  const seen = new Map<string, number>()
  const session = JSON.stringify(sessionId)
  return identities.map((identity) => {
    const tuple = JSON.stringify(identity)
    const occurrence = seen.get(tuple) ?? 0
    seen.set(tuple, occurrence + 1)
    if (memo === undefined) return digest(`${session}|${tuple}|${occurrence}`)
    const id = occurrence === 0 ? tuple : `${tuple}|${occurrence}`
    let key = memo.get(id)
    if (key === undefined) {
      key = digest(`${session}|${tuple}|${occurrence}`)
      memo.set(id, key)
    }
    return key
  })
}

/** Hash of a raw Redis value (`snapshot_hash`): SHA-256, hex. */
export const snapshotHash = (raw: string | Buffer): string => hash("sha256", raw, "hex")
