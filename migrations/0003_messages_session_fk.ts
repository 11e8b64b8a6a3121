/**
 * `messages.session_id` loses its foreign key (see README, "Where this differs from DESIGN.md"): every message is
 * inserted by one statement that finds its session by a join in the same transaction, and no code path deletes a
 * session or changes its id, so the per-row check only repeated what the insert had just proved — at 6 µs a row,
 * a fifth of PostgreSQL's time in a full sync. A session row deleted by hand shows in `verify`, and `rebuild`
 * restores it. The unique index on `(session_id, message_key)` still serves lookups by session.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_session_id_fkey`
})
