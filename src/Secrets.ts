/**
 * What of a connection URL may be shown (logs, errors, `check`): everything but its secrets. Both ioredis and pg
 * also take a password as a query parameter (`?password=…`), so those values are hidden too, not only the
 * `user:password@` part.
 */
const SECRET_PARAMETER = /pass|secret|token/i

export const showUrl = (url: URL): string => {
  const shown = new URL(url.toString())
  if (shown.password !== "") shown.password = "***"
  for (const name of Array.from(shown.searchParams.keys())) {
    if (SECRET_PARAMETER.test(name)) shown.searchParams.set(name, "***")
  }
  return shown.toString()
}
