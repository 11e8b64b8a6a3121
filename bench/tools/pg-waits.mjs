#!/usr/bin/env node
// Samples what the other backends of DATABASE_URL's database are doing, every 50 ms for SECONDS (default 30), and
// prints the states and wait events seen, with the average number of backends in each: is a sync waiting on
// PostgreSQL (active), on locks (Lock:…), on WAL flushes (IO:WALSync), or on its own client (idle in transaction)?
//
//   DATABASE_URL=… node bench/tools/pg-waits.mjs [SECONDS]      (run it beside the sync being measured)
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), "../../package.json"))
const pg = require("pg")
const client = new pg.Client({ connectionString: process.env.DATABASE_URL })
await client.connect()
const tally = new Map()
let samples = 0
const stop = Date.now() + Number(process.argv[2] ?? 30) * 1000
while (Date.now() < stop) {
  const { rows } = await client.query(`
    SELECT state, wait_event_type, wait_event, left(query, 30) AS q FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()`)
  for (const r of rows) {
    const what = r.state === "active" || r.wait_event_type === "Lock" ? r.q.replace(/\s+/g, " ") : ""
    const key = `${r.state} | ${r.wait_event_type ?? "-"}:${r.wait_event ?? "-"} | ${what}`
    tally.set(key, (tally.get(key) ?? 0) + 1)
  }
  samples++
  await new Promise((resolve) => setTimeout(resolve, 50))
}
console.log(`${samples} samples; backends on average, by state | wait event | statement`)
for (const [key, n] of [...tally].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${(n / samples).toFixed(2).padStart(6)}  ${key}`)
await client.end()
