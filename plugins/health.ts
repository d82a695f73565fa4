import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'

const Status = (value: string) => Type.Object({ status: Type.Literal(value) })

/** /health (liveness, no dependencies) and /ready (database and Redis answer). */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', {
    schema: {
      tags: ['Operations'],
      operationId: 'health',
      summary: 'Liveness',
      description: 'Answers 200 while the process runs; touches no dependency.',
      response: { 200: Status('ok') }
    }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: {
      tags: ['Operations'],
      operationId: 'ready',
      summary: 'Readiness',
      description: 'Answers 200 when the database (and Redis, when configured) answers, 503 otherwise.',
      response: {
        200: Type.Object({ status: Type.Literal('ready'), database: Type.Literal('up'), redis: Type.Union([Type.Literal('up'), Type.Literal('disabled')]) }),
        503: Type.Object({
          status: Type.Literal('error'),
          message: Type.String(),
          code: Type.Literal('unavailable'),
          database: Type.Union([Type.Literal('up'), Type.Literal('down')]),
          redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('disabled')])
        })
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
