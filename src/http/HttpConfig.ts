/**
 * The HTTP API's environment variables (README "HTTP API"): `HTTP_HOST`, `HTTP_PORT` (0: any free port),
 * `SYNC_API_TOKEN`.
 */
import { Config, Option, Redacted } from "effect"
import { whole } from "../Config.js"

export interface HttpSettings {
  readonly host: string
  readonly port: number
  /** The bearer token protected endpoints require; none: they are open. */
  readonly token: Option.Option<Redacted.Redacted<string>>
}

export const httpConfig: Config.Config<HttpSettings> = Config.all({
  host: Config.string("HTTP_HOST").pipe(
    Config.validate({ message: "expected a host name or IP address to listen on", validation: (s) => s.trim().length > 0 }),
    Config.withDefault("0.0.0.0")
  ),
  // 0: any free port (the log says which), for tests and side-by-side runs.
  port: whole("HTTP_PORT", 65535, 0, "a port number from 0 to 65535 (0: any free port)").pipe(Config.withDefault(8000)),
  // An empty SYNC_API_TOKEN (as compose files often leave it) means no token.
  token: Config.option(Config.redacted("SYNC_API_TOKEN")).pipe(
    Config.map(Option.filter((t) => Redacted.value(t).length > 0))
  )
})
