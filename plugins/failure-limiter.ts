import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import ipaddr from 'ipaddr.js'
import type { Config } from '../src/config.ts'
import { sha256Hex } from '../src/secrets.ts'

/**
 * Counts FAILED attempts per key in a fixed window that starts at the first failure:
 * - `login`: per email+IP (LOGIN_FAILURE_MAX per 15 min)
 * - `loginIp`: per IP across all emails (LOGIN_IP_FAILURE_FACTOR × LOGIN_FAILURE_MAX per 15 min),
 *   so one client cannot spray passwords over many accounts
 * - `apiKey`: per IP (API_KEY_FAILURE_MAX per minute), so keys cannot be guessed
 * Successes are not counted; callers reset a key after a success where that makes sense.
 *
 * Attempts whose outcome takes time (a password hash, a database lookup) are reserved first:
 * `reserve` counts the attempt and compares in one atomic step (one Lua call in Redis, synchronous
 * in memory), so N concurrent guesses cannot all pass a check made before any of them failed; the
 * caller releases the reservation when the attempt turns out not to be a failure.
 *
 * Client addresses are counted per IPv4 address and per IPv6 /64 (`clientKey`): one host
 * usually holds a whole /64, so counting single IPv6 addresses would give it 2^64 budgets.
 */
export type FailureBucket = 'login' | 'loginIp' | 'apiKey'

export interface FailureVerdict {
  blocked: boolean
  /** seconds until the window ends; 0 when not blocked */
  retryAfterSeconds: number
}

export interface FailureReservation extends FailureVerdict {
  /** un-counts the reserved attempt (it was not a failure); nothing to do when blocked. Idempotent. */
  release: () => Promise<void>
}

export interface FailureLimiter {
  /**
   * Counts one attempt now, atomically with the check: blocked when the budget was already used
   * up (nothing is held then). Otherwise the attempt counts as a failure unless released.
   */
  reserve: (bucket: FailureBucket, key: string) => Promise<FailureReservation>
  /** whether the key has used up its failures in the current window */
  isBlocked: (bucket: FailureBucket, key: string) => Promise<FailureVerdict>
  /** counts one failure; the verdict says whether this failure used up the budget */
  recordFailure: (bucket: FailureBucket, key: string) => Promise<FailureVerdict>
  /** forgets the key's failures (e.g. after a successful login) */
  reset: (bucket: FailureBucket, key: string) => Promise<void>
  /** the configured policy of each bucket */
  policies: Record<FailureBucket, { max: number, windowMs: number }>
}

declare module 'fastify' {
  interface FastifyInstance {
    failureLimiter: FailureLimiter
  }
}

export const LOGIN_IP_FAILURE_FACTOR = 5

/** Buckets keyed by a client address alone: counted per IPv4 address and per IPv6 /64. */
const ADDRESS_BUCKETS: ReadonlySet<FailureBucket> = new Set(['loginIp', 'apiKey'])

/**
 * The unit a client address is counted in: the IPv4 address itself (IPv4-mapped IPv6 included),
 * an IPv6 address's /64 network. Anything unparsable is used as given.
 */
export function clientKey (ip: string): string {
  if (!ipaddr.isValid(ip)) return ip
  const address = ipaddr.process(ip)
  if (address.kind() === 'ipv4') return address.toString()
  const parts = (address as ipaddr.IPv6).parts.slice(0, 4)
  return `${parts.map(part => part.toString(16)).join(':')}::/64`
}

// INCR and the window's expiry in one atomic step, so a crash between them cannot leave a
// counter that never expires. Returns the count and the window's remaining milliseconds.
const RECORD_FAILURE_LUA = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }`

// Un-counts a released reservation, unless its window has ended meanwhile (DECR would then
// make a counter without expiry).
const RELEASE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0`

interface MemoryCounter { count: number, resetAt: number }

function verdict (count: number, max: number, ttlMs: number): FailureVerdict {
  const blocked = count >= max && ttlMs > 0
  return { blocked, retryAfterSeconds: blocked ? Math.max(1, Math.ceil(ttlMs / 1000)) : 0 }
}

async function failureLimiter (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const policies: FailureLimiter['policies'] = {
    login: { max: config.loginFailureMax, windowMs: config.loginFailureWindowMs },
    loginIp: { max: config.loginFailureMax * LOGIN_IP_FAILURE_FACTOR, windowMs: config.loginFailureWindowMs },
    apiKey: { max: config.apiKeyFailureMax, windowMs: config.apiKeyFailureWindowMs }
  }
  // Bounded, so a flood of distinct keys cannot exhaust memory; the oldest entries go first.
  // Made by the first count it holds: with Redis it serves only while Redis is down, and
  // lru-cache allocates all of its 100,000 slots up front (~1.6 MB of heap, ~1.2 MB of buffers).
  let memory: LRUCache<string, MemoryCounter> | null = null
  const counters = (): LRUCache<string, MemoryCounter> => (memory ??= new LRUCache({ max: 100_000 }))
  const redis: Redis | null = app.redis

  // Keys are hashed: an email address (part of the login key) never lands in Redis in clear.
  const storeKey = (bucket: FailureBucket, key: string): string => `${bucket}:${sha256Hex(ADDRESS_BUCKETS.has(bucket) ? clientKey(key) : key)}`
  const redisKey = (id: string): string => `${config.redisPrefix}failures:${id}`
  const redisUsable = (): boolean => redis !== null && redis.status === 'ready'

  function memoryCounter (id: string, now: number): MemoryCounter | undefined {
    const counter = memory?.get(id)
    if (counter === undefined || counter.resetAt <= now) return undefined
    return counter
  }

  function onRedisError (error: unknown): void {
    app.log.warn({ err: error }, 'failure limiter: redis unavailable, counting in process memory')
  }

  async function isBlocked (bucket: FailureBucket, key: string): Promise<FailureVerdict> {
    const { max } = policies[bucket]
    const id = storeKey(bucket, key)
    if (redisUsable()) {
      try {
        const results = await (redis as Redis).multi().get(redisKey(id)).pttl(redisKey(id)).exec()
        if (results !== null && results.every(([error]) => error === null)) {
          return verdict(Number(results[0][1] ?? 0), max, Number(results[1][1]))
        }
      } catch (error) {
        onRedisError(error)
      }
    }
    const now = Date.now()
    const counter = memoryCounter(id, now)
    return counter === undefined ? { blocked: false, retryAfterSeconds: 0 } : verdict(counter.count, max, counter.resetAt - now)
  }

  async function recordFailure (bucket: FailureBucket, key: string): Promise<FailureVerdict> {
    const { max, windowMs } = policies[bucket]
    const id = storeKey(bucket, key)
    if (redisUsable()) {
      try {
        const [count, ttl] = await (redis as Redis).eval(RECORD_FAILURE_LUA, 1, redisKey(id), windowMs) as [number, number]
        return verdict(count, max, ttl)
      } catch (error) {
        onRedisError(error)
      }
    }
    const now = Date.now()
    const counter = memoryCounter(id, now) ?? { count: 0, resetAt: now + windowMs }
    counter.count++
    counters().set(id, counter)
    return verdict(counter.count, max, counter.resetAt - now)
  }

  const NOTHING_HELD = async (): Promise<void> => {}

  async function reserve (bucket: FailureBucket, key: string): Promise<FailureReservation> {
    const { max, windowMs } = policies[bucket]
    const id = storeKey(bucket, key)
    if (redisUsable()) {
      try {
        const [count, ttl] = await (redis as Redis).eval(RECORD_FAILURE_LUA, 1, redisKey(id), windowMs) as [number, number]
        // Over the budget: refused, and the extra count is harmless (the window is fixed).
        if (count > max) return { ...verdict(count, max, ttl), release: NOTHING_HELD }
        return { blocked: false, retryAfterSeconds: 0, release: once(() => releaseInRedis(id)) }
      } catch (error) {
        onRedisError(error)
      }
    }
    // Synchronous from here on: no other request runs between the check and the count.
    const now = Date.now()
    const counter = memoryCounter(id, now) ?? { count: 0, resetAt: now + windowMs }
    if (counter.count >= max) return { ...verdict(counter.count, max, counter.resetAt - now), release: NOTHING_HELD }
    counter.count++
    counters().set(id, counter)
    return {
      blocked: false,
      retryAfterSeconds: 0,
      release: once(async () => {
        // Only the window it was counted in: a new window starts from nothing.
        if (memory?.get(id) === counter && counter.count > 0) counter.count--
      })
    }
  }

  async function releaseInRedis (id: string): Promise<void> {
    if (!redisUsable()) return
    try {
      await (redis as Redis).eval(RELEASE_LUA, 1, redisKey(id))
    } catch (error) {
      onRedisError(error)
    }
  }

  async function reset (bucket: FailureBucket, key: string): Promise<void> {
    const id = storeKey(bucket, key)
    memory?.delete(id)
    if (redisUsable()) {
      try {
        await (redis as Redis).del(redisKey(id))
      } catch (error) {
        onRedisError(error)
      }
    }
  }

  app.decorate('failureLimiter', { reserve, isBlocked, recordFailure, reset, policies })
}

function once (fn: () => Promise<void>): () => Promise<void> {
  let done = false
  return async () => {
    if (done) return
    done = true
    await fn()
  }
}

export default fp(failureLimiter, { name: 'failure-limiter', fastify: '5.x', dependencies: ['redis'] })
