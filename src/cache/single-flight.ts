// Concurrent callers asking for the same key share one run of the work.
export class SingleFlight<V> {
  readonly #pending = new Map<string, Promise<V>>()

  /** Runs `work` unless a run for `key` is already under way, in which case its result is shared. */
  run(key: string, work: () => Promise<V>): Promise<V> {
    const existing = this.#pending.get(key)
    if (existing) return existing
    const promise = work().finally(() => this.#pending.delete(key))
    this.#pending.set(key, promise)
    return promise
  }

  get size(): number {
    return this.#pending.size
  }
}
