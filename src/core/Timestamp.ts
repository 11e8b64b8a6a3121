/**
 * Lenient timestamps: what the application writes is ISO-8601 with or without a zone, epoch seconds or epoch
 * milliseconds, and sometimes garbage. Every accepted shape is normalised to one UTC form with microseconds,
 * `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which PostgreSQL casts to `timestamptz` without loss.
 */

/** A normalised UTC instant: `iso` is what goes into events and PostgreSQL, `micros` orders instants. */
export interface Instant {
  readonly iso: string
  readonly micros: number
}

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?$/

/** Epoch values at or above this are taken as milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
const MILLIS_THRESHOLD = 1e11

const fromEpochMicros = (micros: number): Instant | undefined => {
  const ms = Math.floor(micros / 1000)
  const date = new Date(ms)
  const year = date.getUTCFullYear()
  // An instant beyond Date's range gives an invalid Date (year NaN), on which toISOString throws.
  if (!Number.isFinite(ms) || !(year >= 1 && year <= 9999)) return undefined
  const microsInSecond = (((ms % 1000) + 1000) % 1000) * 1000 + (micros - ms * 1000)
  const iso = date.toISOString()
  return { iso: `${iso.slice(0, 19)}.${String(microsInSecond).padStart(6, "0")}Z`, micros }
}

const fromEpochNumber = (n: number): Instant | undefined => {
  if (!Number.isFinite(n)) return undefined
  const micros = Math.abs(n) >= MILLIS_THRESHOLD ? Math.round(n * 1000) : Math.round(n * 1_000_000)
  return fromEpochMicros(micros)
}

const pad2 = (n: number) => (n < 10 ? "0" : "") + n

const daysInMonth = (year: number, month: number): number =>
  month === 2
    ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28)
    : month === 4 || month === 6 || month === 9 || month === 11
    ? 30
    : 31

/** A date that exists and a time of day (no leap second); negative parts (unreadable digits) are not. */
const isCalendarTime = (year: number, month: number, day: number, hour: number, minute: number, second: number) =>
  month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month) && hour >= 0 && hour <= 23 &&
  minute >= 0 && minute <= 59 && second >= 0 && second <= 59

const fromIsoString = (s: string): Instant | undefined => {
  const m = ISO.exec(s)
  if (m === null) return undefined
  const [, y, mo, d, h = "00", mi = "00", sec = "00", frac = "", zone] = m
  const year = Number(y), month = Number(mo), day = Number(d), hour = Number(h), minute = Number(mi)
  const second = Number(sec)
  if (year < 1 || !isCalendarTime(year, month, day, hour, minute, second)) return undefined
  // Date.UTC maps years 0–99 to 1900–1999; shift such years by 400 (same calendar) and back.
  const shift = year < 100 ? 400 : 0
  const wholeMs = Date.UTC(year + shift, month - 1, day, hour, minute, second) - (shift ? 12_622_780_800_000 : 0)
  let offsetMinutes = 0
  if (zone !== undefined && zone !== "Z" && zone !== "z" && zone !== "UTC") {
    const sign = zone[0] === "-" ? -1 : 1
    const digits = zone.slice(1).replace(":", "")
    const oh = Number(digits.slice(0, 2)), om = Number(digits.slice(2) || "0")
    if (oh > 23 || om > 59) return undefined
    offsetMinutes = sign * (oh * 60 + om)
  }
  const fraction = frac.length === 6 ? frac : frac.slice(0, 6).padEnd(6, "0")
  const micros = (wholeMs - offsetMinutes * 60_000) * 1000 + Number(fraction)
  if (offsetMinutes !== 0 || year < 1000) return fromEpochMicros(micros)
  // The common case, already UTC: build the string from the parts, no Date formatting needed.
  const iso = `${y}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}.${fraction}Z`
  return { iso, micros }
}

/** The number written by `count` ASCII digits of `s` at `at`, or -1 when one of them is not a digit. */
const digitsAt = (s: string, at: number, count: number): number => {
  let value = 0
  for (let i = at; i < at + count; i++) {
    const d = s.charCodeAt(i) - 48
    if (d < 0 || d > 9) return -1
    value = value * 10 + d
  }
  return value
}

/**
 * The shapes nearly every timestamp has — Python's `isoformat()` in UTC (`2025-01-02T03:04:05.678901+00:00`), its
 * `Z` form, and JavaScript's `toISOString()` (`2025-01-02T03:04:05.678Z`) — read without a regular expression.
 * Returns null for anything else, including an impossible date, which the general parser then judges.
 */
const fromCommonUtc = (s: string): Instant | null => {
  const n = s.length
  const fracLength = n === 32 || n === 27 ? 6 : n === 24 ? 3 : 0
  if (fracLength === 0) return null
  if (n === 32 ? !s.endsWith("+00:00") : s.charCodeAt(n - 1) !== 90 /* Z */) return null
  if (s[4] !== "-" || s[7] !== "-" || s[10] !== "T" || s[13] !== ":" || s[16] !== ":" || s[19] !== ".") return null
  const year = digitsAt(s, 0, 4), month = digitsAt(s, 5, 2), day = digitsAt(s, 8, 2)
  const hour = digitsAt(s, 11, 2), minute = digitsAt(s, 14, 2), second = digitsAt(s, 17, 2)
  const fraction = digitsAt(s, 20, fracLength)
  if (year < 1000 || fraction < 0 || !isCalendarTime(year, month, day, hour, minute, second)) return null
  const micros = Date.UTC(year, month - 1, day, hour, minute, second) * 1000 +
    (fracLength === 6 ? fraction : fraction * 1000)
  const iso = n === 27 ? s : fracLength === 6 ? `${s.slice(0, 26)}Z` : `${s.slice(0, 23)}000Z`
  return { iso, micros }
}

/**
 * Normalises a timestamp value from a session document. Strings without a zone are taken as UTC; numbers (and
 * all-digit strings) are epoch seconds, or milliseconds when at least 1e11. Returns `undefined` for anything
 * that is not a plausible instant in the years 1–9999; the caller keeps the raw value and counts a warning.
 */
export const normalizeTimestamp = (value: unknown): Instant | undefined => {
  if (typeof value === "number") return fromEpochNumber(value)
  if (typeof value !== "string") return undefined
  const common = fromCommonUtc(value)
  if (common !== null) return common
  const s = value.trim()
  if (/^-?\d+(\.\d+)?$/.test(s)) return fromEpochNumber(Number(s))
  return fromIsoString(s)
}

/** The micros of an `Instant.iso` string produced by {@link normalizeTimestamp}. */
export const isoToMicros = (iso: string): number => {
  const ms = Date.parse(iso.slice(0, 19) + "Z")
  return ms * 1000 + Number(iso.slice(20, 26))
}
