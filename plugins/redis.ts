import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import type { Config } from '../src/config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** null when REDIS_URL is unset: everything then lives in this process */
    redis: Redis | null
  }
}

async function redisPlugin (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  if (config.redisUrl === null) {
    app.decorate('redis', null)
    return
  }
  const redis = new Redis(config.redisUrl, {
    // Fail commands at once while Redis is down instead of queueing them: callers fall
    // back (database for auth, memory for rate limits) rather than wait.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 1000,
    retryStrategy: times => Math.min(times * 200, 2000),
    lazyConnect: true,
    // Commands issued in the same tick (a /public request's rate-limit count and its org-epoch
    // read) leave in one write: one round trip.
    enableAutoPipelining: true
  })
  let healthy = true
  redis.on('error', error => {
    if (healthy) app.log.warn({ err: error }, 'redis unavailable')
    healthy = false
  })
  redis.on('ready', () => {
    if (!healthy) app.log.info('redis reconnected')
    healthy = true
  })
  try {
    await redis.connect()
  } catch (error) {
    app.log.warn({ err: error }, 'redis not reachable at start-up; retrying in the background')
  }
  app.decorate('redis', redis)
  app.addHook('onClose', async () => { redis.disconnect() })
}

export default fp(redisPlugin, { name: 'redis', fastify: '5.x' })
