/**
 * The HTTP server (DESIGN §5): the API of `Api.ts` on `HTTP_HOST`:`HTTP_PORT` (default 0.0.0.0:8000), its OpenAPI
 * document at `/openapi.json`, a docs page at `/docs`. It runs in the daemon's scope: it needs the `Daemon` and
 * the services the daemon uses. Every error is JSON with a message; an unknown path is a JSON 404; an unexpected
 * failure is a JSON 500 whose details (stack included) go to the log only.
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Cause, Data, Effect, Layer, Option, type Redacted } from "effect"
import { createServer, type Server } from "node:http"
import { Api } from "./Api.js"
import { authorizationLayer, OpsHandlers, SyncHandlers } from "./Handlers.js"
import { httpConfig } from "./HttpConfig.js"
import * as Operations from "./Operations.js"
import * as Metrics from "../Metrics.js"
import { VERSION } from "../Version.js"

/** Whether the path of `url` decodes (`%ZZ`, or bytes that are not UTF-8, do not). */
const decodablePath = (url: string): boolean => {
  try {
    decodeURIComponent(url.split("?")[0]!)
    return true
  } catch {
    return false
  }
}

export interface ServerOptions extends Operations.OperationsOptions {
  /** The bearer token of the protected endpoints; none: they are open. */
  readonly token: Option.Option<Redacted.Redacted<string>>
}

const firstLine = (s: string) => (s.split("\n")[0] ?? "").slice(0, 300)

/**
 * Turns what the API itself does not answer into JSON: no route (404), an unreadable request (400), a defect
 * (500, logged with its cause). The API's own errors pass through to be encoded with their schemas;
 * interruptions (the client went away) pass through too. Applied around the API's router, inside the server's
 * error handling, so the causes are still there.
 */
export const jsonErrors = (app: HttpApp.Default): HttpApp.Default =>
  Effect.catchAllCause(app, (cause) =>
    Effect.gen(function*() {
      if (Cause.isInterruptedOnly(cause)) return yield* Effect.failCause(cause)
      const request = yield* HttpServerRequest.HttpServerRequest
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        const error: unknown = failure.value
        const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : undefined
        if (tag === "RouteNotFound" && !decodablePath(request.url)) {
          // The router cannot decode such a path, so it matched nothing; the endpoint may well exist.
          return HttpServerResponse.unsafeJson({
            _tag: "BadRequest",
            message: `the path ${request.url.split("?")[0]} is not valid percent-encoded UTF-8`
          }, { status: 400 })
        }
        if (tag === "RouteNotFound") {
          return HttpServerResponse.unsafeJson({
            _tag: "NotFound",
            message: `no endpoint ${request.method} ${request.url}; the endpoints are listed at /docs and /openapi.json`
          }, { status: 404 })
        }
        if (tag === "RequestError") {
          return HttpServerResponse.unsafeJson({
            _tag: "BadRequest",
            message: `the request could not be read: ${firstLine(String((error as { message?: unknown }).message ?? tag))}`
          }, { status: 400 })
        }
        return yield* Effect.failCause(cause)
      }
      yield* Effect.logError(`HTTP ${request.method} ${request.url} failed unexpectedly`, cause)
      const defect = Cause.squash(cause)
      return HttpServerResponse.unsafeJson({
        _tag: "InternalError",
        message: `unexpected error: ${firstLine(defect instanceof Error ? defect.message : String(defect))} ` +
          "(details in the daemon's log)"
      }, { status: 500 })
    }))

/** The API, docs and OpenAPI document on whatever `HttpServer` is provided (a real one, or `NodeHttpServer.layerTest`). */
export const layerApi = (options: ServerOptions) =>
  HttpApiBuilder.serve().pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middleware(jsonErrors)),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(HttpApiBuilder.api(Api).pipe(
      Layer.provide([SyncHandlers, OpsHandlers]),
      Layer.provide(authorizationLayer(options.token))
    )),
    Layer.provide(Operations.layer(options).pipe(Layer.provide(Metrics.layerExporter(VERSION)))),
    // Session ids may be long once percent-encoded (find-my-way's default is 100 characters).
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 4096 }))
  )

/** Logs where the API listens and whether it asks for a token. */
const announce = (token: ServerOptions["token"]) =>
  Layer.effectDiscard(HttpServer.addressWith((address) => {
    const where = address._tag === "TcpAddress" ? `http://${address.hostname}:${address.port}` : `unix:${address.path}`
    return Effect.logInfo(
      `HTTP API on ${where} (docs ${where}/docs, OpenAPI ${where}/openapi.json); ` +
        (Option.isSome(token)
          ? "SYNC_API_TOKEN set: protected endpoints require Authorization: Bearer <token>"
          : "SYNC_API_TOKEN not set: every endpoint is open")
    )
  }))

/** The server could not listen (port in use, address not available, …). */
export class ListenError extends Data.TaggedError("ListenError")<{ readonly message: string; readonly cause: unknown }> {}

/** How long requests in progress may go on once the server is closing; then their connections are cut. */
const CLOSE_GRACE_MS = 1_000

/**
 * Node's `server.close()` waits for every open request, and stops the header timeout: one client that never
 * finishes sending its request held a SIGTERM'd daemon up for as long as it kept the socket open. Released before
 * the server (it is built after it), this cuts idle connections at once and the others after `CLOSE_GRACE_MS`.
 */
const closeConnections = (servers: ReadonlyArray<Server>) =>
  Layer.scopedDiscard(Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const server of servers) {
        server.closeIdleConnections()
        setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref()
      }
    })
  ))

/** The API served by Node on `host`:`port`. Fails with `ListenError` when it cannot listen there. */
export const layer = (options: ServerOptions & { readonly host: string; readonly port: number }) => {
  const servers: Array<Server> = []
  const make = () => {
    const server = createServer()
    servers.push(server)
    return server
  }
  return Layer.mergeAll(layerApi(options), announce(options.token), closeConnections(servers)).pipe(
    Layer.provide(
      NodeHttpServer.layer(make, { host: options.host, port: options.port }).pipe(
        Layer.mapError((e) => {
          const cause: unknown = e.cause
          const detail = cause instanceof Error ? cause.message : String(cause)
          return new ListenError({
            message: `HTTP API cannot listen on ${options.host}:${options.port} (${detail}); set HTTP_HOST/HTTP_PORT`,
            cause
          })
        })
      )
    )
  )
}

/** `layer` with `HTTP_HOST`, `HTTP_PORT` and `SYNC_API_TOKEN` from the configuration. */
export const layerConfig = (options: Operations.OperationsOptions) =>
  Layer.unwrapEffect(Effect.map(httpConfig, (http) => layer({ ...options, ...http })))
