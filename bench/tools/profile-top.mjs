#!/usr/bin/env node
// Summarises a V8 CPU profile (`node --cpu-prof`, or BENCH_DAEMON_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" with
// bench/live.mjs): self time by function and by file or package, and, with --incl NAME..., the inclusive time of the
// functions whose label contains one of the names (inclusive time stops at Effect's fiber boundaries). Given a
// sampling heap profile (`.heapprofile`, from alloc-sample.mjs), the same for the bytes allocated.
//
//   node bench/tools/profile-top.mjs FILE.cpuprofile|FILE.heapprofile [--top 40] [--incl decide submit ...]
//
// Frames of a bundle with a source map beside it (dist/main.js and dist/main.js.map, as `npm run build` writes
// them) are named by their place in the sources: src/… for ours, the package's own path for a dependency's. A frame
// is placed where its function starts, so a generator's body may be named by the statement that opens it.
//
// On a saturated machine a sample also lands on whatever ran when the thread was descheduled (a `writev` that woke
// PostgreSQL, say): compare with the process's CPU time from /proc before reading the figures as CPU.
import { existsSync, readFileSync } from "node:fs"
import { SourceMap } from "node:module"
import { fileURLToPath } from "node:url"

const args = process.argv.slice(2)
const file = args[0]
if (!file) {
  console.error("usage: node bench/tools/profile-top.mjs FILE.cpuprofile [--top N] [--incl NAME ...]")
  process.exit(2)
}
const topIndex = args.indexOf("--top")
const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 40
const inclIndex = args.indexOf("--incl")
const inclNames = inclIndex >= 0 ? args.slice(inclIndex + 1).filter((a) => !a.startsWith("--")) : []

const profile = JSON.parse(readFileSync(file, "utf8"))
// A sampling heap profile (`.heapprofile`, e.g. from alloc-sample.mjs) is a tree of frames with the bytes allocated
// in each: its nodes are numbered here as a CPU profile's are, and bytes stand where microseconds would.
const heap = profile.head !== undefined
const nodes = []
if (heap) {
  let next = 0
  const flatten = (n) => {
    const node = { id: next++, callFrame: n.callFrame, selfSize: n.selfSize, children: [] }
    nodes.push(node)
    node.children = n.children.map((c) => flatten(c).id)
    return node
  }
  flatten(profile.head)
} else {
  nodes.push(...profile.nodes)
}
const byId = new Map(nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of nodes) for (const c of n.children ?? []) parent.set(c, n.id)
/** Per node: microseconds sampled (a CPU profile) or bytes allocated (a heap profile). */
const amountOf = new Map()
let total = 0
const add = (id, amount) => {
  amountOf.set(id, (amountOf.get(id) ?? 0) + amount)
  total += amount
}
if (heap) for (const n of nodes) add(n.id, n.selfSize)
else profile.samples.forEach((id, i) => add(id, profile.timeDeltas[i] ?? 0))
const unit = heap ? "MB" : "s"
const scale = 1e6 // bytes to MB, or microseconds to seconds
/** The source map of a script's URL, if a `.map` file sits beside it (read once per script). */
const maps = new Map()
const mapOf = (url) => {
  if (!url.startsWith("file://")) return undefined
  if (!maps.has(url)) {
    const path = `${fileURLToPath(url)}.map`
    maps.set(url, existsSync(path) ? new SourceMap(JSON.parse(readFileSync(path, "utf8"))) : undefined)
  }
  return maps.get(url)
}
/** Where a frame's function is: its original source and line when a source map says, else the script's. */
const placeOf = (frame) => {
  const entry = mapOf(frame.url)?.findEntry(frame.lineNumber, frame.columnNumber)
  return entry?.originalSource
    ? { url: entry.originalSource, line: entry.originalLine + 1 }
    : { url: frame.url, line: frame.lineNumber + 1 }
}
const label = (n) => {
  const { url, line } = placeOf(n.callFrame)
  return `${n.callFrame.functionName || "(anon)"} ${url.split("/").slice(-2).join("/")}:${line}`
}
const fileOf = (n) => {
  const { url } = placeOf(n.callFrame)
  const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1]
  const ours = /(?:^|\/)(src\/.*)$/.exec(url)
  return ours && !url.includes("node_modules") ? ours[1] : url.includes("/dist/") ? url.split("/dist/")[1] : url || n.callFrame.functionName
}
const self = new Map()
const files = new Map()
for (const [id, t] of amountOf) {
  const n = byId.get(id)
  self.set(label(n), (self.get(label(n)) ?? 0) + t)
  files.set(fileOf(n), (files.get(fileOf(n)) ?? 0) + t)
}
const show = (m, n) =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, t]) => `${(t / scale).toFixed(2).padStart(7)} ${unit} ${(100 * t / total).toFixed(1).padStart(5)} %  ${k}`).join("\n")
const what = heap ? "allocated" : "time"
console.log(`${(total / scale).toFixed(1)} ${unit} sampled\n\n-- self ${what} by function\n${show(self, top)}\n\n-- self ${what} by file or package\n${show(files, 25)}`)
if (inclNames.length > 0) {
  const incl = new Map()
  for (const [id, t] of amountOf) {
    const seen = new Set()
    for (let x = id; x !== undefined; x = parent.get(x)) {
      const k = label(byId.get(x))
      if (seen.has(k)) continue
      seen.add(k)
      if (inclNames.some((name) => k.includes(name))) incl.set(k, (incl.get(k) ?? 0) + t)
    }
  }
  console.log(`\n-- inclusive ${what}\n${show(incl, 60)}`)
}
