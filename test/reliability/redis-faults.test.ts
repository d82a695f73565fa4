import t from 'tap'
import { adminHeaders } from '../helper.ts'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstance } from './support/instances.ts'
import { request } from './support/http.ts'
import { assertAlive, eventually, proxied } from './support/faults.ts'

// Redis vanishes under a real server process, then comes back. Redis only shares state
// between instances: losing it may cost shared counting, never correctness.
const REDIS_URL = process.env.REDIS_URL ?? ''

t.test('Redis cut: /ready 503, /health 200, routes without Redis keep working; restored: /ready 200', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  const redis = await proxied(t, REDIS_URL)
  const app = await startInstance(t, 'A', { DATABASE_URL: url, REDIS_URL: redis.url, REDIS_PREFIX: freshRedisPrefix(t) })
  t.equal((await request(app.url, { path: '/ready' })).status, 200, 'baseline')

  await redis.proxy.cut()
  const ready = await request(app.url, { path: '/ready' })
  t.equal(ready.status, 503)
  t.match(ready.json(), { code: 'unavailable', database: 'up', redis: 'down' })
  t.equal((await request(app.url, { path: '/health' })).status, 200)
  t.equal((await request(app.url, { path: '/api/v1/admin/orgs', headers: adminHeaders })).status, 200, 'the database path does not wait on Redis')
  assertAlive(t, app)

  await redis.proxy.restore()
  const back = await eventually(() => request(app.url, { path: '/ready' }), res => res.status === 200)
  t.equal(back.status, 200, 'Redis reconnects by itself')
})
