import { assert, describe, it } from "@effect/vitest"
import type { RowChanges } from "../../src/core/Project.js"
import { forgetOnSwap, makeSharedRows } from "../../src/pg/SessionStore.js"

const changes = (users: Array<string>, groups: Array<string>, participants: Array<readonly [string, string]>): RowChanges => ({
  users: users.map((id) => ({ id, externalId: id, displayName: `User ${id}`, email: null })),
  groups,
  participants,
  sessionUpserts: [],
  stamps: [],
  appended: { seqs: [], senders: {}, bySession: new Map(), count: 0 },
  touches: [],
  rejections: [],
  accepted: [],
  maxSeq: 1
})
const named = (c: RowChanges) => [c.users.map((u) => u.id), c.groups, c.participants.map(([g, u]) => `${g}/${u}`)]

describe("SessionStore.makeSharedRows", () => {
  it("skips rows seen committed, until a clear or its age make it forget them", () => {
    let now = 0
    const shared = makeSharedRows(1000, 60_000, () => now)
    const batch = changes(["1", "2"], ["7"], [["7", "1"], ["7", "2"]])
    assert.deepStrictEqual(named(shared.unseen(batch)), [["1", "2"], ["7"], ["7/1", "7/2"]])
    shared.remember(batch)
    assert.deepStrictEqual(named(shared.unseen(batch)), [[], [], []])
    // Only what is new is written.
    assert.deepStrictEqual(named(shared.unseen(changes(["1", "3"], ["7", "8"], [["8", "3"]]))), [["3"], ["8"], ["8/3"]])
    // Past its age it forgets, so that a row deleted by hand (a sender, which no foreign key guards) comes back.
    now = 60_001
    assert.deepStrictEqual(named(shared.unseen(batch)), [["1", "2"], ["7"], ["7/1", "7/2"]])
    shared.remember(batch)
    assert.deepStrictEqual(named(shared.unseen(batch)), [[], [], []])
    shared.clear()
    assert.deepStrictEqual(named(shared.unseen(batch)), [["1", "2"], ["7"], ["7/1", "7/2"]])
  })

  it("holds at most its limit: past it, it forgets everything before remembering more", () => {
    const shared = makeSharedRows(3, 60_000, () => 0)
    shared.remember(changes(["1", "2"], ["7"], [["7", "1"]]))
    assert.deepStrictEqual(named(shared.unseen(changes(["1"], [], []))), [[], [], []])
    shared.remember(changes(["3"], [], []))
    assert.deepStrictEqual(named(shared.unseen(changes(["1", "3"], [], []))), [["1"], [], []])
  })

  it("forgets, through forgetOnSwap, whenever another sessions table is seen (a rebuild swapped it in)", () => {
    const shared = makeSharedRows(1000, 60_000, () => 0)
    const bindTo = forgetOnSwap(shared.clear)
    const batch = changes(["1"], ["7"], [["7", "1"]])
    bindTo("100")
    shared.remember(batch)
    bindTo("100")
    assert.deepStrictEqual(named(shared.unseen(batch)), [[], [], []])
    bindTo("200")
    assert.deepStrictEqual(named(shared.unseen(batch)), [["1"], ["7"], ["7/1"]])
    shared.remember(batch)
    bindTo("200")
    assert.deepStrictEqual(named(shared.unseen(batch)), [[], [], []])
  })
})
