import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/**
 * Fixed-window counting for the @fastify/rate-limit store, with windows that end on a whole second.
 * The contract's X-RateLimit-Reset is the Unix second a window ends, computed as now + ttl;
 * with ends on whole seconds that sum rounds to the same second on every request of the
 * window, whatever the latency between the app and the store.
 *
 * Redis when configured and reachable (every instance shares one budget per key); process
 * memory otherwise, and while Redis is down, so a Redis outage never fails a request.
 */
export interface WindowCount {
  current: number
  ttl: number
  /** with an epoch key: its value as Redis held it when the count was made (`redis:N`); null when counted in memory */
  epoch?: string | null
}

// INCR, and on a window's first request an expiry at the next whole second after
// now + window (Redis's own clock), in one atomic step. Returns the count, the ms left, and the
// value of KEYS[2] (an org's epoch, for the /public caches: read in the same round trip).
const INCR_LUA = `
local current = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local ends = math.ceil((now + tonumber(ARGV[1])) / 1000) * 1000
  redis.call('PEXPIREAT', KEYS[1], ends)
  ttl = ends - now
end
return { current, ttl, redis.call('GET', KEYS[2]) or '0' }`

// Gives one request back, only while its window lasts (a DECR on an expired key would start a
// counter that never expires).
const RELEASE_LUA = `
if redis.call('PTTL', KEYS[1]) > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0`

export function windowEnd (now: number, windowMs: number): number {
  return Math.ceil((now + windowMs) / 1000) * 1000
}

export interface WindowCounterOptions {
  redis: Redis | null
  /** prefix of every Redis key (config.redisPrefix + a namespace) */
  keyPrefix: string
  log: FastifyBaseLogger
}

export interface WindowCounter {
  /**
   * Counts one request in the key's current window and, in Redis, reads epochKey in the same step.
   * Counted in memory (no Redis, or Redis not ready) the answer is at once, not a promise.
   */
  incr: (key: string, windowMs: number, epochKey: string) => Promise<WindowCount> | WindowCount
  /** gives back one request counted in the key's current window (a request that turned out not to count) */
  release: (key: string) => Promise<void>
}

export function createWindowCounter ({ redis, keyPrefix, log }: WindowCounterOptions): WindowCounter {
  // Bounded: one entry per key seen in a window; the oldest go first.
  const memory = new LRUCache<string, { current: number, endsAt: number }>({ max: 100_000 })
  let warned = false
  // Sent by its SHA (EVALSHA) once Redis has it: ioredis loads it on NOSCRIPT, so each request
  // carries 40 bytes of digest rather than the script's text.
  type IncrInRedis = (key: string, epochKey: string, windowMs: number) => Promise<[number, number, string]>
  type ReleaseInRedis = (key: string) => Promise<number>
  let incrInRedis: IncrInRedis | null = null
  let releaseInRedis: ReleaseInRedis | null = null
  if (redis !== null) {
    redis.defineCommand('tenantkeyWindowIncrEpoch', { numberOfKeys: 2, lua: INCR_LUA })
    redis.defineCommand('tenantkeyWindowRelease', { numberOfKeys: 1, lua: RELEASE_LUA })
    const commands = redis as unknown as { tenantkeyWindowIncrEpoch: IncrInRedis, tenantkeyWindowRelease: ReleaseInRedis }
    incrInRedis = (key, epochKey, windowMs) => commands.tenantkeyWindowIncrEpoch.call(redis, key, epochKey, windowMs)
    releaseInRedis = key => commands.tenantkeyWindowRelease.call(redis, key)
  }

  function countInMemory (key: string, windowMs: number): WindowCount {
    const now = Date.now()
    let entry = memory.get(key)
    if (entry === undefined || entry.endsAt <= now) {
      entry = { current: 0, endsAt: windowEnd(now, windowMs) }
      memory.set(key, entry)
    }
    entry.current++
    return { current: entry.current, ttl: entry.endsAt - now, epoch: null }
  }

  function releaseInMemory (key: string): void {
    const entry = memory.get(key)
    if (entry !== undefined && entry.endsAt > Date.now() && entry.current > 0) entry.current--
  }

  return {
    incr (key, windowMs, epochKey) {
      if (incrInRedis === null || redis?.status !== 'ready') return countInMemory(key, windowMs)
      return incrInRedis(keyPrefix + key, epochKey, windowMs).then(([current, ttl, epoch]) => {
        warned = false
        return { current, ttl, epoch: `redis:${epoch}` }
      }, error => {
        if (!warned) log.warn({ err: error }, 'rate limit: redis unavailable, counting in process memory')
        warned = true
        return countInMemory(key, windowMs)
      })
    },
    // Given back where it was most likely counted: Redis when it answers, else memory.
    async release (key) {
      if (releaseInRedis !== null && redis?.status === 'ready') {
        try {
          await releaseInRedis(keyPrefix + key)
          return
        } catch {}
      }
      releaseInMemory(key)
    }
  }
}
