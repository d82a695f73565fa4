import http from 'node:http'
import t from 'tap'
import { build } from '../helper.ts'
import { request } from '../reliability/support/http.ts'

t.test('drain: answers go on with Connection: close, then the server stops accepting', async t => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())

  const before = await request(base, { path: '/health', agent })
  t.equal(before.headers.connection, 'keep-alive', 'kept alive before the drain')
  const draining = app.drain(300, 2000)
  const during = await request(base, { path: '/health', agent })
  t.equal(during.status, 200, 'still answering while draining')
  t.equal(during.headers.connection, 'close', 'each answer tells the client to move off')
  await draining
  await t.rejects(request(base, { path: '/health' }), { code: 'ECONNREFUSED' }, 'no longer accepting afterwards')
})
