// Samples what a Node program allocates, including what the garbage collector has freed since (`node
// --heap-prof` keeps only what is still alive at the end, which hides the churn that costs collections). Loaded
// before the program, it samples for ALLOC_SAMPLE_MS (default 20000) and writes ALLOC_SAMPLE_OUT (default
// alloc.heapprofile); the program runs on. Read the file with profile-top.mjs, which names frames of dist/main.js by
// their sources.
//
//   ALLOC_SAMPLE_MS=20000 node --import ./bench/tools/alloc-sample.mjs dist/main.js sync --json
//   node bench/tools/profile-top.mjs alloc.heapprofile --top 30
import { writeFileSync } from "node:fs"
import inspector from "node:inspector"

const ms = Number(process.env.ALLOC_SAMPLE_MS ?? 20000)
const out = process.env.ALLOC_SAMPLE_OUT ?? "alloc.heapprofile"
const session = new inspector.Session()
session.connect()
session.post("HeapProfiler.enable")
session.post("HeapProfiler.startSampling", {
  samplingInterval: 16384,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true
})
setTimeout(() => {
  session.post("HeapProfiler.stopSampling", (error, result) => {
    if (error) console.error(`alloc-sample: ${error.message}`)
    else writeFileSync(out, JSON.stringify(result.profile))
    console.error(`alloc-sample: ${ms} ms of allocations written to ${out}`)
    session.disconnect()
  })
}, ms).unref()
