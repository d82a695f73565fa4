// The yardstick: Fastify with nothing but a route, on the same log level as the app.
// GET answers small JSON; POST validates a one-field JSON body like /public/verify's.
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { processMemory, serveIpc, type ServerStats } from './lib/ipc.ts'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } })

const Answer = Type.Object({ status: Type.String(), data: Type.Object({ ok: Type.Boolean() }) })
app.get('/bare', { schema: { response: { 200: Answer } } }, async () => ({ status: 'success', data: { ok: true } }))
app.post('/bare', {
  schema: {
    body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
    response: { 200: Answer }
  }
}, async () => ({ status: 'success', data: { ok: true } }))

await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()

serveIpc({
  stats: (): ServerStats => ({ queries: 0, ...processMemory() }),
  exit: async () => {
    await app.close()
    setImmediate(() => process.exit(0))
  }
}, { port: typeof address === 'object' && address !== null ? address.port : 0 })
