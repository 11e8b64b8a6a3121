/**
 * A bounded map from session id to what the writer keeps in memory about it (`SessionStore`'s key memos), weighed
 * in units (message keys), least recently used first.
 *
 * Past its limit, plain LRU evicts the least recently used entry. That holds nothing useful when sessions come
 * round in a cycle longer than the cache can hold, which is what an overloaded live pipeline does (each batch
 * takes the sessions that have waited longest): every entry is evicted just before it is needed again, and the
 * writer reloads keys from PostgreSQL and hashes whole sessions again. In `bench/live`'s burst (20,000 updates/s
 * for 30 s over 10,000 sessions: 600,000 keys against 400,000), the last message arrived 11.0 s after the writes
 * ended with LRU, 8.2 s with this policy, and 7.1 s with caches large enough for everything (one run each).
 *
 * So a new session evicts only entries idle for at least `minIdleMs`; while the entries are all in use, a new
 * session is turned away and the cache keeps the sessions it holds (a cycle then hits in proportion to the
 * cache's size instead of never). Idle entries still make room, so sessions that stop changing leave in time.
 * An entry already held is always kept up to date; if that takes the total past the limit, the least recently
 * used entries go, idle or not. One entry above a tenth of the limit is never held (it would evict the rest).
 */
export class SessionCache<V> {
  private readonly entries = new Map<string, { value: V; size: number; usedAt: number }>()
  private held = 0

  constructor(
    readonly limit: number,
    readonly minIdleMs: number,
    private readonly now: () => number = Date.now
  ) {}

  /** Units held. */
  get total(): number {
    return this.held
  }

  get count(): number {
    return this.entries.size
  }

  /** The entry of `id`, now the most recently used. */
  get(id: string): V | undefined {
    const e = this.entries.get(id)
    if (e === undefined) return undefined
    this.entries.delete(id)
    e.usedAt = this.now()
    this.entries.set(id, e)
    return e.value
  }

  /** The entry of `id`, its recency left as it is. */
  peek(id: string): V | undefined {
    return this.entries.get(id)?.value
  }

  has(id: string): boolean {
    return this.entries.has(id)
  }

  /** Holds `value` for `id`, weighing `size` units; false when it is not held (see the class). */
  set(id: string, value: V, size: number): boolean {
    const known = this.entries.has(id)
    this.delete(id)
    if (size > this.limit / 10) return false
    if (!known) {
      this.evict(size, true)
      if (this.held + size > this.limit) return false
    }
    this.entries.set(id, { value, size, usedAt: this.now() })
    this.held += size
    this.evict(0, false)
    return true
  }

  /**
   * Weighs the entry of `id` again, as `set` would with the value it holds (its value grew or shrank in place), in one
   * lookup; it becomes the most recently used. False when it is not held, or no longer (grown past a tenth of the limit).
   */
  reweigh(id: string, sizeOf: (value: V) => number): boolean {
    const e = this.entries.get(id)
    if (e === undefined) return false
    const size = sizeOf(e.value)
    this.entries.delete(id)
    this.held -= e.size
    if (size > this.limit / 10) return false
    e.size = size
    e.usedAt = this.now()
    this.entries.set(id, e)
    this.held += size
    // Itself the most recently used and at most a tenth of the limit, it is never the one evicted.
    this.evict(0, false)
    return true
  }

  delete(id: string): void {
    const e = this.entries.get(id)
    if (e === undefined) return
    this.held -= e.size
    this.entries.delete(id)
  }

  clear(): void {
    this.entries.clear()
    this.held = 0
  }

  /** Evicts least recently used entries until `room` more units fit (only idle ones when `idleOnly`). */
  private evict(room: number, idleOnly: boolean): void {
    const now = this.now()
    for (const [id, e] of this.entries) {
      if (this.held + room <= this.limit) return
      if (idleOnly && now - e.usedAt < this.minIdleMs) return
      this.held -= e.size
      this.entries.delete(id)
    }
  }
}
