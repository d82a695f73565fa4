import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyRateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import { format as formatDuration } from '@lukeed/ms'
import type { Config } from '../src/config.ts'
import { createWindowCounter } from '../src/window-counter.ts'
import { RateLimited } from '../src/errors.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Hook after requireApiKey: counts the request against its API key's budget
     * (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW), sets X-RateLimit-Limit/-Remaining/-Reset
     * (Reset = the Unix second the window ends), and answers 429 with Retry-After when over.
     */
    rateLimitApiKey: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

async function rateLimit (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const count = createWindowCounter({ redis: app.redis, keyPrefix: `${config.redisPrefix}rate-limit:`, log: app.log })
  // @fastify/rate-limit keeps the policy (max, window, key); this store only counts.
  class WindowStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number): void {
      count(key, timeWindow).then(result => callback(null, result), callback)
    }

    child (): FastifyRateLimitStore { return this }
  }

  await app.register(fastifyRateLimit, {
    global: false,
    max: config.rateLimitMax,
    timeWindow: config.rateLimitWindowMs,
    store: WindowStore,
    // The key's id, never the raw key.
    keyGenerator: request => {
      if (request.apiKey === null) throw new Error('rateLimitApiKey registered before requireApiKey')
      return request.apiKey.id
    }
  })
  const check = app.createRateLimit()
  const policy = `${config.rateLimitMax} requests per ${formatDuration(config.rateLimitWindowMs, true)}`

  app.decorate('rateLimitApiKey', async function rateLimitApiKey (request: FastifyRequest, reply: FastifyReply) {
    const limit = await check(request)
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
      throw new RateLimited(`Rate limit exceeded (${policy} per API key); retry in ${retryAfter} seconds`)
    }
  })
}

export default fp(rateLimit, { name: 'rate-limit', fastify: '5.x', dependencies: ['redis', 'metrics', 'api-key'] })
