import type { Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../db/database.ts'
import { backgroundDb } from '../db/connect.ts'
import { addUsage, USAGE_COUNTERS, type UsageCounts, type UsageIncrement } from '../db/queries/usage.ts'

const HOUR_MS = 3_600_000
const TOTAL = 0
const SUCCESS = 1
const CLIENT_ERROR = 2
const FORBIDDEN = 3
const RATE_LIMITED = 4
const TOKENS_VALID = 5
const TOKENS_INVALID = 6

export interface UsageRecorder {
  /**
   * Counts one /public request authenticated by the key (a 401 is not: no key authenticated it).
   * tokenValid: the answer of /public/verify (valid true/false), null for other routes.
   */
  count: (keyId: string, statusCode: number, tokenValid: boolean | null) => void
  /** writes what is counted so far (the periodic flush, shutdown, and a read of the usage) */
  flush: () => Promise<void>
  stop: () => void
}

/**
 * Usage without a database write per request: counts per key and hour in memory, flushed as
 * additive upserts once a minute and on shutdown, so several instances add up and a crash loses
 * at most a minute. A failed flush keeps its counts for the next one.
 */
export function createUsageRecorder ({ db: requestDb, log, flushIntervalMs = 60_000, now = Date.now }: { db: Kysely<Database>, log: FastifyBaseLogger, flushIntervalMs?: number, now?: () => number }): UsageRecorder {
  const db = backgroundDb(requestDb)
  // `${hourStartMs}|${keyId}` → counters in USAGE_COUNTERS order
  let buckets = new Map<string, number[]>()
  let queue: Promise<void> = Promise.resolve()

  function bucketOf (key: string): number[] {
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      bucket = [0, 0, 0, 0, 0, 0, 0]
      buckets.set(key, bucket)
    }
    return bucket
  }

  async function write (): Promise<void> {
    if (buckets.size === 0) return
    const taken = buckets
    buckets = new Map()
    const increments: UsageIncrement[] = []
    for (const [key, values] of taken) {
      const separator = key.indexOf('|')
      const counts = Object.fromEntries(USAGE_COUNTERS.map((name, i) => [name, values[i]])) as UsageCounts
      increments.push({ hour: new Date(Number(key.slice(0, separator))), keyId: key.slice(separator + 1), counts })
    }
    try {
      await addUsage(db, increments)
    } catch (error) {
      for (const [key, values] of taken) {
        const bucket = bucketOf(key)
        values.forEach((value, i) => { bucket[i] += value })
      }
      log.warn({ err: error, buckets: taken.size }, 'could not write API key usage; kept for the next flush')
    }
  }

  const timer = setInterval(() => { flush().catch(() => {}) }, flushIntervalMs)
  timer.unref()

  function flush (): Promise<void> {
    // One flush at a time; a flush asked for during another runs after it, so it sees every count made before it was asked.
    const next = queue.then(write)
    queue = next.catch(() => {})
    return next
  }

  return {
    count (keyId, statusCode, tokenValid) {
      const at = now()
      const bucket = bucketOf(`${at - at % HOUR_MS}|${keyId}`)
      bucket[TOTAL]++
      if (statusCode < 300) bucket[SUCCESS]++
      else if (statusCode === 403) bucket[FORBIDDEN]++
      else if (statusCode === 429) bucket[RATE_LIMITED]++
      else if (statusCode >= 400 && statusCode < 500) bucket[CLIENT_ERROR]++
      if (tokenValid === true) bucket[TOKENS_VALID]++
      else if (tokenValid === false) bucket[TOKENS_INVALID]++
    },
    flush,
    stop: () => clearInterval(timer)
  }
}
