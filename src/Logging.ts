/**
 * Logging through Effect's logger: readable lines by default, one JSON object per line with `LOG_FORMAT=json`
 * (or logfmt with `LOG_FORMAT=logfmt`), and the minimum level from `LOG_LEVEL` (`debug`, `info`, `warning`,
 * `error`; default `info`). Logs go to stderr, command output to stdout. A bad value is reported and the default
 * used: logging never stops the program.
 */
import { Config, ConfigError, Console, Effect, Either, Layer, Logger, LogLevel } from "effect"

export const logFormat = Config.literal("pretty", "json", "logfmt")("LOG_FORMAT").pipe(Config.withDefault("pretty"))
const LEVELS: Record<string, LogLevel.LogLevel> = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  warn: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

export const logLevel = Config.string("LOG_LEVEL").pipe(
  Config.mapOrFail((s) => {
    const level = LEVELS[s.toLowerCase()]
    return level === undefined
      ? Either.left(ConfigError.InvalidData([], `expected one of ${Object.keys(LEVELS).join(", ")}`))
      : Either.right(level)
  }),
  Config.withDefault(LogLevel.Info)
)

const orDefault = <A>(config: Config.Config<A>, fallback: A, name: string, expected: string) =>
  Effect.catchAll(config, () =>
    Console.error(`redis-pg-sync: ${name} should be one of ${expected}; using the default`).pipe(Effect.as(fallback)))

/** The logger and level the environment asks for (use with `runMain({ disablePrettyLogger: true })`). */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const format = yield* orDefault(logFormat, "pretty" as const, "LOG_FORMAT", "pretty, json, logfmt")
    const level = yield* orDefault(logLevel, LogLevel.Info, "LOG_LEVEL", "trace, debug, info, warning, error, none")
    const logger = format === "json"
      ? Logger.withConsoleError(Logger.jsonLogger)
      : format === "logfmt"
      ? Logger.withConsoleError(Logger.logfmtLogger)
      : Logger.prettyLogger({ stderr: true })
    return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(level))
  })
)
