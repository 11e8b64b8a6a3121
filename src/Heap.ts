/**
 * How far the V8 heap may grow between full collections (`SYNC_HEAP_GROWTH_PERCENT`).
 *
 * After each full collection V8 lets the heap grow by a factor of its own choosing, up to four times what is live.
 * Under a burst of updates that made the daemon's resident memory three to four times its live heap (600 MB for
 * 150 MB live, `bench/live --rate 20000`). A fixed factor bounds it without a hard limit on the heap, which one
 * huge session could hit (and the process would die); the price is more frequent collections. V8 reads the flag at
 * every collection, so setting it at start-up takes effect. Node refuses it in NODE_OPTIONS; one given on the
 * command line (`node --heap-growing-percent=N dist/main.js`) wins over the variable.
 *
 * The default bound is the daemon's (`start`), which runs for weeks within a memory budget. A one-shot command
 * (`sync`, `rebuild`, …) is bounded only when the variable is set: in a full sync of 100,000 × 20 messages the bound
 * of 50 % set off a full collection every half second. Under V8's own growth the sync process took 0.72–0.74 of a
 * core instead of 0.81–0.83 (alternating runs), for a peak RSS of 314–333 MB instead of 202–205 MB; its time moved
 * about as much as the machine's noise (median 66 against 71.5 s over the day's runs; pairs 62/71, 66/66, 71/71,
 * 65/71 s).
 */
import { Config, ConfigProvider, Effect, Option } from "effect"
import { setFlagsFromString } from "node:v8"
import { HEAP_GROWTH_PERCENT, heapGrowthSetting } from "./Config.js"

/**
 * `SYNC_HEAP_GROWTH_PERCENT` as the configuration reads it; undefined when unset, or when invalid: the command's
 * configuration then stops it, naming the variable.
 */
export const heapGrowthPercent = (provider: ConfigProvider.ConfigProvider = ConfigProvider.fromEnv()): number | undefined =>
  Effect.runSync(
    Config.option(heapGrowthSetting).pipe(
      Effect.map(Option.getOrUndefined),
      Effect.orElseSucceed(() => undefined),
      Effect.withConfigProvider(provider)
    )
  )

/**
 * The V8 flag for a growth of `percent` (as set; undefined when unset) in the daemon (`daemon`) or a one-shot command,
 * or undefined: when the command line sets the growth, when the growth is 0, or when it is unset in a one-shot
 * command (the daemon's fallback is `HEAP_GROWTH_PERCENT.fallback`).
 */
export const heapGrowthFlag = (
  execArgv: ReadonlyArray<string>,
  percent: number | undefined,
  daemon: boolean
): string | undefined => {
  if (execArgv.some((arg) => arg.startsWith("--heap-growing-percent"))) return undefined
  if (percent === undefined && !daemon) return undefined
  const growth = percent ?? HEAP_GROWTH_PERCENT.fallback
  return growth === 0 ? undefined : `--heap-growing-percent=${growth}`
}

/**
 * Sets the flag for this process (see the module doc): at start-up for any command, with the variable as set, and
 * again when the daemon starts, with its configured value.
 */
export const boundHeapGrowth = (percent: number | undefined, daemon: boolean): void => {
  const flag = heapGrowthFlag(process.execArgv, percent, daemon)
  if (flag !== undefined) setFlagsFromString(flag)
}

/**
 * The young generation's bound, given to node on its command line where the daemon is run (`npm start`, the Docker
 * image's entry point, `bench/live`): V8 reads it only when the heap is set up, so it cannot be set from here.
 * Node's default lets each of the two semi-spaces grow to 16 MB; at 8 MB, a 20,000 updates/s burst peaked 15–20 MB
 * lower in resident memory (265–283 against 285–307 MB), at the same CPU per update. Elsewhere
 * (`npx redis-pg-sync start`), `NODE_OPTIONS=--max-semi-space-size=8` does the same.
 */
export const YOUNG_GENERATION_FLAG = "--max-semi-space-size=8"

/**
 * The collector on the main thread alone, given to node on its command line with `YOUNG_GENERATION_FLAG` (node
 * refuses it in NODE_OPTIONS, and set from here V8 aborts at the next collection). On two cores shared with
 * PostgreSQL and Redis, V8's helper threads took 0.42 of a core at 5,000 updates/s (parallel scavenges, concurrent
 * marking) and mostly waited for a CPU, as the main thread did: without them the daemon took 179–181 against
 * 203–207 µs of CPU per update (`bench/live`, alternating runs), and a 20,000/s burst 50 against 57 µs, peaking at
 * 270 MB. A one-shot full sync, whose bottleneck is PostgreSQL, was no faster with it (64.0/68.2 against
 * 64.0/64.5 s, alternating): `npm start` and `bench/live` give it to the daemon alone; the image's entry point gives it
 * to every command it runs. Where spare cores are, `--no-single-threaded-gc` after it undoes it.
 */
export const GC_THREADS_FLAG = "--single-threaded-gc"

/** Node's flags wherever the daemon is run: `npm start`, the Docker image's entry point, `bench/live`. */
export const DAEMON_NODE_FLAGS = [YOUNG_GENERATION_FLAG, GC_THREADS_FLAG] as const
