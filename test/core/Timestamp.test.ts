import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { isoToMicros, normalizeTimestamp } from "../../src/core/Timestamp.js"

const iso = (value: unknown): string | undefined => normalizeTimestamp(value)?.iso

describe("Timestamp.normalizeTimestamp", () => {
  describe("ISO-8601 strings", () => {
    it("a UTC time with Z is kept as is, with microseconds spelled out", () => {
      assert.deepStrictEqual(normalizeTimestamp("2025-06-01T10:05:00Z"), {
        iso: "2025-06-01T10:05:00.000000Z",
        micros: 1_748_772_300_000_000
      })
    })

    it("a time without a zone is taken as UTC", () => {
      assert.strictEqual(iso("2025-06-01T10:00:03"), "2025-06-01T10:00:03.000000Z")
      assert.strictEqual(iso("2024-06-01T08:00:03.250"), "2024-06-01T08:00:03.250000Z")
    })

    it("an offset is converted to UTC", () => {
      assert.strictEqual(iso("2025-06-01T10:01:00+02:00"), "2025-06-01T08:01:00.000000Z")
      assert.strictEqual(iso("2025-06-01T10:00:00-05:30"), "2025-06-01T15:30:00.000000Z")
      assert.strictEqual(iso("2025-06-01T10:00:00+0530"), "2025-06-01T04:30:00.000000Z")
      assert.strictEqual(iso("2025-06-01T10:00:00+02"), "2025-06-01T08:00:00.000000Z")
      assert.strictEqual(iso("2025-01-01T00:00:00-00:30"), "2025-01-01T00:30:00.000000Z")
    })

    it("an offset that crosses midnight moves the date", () => {
      assert.strictEqual(iso("2025-01-01T01:00:00+02:00"), "2024-12-31T23:00:00.000000Z")
    })

    it("the same instant written in two zones normalises to the same value", () => {
      assert.deepStrictEqual(normalizeTimestamp("2025-06-01T10:00:00+02:00"), normalizeTimestamp("2025-06-01T08:00:00Z"))
    })

    it("UTC zone spellings: Z, z, +00:00, UTC after a space", () => {
      const expected = "2025-06-01T10:00:00.000000Z"
      assert.strictEqual(iso("2025-06-01T10:00:00z"), expected)
      assert.strictEqual(iso("2025-06-01T10:00:00+00:00"), expected)
      assert.strictEqual(iso("2025-06-01 10:00:00 UTC"), expected)
    })

    it("a space may separate date and time, and seconds may be left out", () => {
      assert.strictEqual(iso("2025-06-01 10:00"), "2025-06-01T10:00:00.000000Z")
    })

    it("a date alone is midnight UTC", () => {
      assert.strictEqual(iso("2025-06-01"), "2025-06-01T00:00:00.000000Z")
    })

    it("microsecond precision is kept", () => {
      assert.deepStrictEqual(normalizeTimestamp("2025-01-02T03:04:05.678901+00:00"), {
        iso: "2025-01-02T03:04:05.678901Z",
        micros: 1_735_787_045_678_901
      })
    })

    it("a short fraction is padded, a comma is a decimal mark, digits past microseconds are truncated", () => {
      assert.strictEqual(iso("2025-01-02T03:04:05.5Z"), "2025-01-02T03:04:05.500000Z")
      assert.strictEqual(iso("2025-01-02T03:04:05,25Z"), "2025-01-02T03:04:05.250000Z")
      assert.strictEqual(iso("2025-01-02T03:04:05.123456789Z"), "2025-01-02T03:04:05.123456Z")
    })

    it("surrounding whitespace is ignored", () => {
      assert.strictEqual(iso("  2025-06-01T10:00:00Z \n"), "2025-06-01T10:00:00.000000Z")
    })

    it("a leap day is a date in a leap year only", () => {
      assert.strictEqual(iso("2024-02-29T12:00:00Z"), "2024-02-29T12:00:00.000000Z")
      assert.strictEqual(normalizeTimestamp("2025-02-29T12:00:00Z"), undefined)
    })

    it("instants before 1970 and at the ends of years 1–9999 are accepted", () => {
      assert.deepStrictEqual(normalizeTimestamp("1969-12-31T23:59:59.999999Z"), {
        iso: "1969-12-31T23:59:59.999999Z",
        micros: -1
      })
      assert.strictEqual(iso("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00.000000Z")
      assert.strictEqual(iso("9999-12-31T23:59:59Z"), "9999-12-31T23:59:59.000000Z")
    })

    it("the common shapes (Python isoformat in UTC, its Z form, toISOString) read as the general parser reads them", () => {
      const two = (n: number) => String(n).padStart(2, "0")
      const shapes = FastCheck.record({
        year: FastCheck.integer({ min: 1, max: 9999 }),
        month: FastCheck.integer({ min: 0, max: 13 }),
        day: FastCheck.integer({ min: 0, max: 32 }),
        hour: FastCheck.integer({ min: 0, max: 24 }),
        minute: FastCheck.integer({ min: 0, max: 60 }),
        second: FastCheck.integer({ min: 0, max: 60 }),
        micros: FastCheck.integer({ min: 0, max: 999_999 }),
        shape: FastCheck.constantFrom("python", "z", "js")
      })
      FastCheck.assert(FastCheck.property(shapes, (t) => {
        const stem = `${String(t.year).padStart(4, "0")}-${two(t.month)}-${two(t.day)}T${two(t.hour)}:${two(t.minute)}:${two(t.second)}`
        const micros = String(t.micros).padStart(6, "0")
        const s = t.shape === "python" ? `${stem}.${micros}+00:00` : t.shape === "z" ? `${stem}.${micros}Z` : `${stem}.${micros.slice(0, 3)}Z`
        // Leading whitespace takes the general path (the fast one reads exact shapes only).
        assert.deepStrictEqual(normalizeTimestamp(s), normalizeTimestamp(` ${s}`), s)
      }), { numRuns: 2000 })
      assert.deepStrictEqual(normalizeTimestamp("2025-01-02T03:04:05.678901+00:00"), {
        iso: "2025-01-02T03:04:05.678901Z",
        micros: Date.UTC(2025, 0, 2, 3, 4, 5) * 1000 + 678_901
      })
      assert.strictEqual(iso("2025-01-02T03:04:05.678Z"), "2025-01-02T03:04:05.678000Z")
      assert.strictEqual(normalizeTimestamp("2025-02-30T03:04:05.678Z"), undefined)
    })
  })

  describe("epoch numbers", () => {
    it("a number below 1e11 is epoch seconds", () => {
      assert.deepStrictEqual(normalizeTimestamp(1_717_228_800), {
        iso: "2024-06-01T08:00:00.000000Z",
        micros: 1_717_228_800_000_000
      })
    })

    it("a number of 1e11 or more is epoch milliseconds", () => {
      assert.deepStrictEqual(normalizeTimestamp(1_717_228_802_123), {
        iso: "2024-06-01T08:00:02.123000Z",
        micros: 1_717_228_802_123_000
      })
    })

    it("the seconds/milliseconds threshold is 1e11", () => {
      assert.strictEqual(iso(99_999_999_999), "5138-11-16T09:46:39.000000Z")
      assert.strictEqual(iso(100_000_000_000), "1973-03-03T09:46:40.000000Z")
    })

    it("fractional epoch seconds keep their microseconds", () => {
      assert.strictEqual(iso(1_717_228_801.5), "2024-06-01T08:00:01.500000Z")
      assert.strictEqual(iso(1_717_228_801.000123), "2024-06-01T08:00:01.000123Z")
    })

    it("an all-digit string is an epoch number too", () => {
      assert.strictEqual(iso("1717228801"), "2024-06-01T08:00:01.000000Z")
      assert.strictEqual(iso("1717228802123"), "2024-06-01T08:00:02.123000Z")
      assert.strictEqual(iso(" 1717228801.25 "), "2024-06-01T08:00:01.250000Z")
    })

    it("negative epoch numbers are instants before 1970", () => {
      assert.deepStrictEqual(normalizeTimestamp(-1), { iso: "1969-12-31T23:59:59.000000Z", micros: -1_000_000 })
      assert.deepStrictEqual(normalizeTimestamp(-0.5), { iso: "1969-12-31T23:59:59.500000Z", micros: -500_000 })
    })
  })

  describe("what is not a time gives undefined (the caller keeps the raw value)", () => {
    it("garbage strings", () => {
      for (const garbage of ["yesterday-ish", "", "   ", "2025-06-01T", "June 1st, 2025", "2025/06/01 10:00", "12:00"]) {
        assert.strictEqual(normalizeTimestamp(garbage), undefined, JSON.stringify(garbage))
      }
    })

    it("dates and times out of range", () => {
      for (
        const bad of [
          "2025-13-01T00:00:00Z",
          "2025-00-10T00:00:00Z",
          "2025-04-31T00:00:00Z",
          "2025-06-00T00:00:00Z",
          "2025-06-01T24:00:00Z",
          "2025-06-01T10:60:00Z",
          "2025-06-01T10:00:60Z",
          "2025-06-01T10:00:00+24:00",
          "2025-06-01T10:00:00+02:60",
          "0000-01-01T00:00:00Z",
          "2025-06-01T10:00:00.1234567891Z"
        ]
      ) {
        assert.strictEqual(normalizeTimestamp(bad), undefined, bad)
      }
    })

    it("values that are neither strings nor numbers", () => {
      for (const bad of [null, undefined, true, {}, [], [2025, 6, 1], { $date: "2025-06-01" }]) {
        assert.strictEqual(normalizeTimestamp(bad), undefined, JSON.stringify(bad))
      }
    })

    it("non-finite numbers", () => {
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        assert.strictEqual(normalizeTimestamp(bad), undefined, String(bad))
      }
    })

    it("epoch values past year 9999", () => {
      assert.strictEqual(normalizeTimestamp(253_402_300_800_000), undefined)
      assert.strictEqual(normalizeTimestamp(-62_135_596_800_001), undefined)
    })

    it("epoch values beyond the range of Date give undefined instead of throwing", () => {
      for (const huge of [1e16, -1e16, 8.64e15 + 1, 1e300, "99999999999999999", "-99999999999999999"]) {
        assert.strictEqual(normalizeTimestamp(huge), undefined, String(huge))
      }
    })
  })
})

describe("Timestamp.isoToMicros", () => {
  it("reads back the micros of every normalised instant", () => {
    for (
      const value of [
        "2025-01-02T03:04:05.678901+00:00",
        "1969-12-31T23:59:59.999999Z",
        "2025-06-01T10:01:00+02:00",
        "0001-01-01T00:00:00Z",
        1_717_228_802_123,
        -1
      ]
    ) {
      const t = normalizeTimestamp(value)!
      assert.strictEqual(isoToMicros(t.iso), t.micros, String(value))
    }
  })

  it("orders instants the way time does", () => {
    const earlier = normalizeTimestamp("2025-06-01T10:00:00+02:00")!
    const later = normalizeTimestamp("2025-06-01T08:00:00.000001Z")!
    assert.isBelow(earlier.micros, later.micros)
    assert.strictEqual(later.micros - earlier.micros, 1)
  })
})

describe("Timestamp properties", () => {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0")
  /** `instantMs` written as local time at `offsetMinutes`, e.g. `2025-06-01T12:00:00.123+02:00`. */
  const render = (instantMs: number, offsetMinutes: number, micros: number): string => {
    const local = new Date(instantMs + offsetMinutes * 60_000).toISOString().slice(0, 23)
    const sign = offsetMinutes < 0 ? "-" : "+"
    const abs = Math.abs(offsetMinutes)
    return `${local}${pad(micros, 3)}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  }

  it.prop(
    "any instant of 1700–2250 written in any offset normalises to its UTC form, to the microsecond",
    [
      FastCheck.integer({ min: Date.UTC(1700, 0, 1), max: Date.UTC(2250, 0, 1) }),
      FastCheck.integer({ min: -14 * 60, max: 14 * 60 }),
      FastCheck.integer({ min: 0, max: 999 })
    ],
    ([ms, offset, micros]) => {
      const utc = `${new Date(ms).toISOString().slice(0, 23)}${pad(micros, 3)}Z`
      const t = normalizeTimestamp(render(ms, offset, micros))
      assert.deepStrictEqual(t, { iso: utc, micros: ms * 1000 + micros })
      assert.strictEqual(isoToMicros(utc), ms * 1000 + micros)
    }
  )
})
