import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyRateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import { format as formatDuration } from '@lukeed/ms'
import type { Config } from '../src/config.ts'
import type { AuthenticatedApiKey } from './api-key.ts'
import { createWindowCounter } from '../src/window-counter.ts'
import { RateLimited } from '../src/errors.ts'

/** What @fastify/rate-limit's limiter (createRateLimit) answers for one request. */
export type RateLimitResult = Awaited<ReturnType<ReturnType<FastifyInstance['createRateLimit']>>>

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Counts the request against its API key's effective budget (request.apiKey.budget: the
     * key's own, else its org's, else RATE_LIMIT_MAX per RATE_LIMIT_WINDOW). Started as soon as
     * the key is known, so that in Redis it leaves with the org-epoch read: one round trip.
     */
    countApiKeyRequest: (request: FastifyRequest) => Promise<RateLimitResult>
    /** Gives back a count that turned out not to be owed (the key was refused, or its budget changed). */
    uncountApiKeyRequest: (counted: Promise<RateLimitResult>) => Promise<void>
    /**
     * Sets X-RateLimit-Limit/-Remaining/-Reset (Reset = the Unix second the window ends) from a
     * count, and answers 429 with Retry-After when over.
     */
    rateLimitApiKey: (reply: FastifyReply, counted: Promise<RateLimitResult>) => Promise<void>
  }
}

function budgetOf (request: FastifyRequest): AuthenticatedApiKey['budget'] {
  if (request.apiKey === null) throw new Error('the API key budget is counted before requireApiKey')
  return request.apiKey.budget
}

async function rateLimit (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const window = createWindowCounter({ redis: app.redis, keyPrefix: `${config.redisPrefix}rate-limit:`, log: app.log })
  // @fastify/rate-limit keeps the policy (max, window, key); this store only counts.
  class WindowStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number): void {
      window.incr(key, timeWindow).then(result => callback(null, result), callback)
    }

    child (): FastifyRateLimitStore { return this }
  }

  await app.register(fastifyRateLimit, {
    global: false,
    // The effective budget of the request's key (§9), read from what was cached with the key.
    max: request => budgetOf(request).max,
    timeWindow: request => budgetOf(request).windowMs,
    store: WindowStore,
    // The key's id, never the raw key, and its window: a new window starts a new count, so a
    // changed budget applies from the next request. A changed max keeps the count of the window.
    keyGenerator: request => `${request.apiKey?.id ?? ''}:${budgetOf(request).windowMs}`
  })
  const check = app.createRateLimit()

  app.decorate('countApiKeyRequest', check)

  app.decorate('uncountApiKeyRequest', async function uncountApiKeyRequest (counted: Promise<RateLimitResult>) {
    const limit = await counted
    if (!limit.isAllowed) await window.release(limit.key)
  })

  app.decorate('rateLimitApiKey', async function rateLimitApiKey (reply: FastifyReply, counted: Promise<RateLimitResult>) {
    const limit = await counted
    if (limit.isAllowed) return
    // The plugin's own reset is seconds-to-wait; the contract wants the epoch second the
    // window ends, derived from the store's ttl (windows end on whole seconds, see window-counter).
    const resetAt = Math.round((Date.now() + limit.ttl) / 1000)
    reply.header('x-ratelimit-limit', limit.max)
    reply.header('x-ratelimit-remaining', limit.remaining)
    reply.header('x-ratelimit-reset', resetAt)
    if (limit.isExceeded) {
      app.metrics.apiKeyOutcome('rate_limited')
      app.metrics.rateLimited('api_key')
      const retryAfter = Math.max(1, limit.ttlInSeconds)
      reply.header('retry-after', retryAfter)
      throw new RateLimited(`Rate limit exceeded (${limit.max} requests per ${formatDuration(limit.timeWindow, true)} per API key); retry in ${retryAfter} seconds`)
    }
  })
}

export default fp(rateLimit, { name: 'rate-limit', fastify: '5.x', dependencies: ['redis', 'metrics', 'api-key'] })
