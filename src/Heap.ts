/**
 * How far the V8 heap may grow between full collections.
 *
 * After each full collection V8 lets the heap grow by a factor of its own choosing, up to four times what is live.
 * Under a burst of updates that made the daemon's resident memory three to four times its live heap (600 MB for
 * 150 MB live, `bench/live --rate 20000`). A fixed factor bounds it without a hard limit on the heap, which one
 * huge session could hit (and the process would die). V8 reads the flag at every collection, so setting it at
 * start-up takes effect; one given on the command line or in NODE_OPTIONS wins.
 */
import { setFlagsFromString } from "node:v8"

/** Growth allowed after a full collection, in percent of the heap then live. */
export const HEAP_GROWING_PERCENT = 50

/** The V8 flag to set, or undefined when the command line or NODE_OPTIONS already sets the growth. */
export const heapGrowthFlag = (execArgv: ReadonlyArray<string>, nodeOptions: string | undefined): string | undefined =>
  [...execArgv, nodeOptions ?? ""].some((arg) => arg.includes("--heap-growing-percent"))
    ? undefined
    : `--heap-growing-percent=${HEAP_GROWING_PERCENT}`

/** Sets the flag for this process (see the module doc). */
export const boundHeapGrowth = (): void => {
  const flag = heapGrowthFlag(process.execArgv, process.env.NODE_OPTIONS)
  if (flag !== undefined) setFlagsFromString(flag)
}
