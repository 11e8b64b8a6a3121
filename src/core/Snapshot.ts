/**
 * Lenient decoding of a Redis value into a session snapshot (DESIGN §1).
 *
 * Whatever can be kept is kept: ids may be numbers or numeric strings, timestamps come in several shapes (see
 * `Timestamp.ts`), unknown fields land in `extra`, a value that cannot be read (a garbage timestamp, a sender
 * that is an object) is kept raw in `extra` with a warning. Only a value that cannot be a session at all is a
 * `Rejection`.
 */
import { Either } from "effect"
import { isUtf8 } from "node:buffer"
import { appendKeys, holdsAll, type KeyMemo, messageKeys, type PrefixHash, prefixHash, snapshotHash } from "./MessageKey.js"
import { type Instant, normalizeTimestamp } from "./Timestamp.js"

/** JSON object with unknown members, as kept in `extra` columns. */
export type Extra = Readonly<Record<string, unknown>>

/** Session metadata: the part of a snapshot that `session_upserted` records. */
export interface SessionMeta {
  readonly topic: string | null
  /** Canonical decimal group id (fits a bigint), or null. */
  readonly groupId: string | null
  /** External id of the creator (`users.external_id`), or null. */
  readonly createdBy: string | null
  readonly createdAt: Instant | null
  readonly updatedAt: Instant | null
  readonly extra: Extra | null
}

export interface SnapshotMessage {
  /** Stable identity, see `MessageKey.ts`. */
  readonly key: string
  /** External id of the sender, or null. */
  readonly sender: string | null
  readonly content: string | null
  readonly sentAt: Instant | null
  readonly extra: Extra | null
}

export interface Snapshot {
  readonly sessionId: string
  readonly meta: SessionMeta
  readonly messages: ReadonlyArray<SnapshotMessage>
  /** What was kept only in raw form, e.g. `messages[3].timestamp: "yesterday-ish" is not a time`. */
  readonly warnings: ReadonlyArray<string>
}

/** Why a value cannot be a session. `reason` is written for a person. */
export interface Rejection {
  readonly reason: string
}

const INT64_MAX = 9223372036854775807n
const INT64_MIN = -9223372036854775808n

/** Canonical decimal form of an integer id given as a number or numeric string, if it fits a bigint. */
export const canonicalInteger = (value: unknown): string | undefined => {
  if (typeof value === "number") return Number.isSafeInteger(value) ? String(value) : undefined
  if (typeof value !== "string" || !/^\s*[+-]?\d{1,19}\s*$/.test(value)) return undefined
  const n = BigInt(value.trim())
  return n > INT64_MAX || n < INT64_MIN ? undefined : n.toString()
}

/** External user id: integers in canonical form, other non-empty strings as they are. */
const externalId = (value: unknown): string | undefined => {
  const int = canonicalInteger(value)
  if (int !== undefined) return int
  return typeof value === "string" && value.trim() !== "" ? value : undefined
}

const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  return typeof value === "object" ? "an object" : `a ${typeof value}`
}

const preview = (value: unknown): string => {
  const s = JSON.stringify(value) ?? String(value)
  return s.length > 60 ? s.slice(0, 57) + "..." : s
}

/**
 * PostgreSQL text and jsonb cannot hold U+0000, nor a lone UTF-16 surrogate (JSON may escape one, `"\ud83d"`:
 * half an emoji, as a writer that cuts strings by UTF-16 units leaves). These are the only characters we
 * replace (with U+FFFD), and we say so: a message that keeps its other characters is not lost.
 */
const NUL = /\u0000/g
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
/** The same pattern without `g`, for `test` (a global regex's `test` keeps state between calls). */
const HAS_LONE_SURROGATE = new RegExp(LONE_SURROGATE.source)
export const storable = (s: string): string => s.replace(NUL, "\uFFFD").replace(LONE_SURROGATE, "\uFFFD")
/** What `storable` would replace in `s`, in words, or null when nothing. */
const unstorableIn = (s: string): string | null => {
  const nul = s.includes("\u0000")
  const lone = HAS_LONE_SURROGATE.test(s)
  return nul && lone ? "NUL characters and lone surrogates" : nul ? "NUL characters" : lone ? "lone surrogates" : null
}

const clean = (s: string, where: string, warnings: Array<string>): string => {
  const what = unstorableIn(s)
  if (what === null) return s
  warnings.push(`${where}: ${what} replaced with U+FFFD`)
  return storable(s)
}

/**
 * A `\uXXXX` escape of a high surrogate that no escape of a low one follows, or of a low surrogate that no
 * unescaped escape of a high one precedes: either decodes to a lone surrogate. A backslash preceded by an odd number
 * of backslashes is text, not an escape: matching such text is harmless (the document is cleaned for nothing),
 * but taking it for the high half of a pair would miss the lone low escape after it, hence the lookbehind's
 * count of backslashes.
 */
const LONE_SURROGATE_ESCAPE =
  /\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!(?:^|[^\\])(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}/

/**
 * Whether the raw JSON may decode to characters `clean` replaces: a `\u0000` escape, or a surrogate escape that
 * is not half of a pair. Python's `json.dumps` (the app's) writes every emoji as a pair of escapes, so a surrogate
 * escape alone does not mean cleaning: walking every string of such a document was a tenth of a full sync's CPU.
 * The raw text decoded from UTF-8 holds no lone surrogate itself (invalid bytes become U+FFFD).
 */
const mayNeedCleaning = (raw: string): boolean =>
  raw.includes("\\u0000") ||
  ((raw.includes("\\ud") || raw.includes("\\uD")) && LONE_SURROGATE_ESCAPE.test(raw))

const text = (value: unknown, where: string, warnings: Array<string>): string | null => {
  if (value === undefined || value === null) return null
  if (typeof value === "string") return clean(value, where, warnings)
  return clean(JSON.stringify(value), where, warnings)
}

/**
 * Replaces NUL and lone surrogates in every string of a parsed document, keys included (PostgreSQL's text and
 * jsonb refuse them anywhere), with one warning per place. Only called when the raw JSON has an escape that can
 * produce one (`mayNeedCleaning`): rare.
 */
const cleanDeep = (value: unknown, path: string, warnings: Array<string>): unknown => {
  if (typeof value === "string") return clean(value, path, warnings)
  if (Array.isArray(value)) return value.map((v, i) => cleanDeep(v, `${path}[${i}]`, warnings))
  if (typeof value !== "object" || value === null) return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    const key = storable(k)
    const keyPath = path === "" ? key : `${path}.${key}`
    if (key !== k) warnings.push(`${keyPath} (a key): ${unstorableIn(k)} replaced with U+FFFD`)
    Object.defineProperty(out, key, {
      value: cleanDeep(v, keyPath, warnings),
      enumerable: true,
      writable: true,
      configurable: true
    })
  }
  return out
}

const SESSION_FIELDS = new Set(["session_id", "topic", "group_id", "created_by", "created_at", "updated_at", "messages"])
const MESSAGE_FIELDS = new Set(["content", "sender_id", "timestamp"])

interface Collected {
  extra: Record<string, unknown> | null
}
/**
 * A document nested deeper than this is refused, wherever the depth is. One fixed bound: left to the stack, whether
 * a deep content or timestamp could be serialised (for its key, a warning, the ledger) depended on how deep the
 * caller already was and on whether the document was cleaned, so the full sync and the live path could disagree.
 */
export const MAX_DEPTH = 1000

class TooDeep extends Error {}

/** How many times `char` occurs in `s`, counting no further than `limit + 1`. */
const countUpTo = (s: string, char: string, limit: number): number => {
  let n = 0
  for (let i = s.indexOf(char); i >= 0 && n <= limit; i = s.indexOf(char, i + 1)) n++
  return n
}

/**
 * Throws `TooDeep` when `value`, parsed from `text` inside `around` more levels, nests objects and arrays deeper
 * than `limit` levels (the value itself is one). Text with no more than `limit - around` brackets cannot: the usual
 * case, told by a count with `indexOf`. Otherwise an iterative walk (no stack to overflow).
 */
const refuseDeeperThan = (value: unknown, text: string, limit: number, around = 0): void => {
  if (around + countUpTo(text, "[", limit) + countUpTo(text, "{", limit) <= limit) return
  const values: Array<unknown> = [value]
  const depths: Array<number> = [1]
  while (values.length > 0) {
    const v = values.pop()
    const depth = depths.pop()!
    if (typeof v !== "object" || v === null) continue
    if (depth > limit) throw new TooDeep(`the value is nested deeper than ${MAX_DEPTH} levels`)
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === "object" && child !== null) {
        values.push(child)
        depths.push(depth + 1)
      }
    }
  }
}

const keep = (c: Collected, field: string, value: unknown) => {
  c.extra ??= {}
  // defineProperty, not assignment: a field named "__proto__" would otherwise set the prototype and be lost.
  Object.defineProperty(c.extra, field, { value, enumerable: true, writable: true, configurable: true })
}

const instant = (
  value: unknown,
  field: string,
  where: string,
  c: Collected,
  warnings: Array<string>
): Instant | null => {
  if (value === undefined || value === null) return null
  const t = normalizeTimestamp(value)
  if (t !== undefined) return t
  warnings.push(`${where}: ${preview(value)} is not a time; kept in extra`)
  keep(c, field, value)
  return null
}

type MessageDetails = Omit<SnapshotMessage, "key">

/** The sender's external id, or null when absent or not an id (the details say why). */
const senderOf = (senderId: unknown): string | null => {
  if (typeof senderId === "number" && Number.isSafeInteger(senderId)) return String(senderId)
  if (senderId === undefined || senderId === null) return null
  return externalId(senderId) ?? null
}

/** The tuple that identifies a message (see `MessageKey.ts`): cheap, so every message gets one. */
const identityOf = (raw: unknown): ReadonlyArray<unknown> => {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return [null, null, raw === undefined || raw === null ? null : typeof raw === "string" ? raw : JSON.stringify(raw)]
  }
  const m = raw as Record<string, unknown>
  const explicit = m.id ?? m.message_id
  return explicit !== undefined && explicit !== null && typeof explicit !== "object"
    ? ["id", String(explicit)]
    : [senderOf(m.sender_id), m.timestamp ?? null, m.content ?? null]
}

/** Everything else about a message: only needed for messages the projection does not hold yet. */
const messageDetails = (raw: unknown, index: number, warnings: Array<string>): MessageDetails => {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    warnings.push(`messages[${index}]: ${describe(raw)} instead of an object; kept as its content`)
    return { sender: null, content: text(raw, `messages[${index}].content`, warnings), sentAt: null, extra: null }
  }
  const m = raw as Record<string, unknown>
  const c: Collected = { extra: null }
  for (const field in m) {
    if (!MESSAGE_FIELDS.has(field)) keep(c, field, m[field])
  }
  const senderId = m.sender_id
  const sender = senderOf(senderId)
  if (sender === null && senderId !== undefined && senderId !== null) {
    warnings.push(`messages[${index}].sender_id: ${preview(senderId)} is not an id; kept in extra`)
    keep(c, "sender_id", senderId)
  }
  const rawContent = m.content
  const content = typeof rawContent === "string" && !rawContent.includes("\u0000")
    ? rawContent
    : text(rawContent, `messages[${index}].content`, warnings)
  const timestamp = m.timestamp
  let sentAt: Instant | null = null
  if (timestamp !== undefined && timestamp !== null) {
    sentAt = normalizeTimestamp(timestamp) ?? null
    if (sentAt === null) {
      warnings.push(`messages[${index}].timestamp: ${preview(timestamp)} is not a time; kept in extra`)
      keep(c, "timestamp", timestamp)
    }
  }
  return { sender, content, sentAt, extra: c.extra }
}

/**
 * Where a decoded value can grow by appended messages, kept in the session's memo. The app appends a message by
 * writing the whole session again, the same text with the new message inserted at the end of `messages`. Such a
 * value is decoded from the part after the old text (`decodeAppended`), instead of parsing and identifying every
 * old message again: that was most of a live write's decoding, and grew with the session.
 */
export interface AppendPoint {
  /**
   * Where, in the value's UTF-8 bytes, the `messages` array's elements end (after its last element, or its `[` when
   * empty). Bytes, not text: a live write is read as bytes, and its appended part is all it turns into text.
   */
  readonly end: number
  /**
   * The value's `snapshotHash`: a later value whose bytes before `end`, followed by `rest`, have this hash starts
   * with this value's bytes before `end` (no need to hash that part on its own, nor to keep it).
   */
  readonly valueHash: string
  /** The bytes from `end` on: `]}` as the app writes it, whitespace and any later members included. Never written. */
  readonly rest: Uint8Array
  /** What the text decoded to, but the messages: metadata, and the warnings about anything but a message's details. */
  readonly meta: SessionMeta
  readonly warnings: ReadonlyArray<string>
}

const NO_WARNINGS: ReadonlyArray<string> = []

/** The app's `]}`, shared by every memo whose value ends so (most of them). */
const APP_REST = new Uint8Array([93, 125])

/**
 * The bytes after the messages, copied into memory of their own (`Buffer#slice` is a view, which would keep the whole
 * value alive, one kept per session; a small `Buffer` copy would keep a pooled 8 KB slab).
 */
const restOf = (bytes: Uint8Array, end: number): Uint8Array =>
  bytes.length - end === 2 && bytes[end] === 93 && bytes[end + 1] === 125 ? APP_REST : new Uint8Array(bytes.subarray(end))

/**
 * More bytes after the messages are not kept (a member that changes with every write would defeat it anyway).
 * `appendPoint` looks at the characters first, as fewer characters than this cannot be more bytes.
 */
const MAX_REST = 256

/**
 * A value with more text outside its messages than this gets no place to append: the memo would keep what that
 * text decodes to (the metadata, with any unknown fields), and a memo is meant to be small (see `SessionStore`).
 */
const MAX_OUTSIDE = 2048

const QUOTE = 34
const BACKSLASH = 92

/**
 * Where the `messages` array that `JSON.parse` keeps starts in `raw` (its `[`) and where its elements end (after the
 * last one, or after the `[` when it is empty), if it has one; `raw` must be valid JSON whose root is an object. A
 * scan of the structure alone: strings are skipped with `indexOf`. Of several `messages` members the last counts,
 * as for `JSON.parse`.
 */
const messagesSpan = (raw: string): { readonly start: number; readonly end: number } | undefined => {
  let depth = 0
  let expectKey = false
  let key: string | undefined
  let inMessages = false
  let lastEnd = -1
  let start = -1
  let found: { start: number; end: number } | undefined
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === QUOTE) {
      let close = raw.indexOf("\"", i + 1)
      for (;;) {
        let b = close - 1
        while (raw.charCodeAt(b) === BACKSLASH) b--
        if ((close - 1 - b) % 2 === 0) break
        close = raw.indexOf("\"", close + 1)
      }
      if (depth === 1 && expectKey) {
        const token = raw.slice(i, close + 1)
        key = token.includes("\\") ? JSON.parse(token) as string : token.slice(1, -1)
        expectKey = false
        // A later `messages` member replaces an earlier one, whatever its value.
        if (key === "messages") found = undefined
      } else if (inMessages && depth === 2) {
        lastEnd = close + 1
      }
      i = close
      continue
    }
    switch (c) {
      case 32: case 9: case 10: case 13: case 58: // whitespace, ":"
        break
      case 44: // ","
        if (depth === 1) expectKey = true
        break
      case 123: case 91: // "{", "["
        depth++
        if (depth === 1) expectKey = true
        else if (depth === 2 && c === 91 && key === "messages") {
          inMessages = true
          start = i
          lastEnd = i + 1
        }
        break
      case 125: case 93: // "}", "]"
        depth--
        if (inMessages && depth === 2) lastEnd = i + 1
        else if (inMessages && depth === 1) {
          inMessages = false
          found = { start, end: lastEnd }
        }
        break
      default: // a number or a literal
        if (inMessages && depth === 2) lastEnd = i + 1
    }
  }
  return found
}

/** The place to append in `raw`, if any; `bytes` are exactly `raw` encoded (the caller checks, see `exactBytes`). */
const appendPoint = (
  raw: string,
  bytes: Uint8Array,
  valueHash: string,
  meta: SessionMeta,
  warnings: ReadonlyArray<string>
): AppendPoint | undefined => {
  const span = messagesSpan(raw)
  if (span === undefined || raw.length - (span.end - span.start) > MAX_OUTSIDE) return undefined
  // `raw` is `bytes` decoded, exactly (well-formed either way): the text after the span is the bytes after its end.
  const after = raw.length - span.end
  if (after > MAX_REST) return undefined
  return placeAt(bytes, bytes.length - (after === 2 ? 2 : Buffer.byteLength(raw.slice(span.end))), valueHash, meta, warnings)
}

/** The place to append at byte `end`, the bytes from there on kept as `rest`; undefined when they are too many. */
const placeAt = (
  bytes: Uint8Array,
  end: number,
  valueHash: string,
  meta: SessionMeta,
  warnings: ReadonlyArray<string>
): AppendPoint | undefined =>
  bytes.length - end > MAX_REST ? undefined : { end, valueHash, rest: restOf(bytes, end), meta, warnings }

/**
 * The exact UTF-8 bytes of a value given as `bytes` or as text, or undefined when there are none: bytes that are not
 * UTF-8 (decoded, each bad sequence reads as U+FFFD, so the text is not theirs), or text with a lone surrogate (only
 * a string that came from elsewhere than UTF-8 bytes has one; encoded, it reads as U+FFFD, so the hash could not
 * tell the two apart).
 */
const exactBytes = (value: string | Uint8Array): Uint8Array | undefined =>
  typeof value === "string" ? (value.isWellFormed() ? Buffer.from(value) : undefined) : isUtf8(value) ? value : undefined

/** A message the projection holds: identified, not decoded further (a literal: a spread was 8 µs per snapshot). */
const knownMessage = (key: string): SnapshotMessage => ({ key, sender: null, content: null, sentAt: null, extra: null })

/** The bytes of a Buffer (or Uint8Array) as text, from `start` to `end`. */
const utf8 = (bytes: Uint8Array, start: number, end: number): string =>
  (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString("utf8", start, end)

/** Whether `bytes` end with `tail`. */
const endsWith = (bytes: Uint8Array, tail: Uint8Array): boolean => {
  const from = bytes.length - tail.length
  for (let i = 0; i < tail.length; i++) if (bytes[from + i] !== tail[i]) return false
  return true
}

/** JSON's whitespace only (`\s` also matches characters JSON refuses between tokens), then a comma. */
const LEADING_COMMA = /^[ \t\n\r]*,/
const isJsonSpace = (c: number) => c === 32 || c === 10 || c === 13 || c === 9

/**
 * Decodes `bytes` (exact UTF-8, see `exactBytes`) as the memo's last snapshot with messages appended, if it is one:
 * the old bytes before `end` (by hash), then `,` and the new messages, then the old `rest` bytes. Undefined when
 * it is not, or when the shortcut could differ from a full decode: an old message the projection does not hold (it
 * needs its details), new text that needs cleaning, an appended identity that may repeat an earlier one
 * (`appendKeys`).
 * Otherwise the very snapshot `decodeSnapshot` would give, and the memo holds it.
 */
const decodeAppended = (
  sessionId: string,
  bytes: Uint8Array,
  known: ReadonlySet<string>,
  memo: KeyMemo,
  point: AppendPoint,
  valueHash: string | undefined,
  takenAlong: PrefixHash | undefined
): Snapshot | undefined => {
  const { end, rest } = point
  const before = memo.keys
  const held = before.length
  const length = bytes.length
  if (length <= end + rest.length || !endsWith(bytes, rest) || sessionId !== memo.session) return undefined
  if (!holdsAll(known, before)) return undefined
  let body = utf8(bytes, end, length - rest.length)
  if (held > 0) {
    const comma = LEADING_COMMA.exec(body)
    if (comma === null) return undefined
    body = body.slice(comma[0].length)
  }
  if (mayNeedCleaning(body)) return undefined
  // The old bytes, by hash: the ones before `end` here, then the old rest (hashed along with the value when the
  // caller knew this point as it hashed it).
  const old = takenAlong !== undefined && takenAlong.end === end && takenAlong.rest === rest
    ? takenAlong.digest
    : prefixHash(bytes, end, rest)
  if (old !== point.valueHash) return undefined
  let added: unknown
  try {
    // Valid as an array's elements, they are a list of values: inserted at `end`, they extend `messages` alone.
    added = JSON.parse(`[${body}]`)
  } catch {
    return undefined
  }
  if (!Array.isArray(added) || added.length === 0) return undefined
  // The rest of the document was bounded when its place to append was found; the new messages are at depth 3.
  refuseDeeperThan(added, body, MAX_DEPTH - 1, 1)
  const keys = appendKeys(sessionId, added.map(identityOf), memo)
  if (keys === undefined) return undefined
  // The memo holds the new value from here on, its place to append included, whatever happens below.
  let newEnd = length - rest.length
  while (isJsonSpace(bytes[newEnd - 1]!)) newEnd--
  memo.appendPoint = placeAt(bytes, newEnd, valueHash ?? snapshotHash(bytes), point.meta, point.warnings)
  const warnings = point.warnings.slice()
  const messages: Array<SnapshotMessage> = before.map(knownMessage)
  added.forEach((m, j) => {
    const key = keys[j]!
    messages.push(known.has(key) ? knownMessage(key) : { key, ...messageDetails(m, held + j, warnings) })
  })
  return { sessionId, meta: point.meta, messages, warnings }
}

/**
 * Decodes the raw Redis value of session `sessionId`, as its bytes or as text. Total: never throws.
 *
 * Rejected: not JSON, a root that is not an object, `messages` present but not an array, nesting deeper than
 * `MAX_DEPTH` levels. Bytes that are not UTF-8 are decoded as text with U+FFFD for each bad sequence.
 *
 * `known`: keys of messages the projection already holds. Those are identified but not decoded further (their
 * other fields are null and they add no warnings): the live path re-reads whole sessions to find one new message,
 * and this spares it normalising every old timestamp again. `memo`: keys computed before for this session
 * (see `messageKeys`), read and filled; a value that only appends messages to its last snapshot is decoded from the
 * appended bytes alone (see `AppendPoint`). `valueHash`: the value's `snapshotHash`, when the caller has it;
 * `takenAlong`: the hash an append is checked against, when the caller took it with the value's
 * (`snapshotHashWithPrefix`).
 */
export const decodeSnapshot = (
  sessionId: string,
  raw: string | Uint8Array,
  known: ReadonlySet<string> = new Set(),
  memo?: KeyMemo,
  valueHash?: string,
  takenAlong?: PrefixHash
): Either.Either<Snapshot, Rejection> => {
  try {
    // Only a memo needs the exact bytes: to decode from the appended ones, or to place where later ones go.
    const exact = memo === undefined ? undefined : exactBytes(raw)
    const point = memo?.appendPoint
    if (point !== undefined && exact !== undefined) {
      const appended = decodeAppended(sessionId, exact, known, memo!, point, valueHash, takenAlong)
      if (appended !== undefined) return Either.right(appended)
    }
    const text = typeof raw === "string" ? raw : utf8(raw, 0, raw.length)
    return decodeWhole(sessionId, text, exact, known, memo, valueHash)
  } catch (e) {
    // A document nested too deep, or (a backstop) one whose parts overflow the stack or a string's length when
    // serialised: rejected, and the rest of the batch goes on. Any other error is a defect, and is thrown.
    const limit = e instanceof RangeError && /call stack|string length/.test(e.message)
    if (!(e instanceof TooDeep || limit)) throw e
    if (memo !== undefined) memo.appendPoint = undefined
    return Either.left({ reason: e instanceof TooDeep ? e.message : `cannot be decoded: ${(e as Error).message}` })
  }
}

/** `exact`: the value's bytes, when they are exactly `raw` (see `exactBytes`). */
const decodeWhole = (
  sessionId: string,
  raw: string,
  exact: Uint8Array | undefined,
  known: ReadonlySet<string>,
  memo: KeyMemo | undefined,
  valueHash: string | undefined
): Either.Either<Snapshot, Rejection> => {
  let doc: unknown
  try {
    doc = JSON.parse(raw)
  } catch (e) {
    return Either.left({ reason: `not JSON: ${(e as Error).message}` })
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return Either.left({ reason: `the value is ${describe(doc)}, not a JSON object` })
  }
  const rawList = (doc as Record<string, unknown>).messages
  if (rawList !== undefined && rawList !== null && !Array.isArray(rawList)) {
    return Either.left({ reason: `"messages" is ${describe(rawList)}, not an array` })
  }
  refuseDeeperThan(doc, raw, MAX_DEPTH)
  const warnings: Array<string> = []
  const d = mayNeedCleaning(raw) ? (cleanDeep(doc, "", warnings) as Record<string, unknown>) : doc as Record<string, unknown>
  const c: Collected = { extra: null }
  for (const field in d) {
    if (!SESSION_FIELDS.has(field)) keep(c, field, d[field])
  }
  if (d.session_id !== undefined && String(d.session_id) !== sessionId) keep(c, "session_id", d.session_id)

  let groupId: string | null = null
  if (d.group_id !== undefined && d.group_id !== null) {
    const g = canonicalInteger(d.group_id)
    if (g === undefined) {
      warnings.push(`group_id: ${preview(d.group_id)} is not an integer id; kept in extra`)
      keep(c, "group_id", d.group_id)
    } else {
      groupId = g
    }
  }
  let createdBy: string | null = null
  if (d.created_by !== undefined && d.created_by !== null) {
    const u = externalId(d.created_by)
    if (u === undefined) {
      warnings.push(`created_by: ${preview(d.created_by)} is not an id; kept in extra`)
      keep(c, "created_by", d.created_by)
    } else {
      createdBy = u
    }
  }
  const meta: SessionMeta = {
    topic: text(d.topic, "topic", warnings),
    groupId,
    createdBy,
    createdAt: instant(d.created_at, "created_at", "created_at", c, warnings),
    updatedAt: instant(d.updated_at, "updated_at", "updated_at", c, warnings),
    extra: c.extra
  }
  const rawMessages = (d.messages ?? []) as ReadonlyArray<unknown>
  const keys = messageKeys(sessionId, rawMessages.map(identityOf), memo)
  if (memo !== undefined) {
    memo.appendPoint = exact === undefined ? undefined : appendPoint(
      raw,
      exact,
      valueHash ?? snapshotHash(exact),
      meta,
      warnings.length === 0 ? NO_WARNINGS : warnings.slice()
    )
  }
  const messages = rawMessages.map((m, i): SnapshotMessage => {
    const key = keys[i]!
    if (known.has(key)) return knownMessage(key)
    const d = messageDetails(m, i, warnings)
    return { key, sender: d.sender, content: d.content, sentAt: d.sentAt, extra: d.extra }
  })
  return Either.right({ sessionId, meta, messages, warnings })
}
