// bare-server.ts's routes and, under /api/v1/public, the contract's floor (lib/contract-floor.ts),
// in one process for bench/floor.ts: the two are compared on the same server.
import { Type } from '@sinclair/typebox'
import { processMemory, serveIpc, type ServerStats } from './lib/ipc.ts'
import { addContractFloor, floorFastify } from './lib/contract-floor.ts'

const app = floorFastify(process.env.LOG_LEVEL ?? 'warn')
await addContractFloor(app)

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
