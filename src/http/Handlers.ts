/**
 * The handlers of `Api.ts`: one `Operations` call each. And the bearer-token check of `Authorization`.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Layer, Option, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { Api, Authorization, Unauthorized } from "./Api.js"
import { Operations } from "./Operations.js"

export const SyncHandlers = HttpApiBuilder.group(Api, "sync", (handlers) =>
  Effect.map(Operations, (ops) =>
    handlers
      .handle("manual", () => ops.manualSync)
      .handle("status", () => ops.status)
      .handle("syncSession", ({ path }) => ops.syncSession(path.session_id))
      .handle("compare", ({ urlParams }) => ops.compare(urlParams.limit))
      .handle("pause", () => ops.pause)
      .handle("resume", () => ops.resume)
      .handle("log", ({ urlParams }) => ops.log(urlParams.after, urlParams.limit))
      .handle("rejections", ({ urlParams }) => ops.rejections(urlParams.after, urlParams.limit))
      .handle("retryRejection", ({ path }) => ops.retryRejection(path.session_id))
      .handle("rebuild", () => ops.rebuild)))

export const OpsHandlers = HttpApiBuilder.group(Api, "ops", (handlers) =>
  Effect.map(Operations, (ops) =>
    handlers
      .handle("health", () => ops.health)
      .handle("ready", () => ops.ready)
      .handle("metrics", () => ops.metrics)))

const digest = (s: string) => createHash("sha256").update(s).digest()

/**
 * `Authorization` checking `Authorization: Bearer <token>` in constant time; with no token every request passes.
 */
export const authorizationLayer = (token: Option.Option<Redacted.Redacted<string>>) =>
  Layer.succeed(
    Authorization,
    Authorization.of({
      bearer: (given) =>
        Option.match(token, {
          onNone: () => Effect.void,
          onSome: (expected) => {
            const value = Redacted.value(given)
            if (value.length === 0) {
              return Effect.fail(new Unauthorized({
                message: "this endpoint requires the header Authorization: Bearer <SYNC_API_TOKEN>"
              }))
            }
            return timingSafeEqual(digest(value), digest(Redacted.value(expected)))
              ? Effect.void
              : Effect.fail(new Unauthorized({ message: "the bearer token does not match SYNC_API_TOKEN" }))
          }
        })
    })
  )
