import { Data } from "effect"

/**
 * The one error of the Redis shell. `connection`: the server cannot be reached or dropped us (retried with
 * backoff); `command`: Redis refused a command (e.g. CONFIG on a managed instance).
 */
export class RedisError extends Data.TaggedError("RedisError")<{
  readonly reason: "connection" | "command"
  readonly message: string
  readonly cause?: unknown
}> {}

const REFUSALS = /^(ERR|WRONGTYPE|NOPERM|NOAUTH|WRONGPASS|READONLY|NOSCRIPT|EXECABORT|LOADING|MOVED|ASK)/

/** Classifies an ioredis failure. */
export const fromCause = (cause: unknown, what: string): RedisError => {
  const detail = cause instanceof Error ? cause.message : String(cause)
  const reason = REFUSALS.test(detail) && !/^LOADING/.test(detail) ? "command" : "connection"
  return new RedisError({ reason, message: `${what}: ${detail}`, cause })
}
