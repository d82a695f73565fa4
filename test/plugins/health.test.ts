import t from 'tap'
import { build } from '../helper.ts'
import { createDatabase } from '../../db/connect.ts'

t.test('/health answers 200 without touching a dependency', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
})

t.test('/ready answers 200 when the database answers', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(res.statusCode, 200)
  t.equal(res.json().database, 'up')
})

t.test('/ready answers 503 when the database does not, and /health stays 200', async t => {
  // A PostgreSQL URL where nothing listens: the pool fails to connect.
  const database = createDatabase({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none', dataDir: 'memory://' })
  const app = await build(t, { redisUrl: null }, { database })
  t.teardown(() => database.close())
  const ready = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { status: 'error', code: 'unavailable', database: 'down' })
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const routeNeedingDb = await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: { authorization: 'Bearer test-admin-token-0123456789abcdef' } })
  t.equal(routeNeedingDb.statusCode, 503)
  t.match(routeNeedingDb.json(), { status: 'error', code: 'unavailable' })
})
