import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { processMemory, serveIpc, type ServerStats } from './ipc.ts'

/** The yardstick's routes: GET answers small JSON; POST validates a one-field JSON body like /public/verify's. */
export function addBareRoutes (app: FastifyInstance): void {
  const Answer = Type.Object({ status: Type.String(), data: Type.Object({ ok: Type.Boolean() }) })
  app.get('/bare', { schema: { response: { 200: Answer } } }, async () => ({ status: 'success', data: { ok: true } }))
  app.post('/bare', {
    schema: {
      body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
      response: { 200: Answer }
    }
  }, async () => ({ status: 'success', data: { ok: true } }))
}

/** Listens on 127.0.0.1 and answers the orchestrator (ipc.ts): a server with no database. */
export async function serveBareProcess (app: FastifyInstance): Promise<void> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  serveIpc({
    stats: (): ServerStats => ({ queries: 0, ...processMemory() }),
    exit: async () => {
      await app.close()
      setImmediate(() => process.exit(0))
    }
  }, { port: typeof address === 'object' && address !== null ? address.port : 0 })
}
