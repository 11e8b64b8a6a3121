/**
 * The HTTP API on a random port, in front of a real daemon on real Redis and PostgreSQL (the test file's own
 * schema and key prefix), and a raw client that shows status, headers and body as they went over the wire.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import * as Server from "../../src/http/Server.js"
import * as Metrics from "../../src/Metrics.js"
import { SessionStore } from "../../src/pg/SessionStore.js"
import * as Daemon from "../../src/sync/Daemon.js"
import { defaultFullSyncOptions } from "../../src/sync/FullSync.js"
import { testDaemonOptions } from "../support/DaemonOptions.js"
import { serversLayer, type TestEnv, testWriteOptions } from "../support/Servers.js"

export const fullSyncOptions = { ...defaultFullSyncOptions(testWriteOptions.retry), scanCount: 200 }

/** A quiet daemon: no keyspace notifications, reconcile hourly; the channel `{prefix}updated:{id}` works. */
export const daemonOptions = (env: TestEnv, name: string): Daemon.DaemonOptions =>
  testDaemonOptions(env, name, { keyspaceNotifications: false, fullSync: fullSyncOptions })

/** The instrumented store as it is. */
const sameStore = Layer.effect(SessionStore, SessionStore)

/**
 * Servers + instrumented services + daemon + the API on `NodeHttpServer.layerTest` (which also gives an `HttpClient`).
 * `store`, given the instrumented `SessionStore`, provides the one the daemon and the API use (and whatever else the
 * test wants of it).
 */
export const apiLayer = <ROut = never>(
  env: TestEnv,
  token?: string,
  // Without a `store`, `ROut` is `never`, and the store as it is has that type.
  store: Layer.Layer<SessionStore | ROut, never, SessionStore> = sameStore as Layer.Layer<SessionStore | ROut, never, SessionStore>
) =>
  Server.layerApi({
    fullSync: fullSyncOptions,
    keyPrefix: env.prefix,
    token: token === undefined ? Option.none() : Option.some(Redacted.make(token))
  }).pipe(
    Layer.provideMerge(Daemon.layer(daemonOptions(env, env.schema))),
    Layer.provideMerge(store),
    Layer.provide(Metrics.instrument),
    Layer.provideMerge(serversLayer(env)),
    Layer.provideMerge(NodeHttpServer.layerTest)
  )

export interface Reply {
  readonly status: number
  readonly contentType: string
  readonly text: string
  readonly json: any
}

/** One request; never fails on a status. */
export const call = (method: "GET" | "POST", path: string, options: { readonly token?: string } = {}) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(method)(path)
    if (options.token !== undefined) request = HttpClientRequest.bearerToken(request, options.token)
    const response = yield* client.execute(request)
    const text = yield* response.text
    let json: unknown = undefined
    try {
      json = JSON.parse(text)
    } catch {
      // not JSON: leave undefined
    }
    return { status: response.status, contentType: response.headers["content-type"] ?? "", text, json } as Reply
  })

/** Polls `effect` every 50 ms until `done` holds, failing after `within`. */
export const eventually = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  done: (a: A) => boolean,
  within: Duration.DurationInput = "10 seconds"
) =>
  effect.pipe(
    Effect.filterOrFail(done, () => "not yet" as const),
    Effect.retry({ while: (e) => e === "not yet", schedule: Schedule.spaced("50 millis") }),
    Effect.timeoutFail({
      duration: within,
      onTimeout: () => new Error(`condition not met within ${Duration.format(Duration.decode(within))}`)
    })
  )

/** The value of one sample of a Prometheus exposition (0 when absent). */
export const sampleOf = (exposition: string, name: string, labels: Record<string, string> = {}): number => {
  const wanted = Object.entries(labels)
  for (const line of exposition.split("\n")) {
    if (line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = new Map(Array.from((m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g), (x) => [x[1]!, x[2]!] as const))
    if (wanted.every(([k, v]) => have.get(k) === v)) return Number(m[3])
  }
  return 0
}
