import { assert, describe, it } from "@effect/vitest"
import { classify } from "../../src/pg/PgError.js"

const pgError = (code: string, message = "boom") => Object.assign(new Error(message), { code })

describe("PgError.classify", () => {
  it("retries what says nothing about the data: lost connections, timeouts, locks not granted, a standby", () => {
    for (const code of ["08006", "53300", "57P01", "57014", "55P03", "25006", "40001", "40P01", "ECONNRESET"]) {
      assert.strictEqual(classify(pgError(code)).reason, "connection", code)
    }
  })

  it("rejects the session on what is about the data", () => {
    for (const code of ["22P02", "22021", "23505", "23514", "54000"]) {
      assert.strictEqual(classify(pgError(code)).reason, "data", code)
    }
  })

  it("stops on anything else (a bug or a misconfiguration), naming the SQLSTATE", () => {
    const e = classify(pgError("42P01", 'relation "sessions" does not exist'))
    assert.strictEqual(e.reason, "other")
    assert.strictEqual(e.message, 'relation "sessions" does not exist (SQLSTATE 42P01)')
  })
})
