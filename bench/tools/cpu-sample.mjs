#!/usr/bin/env node
// Runs a command and samples, each second, the CPU its main thread and its whole process take, and all PostgreSQL
// processes' together (from /proc, in cores); prints 5 s averages and the run's, then the command's last output
// line. Is a sync's JavaScript thread the bottleneck, or PostgreSQL, or neither (then: latency, locks)?
//
//   node bench/tools/cpu-sample.mjs -- node dist/main.js sync --json
import { spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

const dash = process.argv.indexOf("--")
const command = process.argv.slice(dash + 1)
if (dash < 0 || command.length === 0) {
  console.error("usage: node bench/tools/cpu-sample.mjs -- COMMAND [ARGS...]")
  process.exit(2)
}
const TICKS = 100 // USER_HZ
const cpuOf = (statPath) => {
  try {
    const stat = readFileSync(statPath, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / TICKS
  } catch {
    return 0
  }
}
/** CPU seconds of each PostgreSQL process, by pid. */
const postgresCpu = () => {
  const byPid = new Map()
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres") byPid.set(pid, cpuOf(`/proc/${pid}/stat`))
    } catch {
      // gone meanwhile
    }
  }
  return byPid
}
/**
 * PostgreSQL's CPU between two readings: what each process now running took since the last one (all of it, for a
 * process started since). A process that exits takes its total with it: summed, it made the whole interval
 * negative (a backend or autovacuum worker ending), and a run's mean read as nothing.
 */
const postgresDelta = (before, now) => {
  let sum = 0
  for (const [pid, cpu] of now) sum += cpu - (before.get(pid) ?? 0)
  return sum
}
const child = spawn(command[0], command.slice(1), { stdio: ["ignore", "pipe", "inherit"], env: process.env })
let output = ""
child.stdout.on("data", (d) => (output += d))
const started = Date.now()
let last = { main: 0, proc: 0, pg: postgresCpu(), at: started }
const rows = []
const timer = setInterval(() => {
  const at = Date.now()
  const main = cpuOf(`/proc/${child.pid}/task/${child.pid}/stat`)
  const proc = cpuOf(`/proc/${child.pid}/stat`)
  const pg = postgresCpu()
  const dt = (at - last.at) / 1000
  rows.push([(at - started) / 1000, (main - last.main) / dt, (proc - last.proc) / dt, postgresDelta(last.pg, pg) / dt])
  last = { main, proc, pg, at }
}, 1000)
child.on("exit", (code) => {
  clearInterval(timer)
  const mean = (part, k) => (part.reduce((sum, r) => sum + r[k], 0) / Math.max(part.length, 1)).toFixed(2)
  for (let i = 0; i < rows.length; i += 5) {
    const part = rows.slice(i, i + 5)
    console.log(`${rows[i][0].toFixed(0).padStart(4)} s  main thread ${mean(part, 1)}  process ${mean(part, 2)}  PostgreSQL ${mean(part, 3)}`)
  }
  console.log(`run: main thread ${mean(rows, 1)}, process ${mean(rows, 2)}, PostgreSQL ${mean(rows, 3)} cores over ${((Date.now() - started) / 1000).toFixed(1)} s; exit ${code}`)
  console.log(output.trim().split("\n").pop()?.slice(0, 400) ?? "")
})
