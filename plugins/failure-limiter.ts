import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import type { Config } from '../src/config.ts'
import { sha256Hex } from '../src/secrets.ts'

/**
 * Counts FAILED attempts per key in a fixed window that starts at the first failure:
 * - `login`: per email+IP (LOGIN_FAILURE_MAX per 15 min)
 * - `loginIp`: per IP across all emails (LOGIN_IP_FAILURE_FACTOR × LOGIN_FAILURE_MAX per 15 min),
 *   so one client cannot spray passwords over many accounts
 * - `apiKey`: per IP (API_KEY_FAILURE_MAX per minute), so keys cannot be guessed
 * Successes are not counted; callers reset a key after a success where that makes sense.
 */
export type FailureBucket = 'login' | 'loginIp' | 'apiKey'

export interface FailureVerdict {
  blocked: boolean
  /** seconds until the window ends; 0 when not blocked */
  retryAfterSeconds: number
}

export interface FailureLimiter {
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
  const memory = new LRUCache<string, MemoryCounter>({ max: 100_000 })
  const redis: Redis | null = app.redis

  // Keys are hashed: an email address (part of the login key) never lands in Redis in clear.
  const storeKey = (bucket: FailureBucket, key: string): string => `${bucket}:${sha256Hex(key)}`
  const redisKey = (id: string): string => `${config.redisPrefix}failures:${id}`
  const redisUsable = (): boolean => redis !== null && redis.status === 'ready'

  function memoryCounter (id: string, now: number): MemoryCounter | undefined {
    const counter = memory.get(id)
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
    memory.set(id, counter)
    return verdict(counter.count, max, counter.resetAt - now)
  }

  async function reset (bucket: FailureBucket, key: string): Promise<void> {
    const id = storeKey(bucket, key)
    memory.delete(id)
    if (redisUsable()) {
      try {
        await (redis as Redis).del(redisKey(id))
      } catch (error) {
        onRedisError(error)
      }
    }
  }

  app.decorate('failureLimiter', { isBlocked, recordFailure, reset, policies })
}

export default fp(failureLimiter, { name: 'failure-limiter', fastify: '5.x', dependencies: ['redis'] })
