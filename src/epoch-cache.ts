import { LRUCache } from 'lru-cache'

/** The Redis key of an org's epoch: every instance's /public caches trust only entries stamped with its value. */
export function orgEpochKey (redisPrefix: string, orgId: string): string {
  return `${redisPrefix}epoch:${orgId}`
}

/** Stamp for an entry loaded before the org's epoch was known: it is trusted by no request. */
export const UNVERIFIED = 'unverified'

/**
 * A bounded cache whose entries are trusted only by a request that read the same org epoch
 * the entry was stamped with. Writers move the epoch on (KeyWindowStore.bumpEpoch), so every
 * instance stops trusting its copies at once, without a message having to reach it.
 */
export class EpochCache<V extends {}> {
  readonly #entries: LRUCache<string, { value: V, epoch: string }>
  readonly #onLookup: (hit: boolean) => void

  constructor (readonly name: string, options: { max: number, ttlMs: number, onLookup?: (hit: boolean) => void }) {
    this.#entries = new LRUCache({ max: options.max, ttl: options.ttlMs })
    this.#onLookup = options.onLookup ?? (() => {})
  }

  /** The value if it was stamped with this epoch; an epoch of null (unknown) trusts nothing. */
  get (key: string, epoch: string | null): V | undefined {
    const entry = this.#entries.get(key)
    if (entry !== undefined && epoch !== null && entry.epoch === epoch) {
      this.#onLookup(true)
      return entry.value
    }
    this.#onLookup(false)
    return undefined
  }

  /**
   * The value whatever its stamp, for a guard that revalidates once the epoch is known. Not
   * counted as a hit or a miss: that is known only then, and the guard tells it with `counted`.
   */
  peek (key: string): { value: V, epoch: string } | undefined {
    return this.#entries.get(key)
  }

  /** Counts a lookup made with peek: a hit when the entry was there and current, a miss otherwise. */
  counted (hit: boolean): void {
    this.#onLookup(hit)
  }

  set (key: string, value: V, epoch: string | null): void {
    this.#entries.set(key, { value, epoch: epoch ?? UNVERIFIED })
  }

  delete (key: string): void {
    this.#entries.delete(key)
  }

  clear (): void {
    this.#entries.clear()
  }
}
