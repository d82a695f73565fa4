import { Type, type ObjectOptions } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { NoAuth, RequestTimeoutResponse } from '../schemas/common.ts'

const Status = (value: string, options: ObjectOptions) => Type.Object({ status: Type.Literal(value) }, options)

/** /health (liveness, no dependencies) and /ready (the database answers; Redis is reported, not required). */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', {
    schema: {
      tags: ['Operations'],
      security: NoAuth,
      operationId: 'health',
      summary: 'Liveness',
      description: 'Answers 200 while the process runs; touches no dependency, so a database outage does not get the ' +
        'process restarted. No authentication.',
      response: { 200: Status('ok', { description: 'The process is alive', examples: [{ status: 'ok' }] }), ...RequestTimeoutResponse }
    }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: {
      tags: ['Operations'],
      security: NoAuth,
      operationId: 'ready',
      summary: 'Readiness',
      description: 'Answers 200 when the database answers within 2 s, whatever Redis does: every route keeps working ' +
        'without Redis (rate-limit counters fall back to this process, caches to the database), so a Redis outage must ' +
        'not take every instance out of rotation at once. `redis` tells whether it answered within 1 s (`off` without ' +
        'REDIS_URL). 503 only when the database does not answer. For load balancers and orchestrators; no authentication.',
      response: {
        200: Type.Object({
          status: Type.Literal('ok'),
          database: Type.Literal('up'),
          redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('off')])
        }, {
          description: 'The database answers: send traffic here (`redis: "down"` is for alerting, not routing; `"off"` without REDIS_URL)',
          examples: [{ status: 'ok', database: 'up', redis: 'up' }, { status: 'ok', database: 'up', redis: 'off' }]
        }),
        503: Type.Object({
          status: Type.Literal('error'),
          message: Type.String(),
          code: Type.Literal('unavailable'),
          database: Type.Literal('down'),
          redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('off')])
        }, {
          description: 'The database does not answer: take this instance out of rotation (the error envelope plus each store\'s state)',
          examples: [{ status: 'error', message: 'Not ready: the database does not answer', code: 'unavailable', database: 'down', redis: 'off' }]
        }),
        ...RequestTimeoutResponse
      }
    }
  }, async (_request, reply) => {
    const [database, redis] = await Promise.all([
      withTimeout(app.database.ping(), 2000).then(() => 'up' as const, () => 'down' as const),
      app.redis === null
        ? 'off' as const
        : withTimeout(app.redis.ping(), 1000).then(() => 'up' as const, () => 'down' as const)
    ])
    if (database === 'up') return { status: 'ok' as const, database, redis }
    return reply.code(503).send({ status: 'error' as const, message: 'Not ready: the database does not answer', code: 'unavailable' as const, database, redis })
  })
}

function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export default health
