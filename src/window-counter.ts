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
export interface WindowCount { current: number, ttl: number }

// INCR, and on a window's first request an expiry at the next whole second after
// now + window (Redis's own clock), in one atomic step. Returns the count and the ms left.
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
return { current, ttl }`

export function windowEnd (now: number, windowMs: number): number {
  return Math.ceil((now + windowMs) / 1000) * 1000
}

export interface WindowCounterOptions {
  redis: Redis | null
  /** prefix of every Redis key (config.redisPrefix + a namespace) */
  keyPrefix: string
  log: FastifyBaseLogger
}

export function createWindowCounter ({ redis, keyPrefix, log }: WindowCounterOptions): (key: string, windowMs: number) => Promise<WindowCount> {
  // Bounded: one entry per key seen in a window; the oldest go first.
  const memory = new LRUCache<string, { current: number, endsAt: number }>({ max: 100_000 })
  let warned = false
  // Sent by its SHA (EVALSHA) once Redis has it: ioredis loads it on NOSCRIPT, so each request
  // carries 40 bytes of digest rather than the script's text.
  type IncrInRedis = (key: string, windowMs: number) => Promise<[number, number]>
  let incrInRedis: IncrInRedis | null = null
  if (redis !== null) {
    redis.defineCommand('tenantkeyWindowIncr', { numberOfKeys: 1, lua: INCR_LUA })
    const command = (redis as unknown as { tenantkeyWindowIncr: IncrInRedis }).tenantkeyWindowIncr
    incrInRedis = (key, windowMs) => command.call(redis, key, windowMs)
  }

  function countInMemory (key: string, windowMs: number): WindowCount {
    const now = Date.now()
    let entry = memory.get(key)
    if (entry === undefined || entry.endsAt <= now) {
      entry = { current: 0, endsAt: windowEnd(now, windowMs) }
      memory.set(key, entry)
    }
    entry.current++
    return { current: entry.current, ttl: entry.endsAt - now }
  }

  return async function incr (key, windowMs) {
    if (incrInRedis !== null && redis?.status === 'ready') {
      try {
        const [current, ttl] = await incrInRedis(keyPrefix + key, windowMs)
        warned = false
        return { current, ttl }
      } catch (error) {
        if (!warned) log.warn({ err: error }, 'rate limit: redis unavailable, counting in process memory')
        warned = true
      }
    }
    return countInMemory(key, windowMs)
  }
}
