import { Type, type ObjectOptions } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { NoAuth, RequestTimeoutResponse } from '../schemas/common.ts'

const Status = (value: string, options: ObjectOptions) => Type.Object({ status: Type.Literal(value) }, options)

/** /health (liveness, no dependencies) and /ready (database and Redis answer). */
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
      description: 'Answers 200 when the database (and Redis, when configured) answers within 2 s (1 s for Redis), 503 ' +
        'otherwise. For load balancers and orchestrators; no authentication.',
      response: {
        200: Type.Object({ status: Type.Literal('ready'), database: Type.Literal('up'), redis: Type.Union([Type.Literal('up'), Type.Literal('disabled')]) }, {
          description: 'Every backing store answers (`redis: "disabled"` without REDIS_URL)',
          examples: [{ status: 'ready', database: 'up', redis: 'disabled' }]
        }),
        503: Type.Object({
          status: Type.Literal('error'),
          message: Type.String(),
          code: Type.Literal('unavailable'),
          database: Type.Union([Type.Literal('up'), Type.Literal('down')]),
          redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('disabled')])
        }, {
          description: 'A backing store does not answer: take this instance out of rotation (the error envelope plus which store is down)',
          examples: [{ status: 'error', message: 'Not ready: a backing store does not answer', code: 'unavailable', database: 'down', redis: 'disabled' }]
        }),
        ...RequestTimeoutResponse
      }
    }
  }, async (_request, reply) => {
    const database = await withTimeout(app.database.ping(), 2000).then(() => 'up' as const, () => 'down' as const)
    const redis = app.redis === null
      ? 'disabled' as const
      : await withTimeout(app.redis.ping(), 1000).then(() => 'up' as const, () => 'down' as const)
    if (database === 'up' && redis !== 'down') return { status: 'ready' as const, database, redis }
    return reply.code(503).send({ status: 'error' as const, message: 'Not ready: a backing store does not answer', code: 'unavailable' as const, database, redis })
  })
}

function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export default health
