import t from 'tap'
import { build, REDIS_URL } from '../helper.ts'
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
  t.same(res.json(), { status: 'ok', database: 'up', redis: REDIS_URL === null ? 'off' : 'up' })
})

t.test('/ready without REDIS_URL: 200 with redis "off"', async t => {
  const app = await build(t, { redisUrl: null })
  const res = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok', database: 'up', redis: 'off' })
})

t.test('/ready with Redis down stays 200 (redis "down"): every route works without Redis (§8)', async t => {
  // A Redis URL where nothing listens: every command fails at once.
  const app = await build(t, { redisUrl: 'redis://127.0.0.1:1' })
  const res = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok', database: 'up', redis: 'down' })
})

t.test('/ready with Redis up: 200 with redis "up"', { skip: REDIS_URL === null && 'needs REDIS_URL' }, async t => {
  const app = await build(t, { redisUrl: REDIS_URL })
  const res = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok', database: 'up', redis: 'up' })
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
