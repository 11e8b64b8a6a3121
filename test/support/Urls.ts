/** `url` as `user` with `password` (a Redis ACL user or a PostgreSQL role made by the test). */
export const urlAs = (url: string, user: string, password: string): string => {
  const u = new URL(url)
  u.username = user
  u.password = password
  return u.toString()
}
