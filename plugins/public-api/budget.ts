import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyRateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import { format as formatDuration } from '@lukeed/ms'
import type { Config } from '../../src/config.ts'
import { createWindowCounter, type WindowCount } from './window-counter.ts'
import { RateLimited } from '../../src/errors.ts'
import { orgEpochKey } from './freshness.ts'

/** What @fastify/rate-limit's limiter (createRateLimit) answers for one request. */
export type RateLimitResult = Awaited<ReturnType<ReturnType<FastifyInstance['createRateLimit']>>>

/** The effective budget of a key (§9): its own, else its org's, else RATE_LIMIT_MAX per RATE_LIMIT_WINDOW. */
export interface Budget { max: number, windowMs: number }

export interface KeyBudgets {
  /**
   * Counts the request against `budget` for the key (@fastify/rate-limit with our store). In Redis
   * the same round trip reads the org's epoch, which `epochSeen` then tells.
   */
  count: (request: FastifyRequest, keyId: string, orgId: string, budget: Budget) => Promise<RateLimitResult>
  /** the org's epoch as the last count in Redis read it (`redis:N`); null when it was counted in memory */
  epochSeen: (orgId: string) => string | null
  /** gives back a count that turned out not to be owed (the key was refused, or its budget changed) */
  release: (limit: RateLimitResult) => Promise<void>
  /** X-RateLimit-Limit/-Remaining/-Reset (Reset = the Unix second the window ends); 429 with Retry-After when over */
  enforce: (reply: FastifyReply, limit: RateLimitResult) => void
}

// The limiter's key: the org (whose epoch the store reads alongside), the key's id (never the raw
// key) and its window, so a new window starts a new count and a changed budget applies from the
// next request; a changed max keeps the count of the window.
const kLimiterKey = Symbol('limiterKey')
type Counted = FastifyRequest & { [kLimiterKey]?: string }

declare module 'fastify' {
  interface FastifyInstance {
    keyBudgets: KeyBudgets
  }
}

/**
 * The per-key budget on @fastify/rate-limit (issue 13's decision: it stays the rate limiter), for
 * the whole app (secret-scanning's report limit uses the same plugin). The plugin keeps the policy;
 * the store only counts, in Redis when configured (one Lua call that also reads the org's epoch for
 * the caches) or in this process's memory.
 */
async function keyBudgets (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const window = createWindowCounter({ redis: app.redis, keyPrefix: `${config.redisPrefix}rate-limit:`, log: app.log })
  const epochs = new Map<string, string | null>()
  class WindowStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number): void {
      // `${orgId}/…` for a key's budget; another limiter's key (no org) reads an epoch nobody moves.
      const orgId = key.includes('/') ? key.slice(0, key.indexOf('/')) : 'none'
      const counted = (result: WindowCount): void => {
        if (epochs.size >= 100_000) epochs.clear()
        epochs.set(orgId, result.epoch ?? null)
        callback(null, result)
      }
      const result = window.incr(key, timeWindow, orgEpochKey(config.redisPrefix, orgId))
      if (result instanceof Promise) result.then(counted, callback)
      else counted(result)
    }

    child (): FastifyRateLimitStore { return this }
  }
  await app.register(fastifyRateLimit, {
    global: false,
    store: WindowStore,
    keyGenerator: request => (request as Counted)[kLimiterKey] ?? ''
  })
  // One limiter per distinct budget, its max and window as numbers: the plugin then awaits no
  // function for them. Budgets are few; the map is emptied should they ever not be.
  const limiters = new Map<string, ReturnType<FastifyInstance['createRateLimit']>>()
  function limiterFor (budget: Budget): ReturnType<FastifyInstance['createRateLimit']> {
    const id = `${budget.max}/${budget.windowMs}`
    let limiter = limiters.get(id)
    if (limiter === undefined) {
      if (limiters.size >= 1000) limiters.clear()
      limiter = app.createRateLimit({ max: budget.max, timeWindow: budget.windowMs })
      limiters.set(id, limiter)
    }
    return limiter
  }

  app.decorate('keyBudgets', {
    count (request: FastifyRequest, keyId: string, orgId: string, budget: Budget) {
      (request as Counted)[kLimiterKey] = `${orgId}/${keyId}:${budget.windowMs}`
      return limiterFor(budget)(request)
    },
    epochSeen: (orgId: string) => epochs.get(orgId) ?? null,
    async release (limit: RateLimitResult) {
      if (!limit.isAllowed) await window.release(limit.key)
    },
    enforce (reply: FastifyReply, limit: RateLimitResult) {
      if (limit.isAllowed) return
      // The plugin's own reset is seconds-to-wait; the contract wants the epoch second the
      // window ends, derived from the store's ttl (windows end on whole seconds, see window-counter).
      reply.header('x-ratelimit-limit', limit.max)
      reply.header('x-ratelimit-remaining', limit.remaining)
      reply.header('x-ratelimit-reset', Math.round((Date.now() + limit.ttl) / 1000))
      if (limit.isExceeded) {
        app.metrics.apiKeyOutcome('rate_limited')
        app.metrics.rateLimited('api_key')
        const retryAfter = Math.max(1, limit.ttlInSeconds)
        reply.header('retry-after', retryAfter)
        throw new RateLimited(`Rate limit exceeded (${limit.max} requests per ${formatDuration(limit.timeWindow, true)} per API key); retry in ${retryAfter} seconds`)
      }
    }
  } satisfies KeyBudgets)
}

export default fp(keyBudgets, { name: 'rate-limit', fastify: '5.x', dependencies: ['redis', 'metrics'] })
