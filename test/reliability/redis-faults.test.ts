import t, { type Test } from 'tap'
import { adminHeaders } from '../helper.ts'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstance, startInstances, type Instance } from './support/instances.ts'
import { request, type HttpResponse } from './support/http.ts'
import { assertAlive, crashLines, eventually, proxied } from './support/faults.ts'
import { createApiKey, keyHeaders, provisionTenant } from './support/provision.ts'

// Redis vanishes under a real server process, then comes back. Redis only shares state
// between instances: losing it may cost shared counting, never correctness.
const REDIS_URL = process.env.REDIS_URL ?? ''

t.test('Redis cut: /ready 200 with redis down (§8), /health 200, routes without Redis keep working; restored: /ready 200', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  const redis = await proxied(t, REDIS_URL)
  const app = await startInstance(t, 'A', { DATABASE_URL: url, REDIS_URL: redis.url, REDIS_PREFIX: freshRedisPrefix(t) })
  t.equal((await request(app.url, { path: '/ready' })).status, 200, 'baseline')

  await redis.proxy.cut()
  const ready = await request(app.url, { path: '/ready' })
  t.equal(ready.status, 200, 'Redis down does not make the instance unready')
  t.same(ready.json(), { status: 'ok', database: 'up', redis: 'down' })
  t.equal((await request(app.url, { path: '/health' })).status, 200)
  t.equal((await request(app.url, { path: '/api/v1/admin/orgs', headers: adminHeaders })).status, 200, 'the database path does not wait on Redis')
  assertAlive(t, app)

  await redis.proxy.restore()
  const back = await eventually(() => request(app.url, { path: '/ready' }), res => res.status === 200 && res.json().redis === 'up')
  t.same(back.json(), { status: 'ok', database: 'up', redis: 'up' }, 'Redis reconnects by itself')
})

// Both instances reach Redis only through the test's proxy, so the cut takes Redis from both.
t.test('Redis cut under two instances: revocations hold, /public keeps answering, shared counting resumes', { skip: needs('postgres', 'redis') }, async t => {
  const LIMIT = 20
  const { url } = await freshDatabase(t)
  const redis = await proxied(t, REDIS_URL)
  const [a, b] = await startInstances(t, 2, { DATABASE_URL: url, REDIS_URL: redis.url, REDIS_PREFIX: freshRedisPrefix(t), RATE_LIMIT_MAX: String(LIMIT) })
  const tenant = await provisionTenant(a.url)
  const [revokedBefore, revokedDuring, valid, counted] = await Promise.all(['before', 'during', 'valid', 'counted'].map(name => createApiKey(a.url, tenant, name)))
  const asAdmin = { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug }

  const responses: Array<{ what: string, res: HttpResponse }> = []
  const call = async (what: string, instance: Instance, options: Parameters<typeof request>[1]): Promise<HttpResponse> => {
    const res = await request(instance.url, options)
    responses.push({ what: `${instance.name} ${what}`, res })
    return res
  }
  const publicOrg = (instance: Instance, key: { key: string }, what: string): Promise<HttpResponse> =>
    call(what, instance, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key.key) })
  const revoke = (key: { id: string }): Promise<HttpResponse> =>
    call('revoke', a, { method: 'DELETE', path: `/api/v1/org/api-keys/${key.id}`, headers: asAdmin })

  // Warm both instances' caches (the second call is answered from the cache, stamped with the epoch).
  for (const instance of [a, b]) {
    for (const key of [revokedBefore, revokedDuring, valid]) {
      for (let i = 0; i < 2; i++) t.equal((await publicOrg(instance, key, 'warm-up')).status, 200, `${instance.name} warm-up`)
    }
  }
  t.equal((await revoke(revokedBefore)).status, 200, 'a key revoked just before the cut')

  await redis.proxy.cut()
  for (const instance of [a, b]) {
    const res = await publicOrg(instance, revokedBefore, 'revoked before the cut')
    t.equal(res.status, 401, `${instance.name}: the key revoked before the cut is refused`)
  }
  t.equal((await revoke(revokedDuring)).status, 200, 'revoking while Redis is cut still works (PostgreSQL holds the truth)')
  for (const instance of [b, a]) {
    const res = await publicOrg(instance, revokedDuring, 'revoked during the cut')
    t.equal(res.status, 401, `${instance.name}: the key revoked during the cut is refused on the next request`)
    t.equal(res.json().code, 'invalid_api_key')
  }

  // The limiter falls back to each instance's memory: a valid key is still served, with headers.
  for (const instance of [a, b]) {
    for (let i = 1; i <= 3; i++) {
      const res = await publicOrg(instance, valid, 'valid key during the cut')
      t.equal(res.status, 200, `${instance.name}: a valid key answers 200 while Redis is cut`)
      t.equal(res.headers['x-ratelimit-limit'], String(LIMIT))
      t.equal(res.headers['x-ratelimit-remaining'], String(LIMIT - i), `${instance.name}: counted in this instance's memory`)
      t.ok(Number(res.headers['x-ratelimit-reset']) > Date.now() / 1000, 'Reset is an epoch second ahead')
    }
    const verified = await call('verify during the cut', instance, { method: 'POST', path: '/api/v1/public/verify', headers: keyHeaders(tenant, valid.key), body: { token: tenant.accessToken } })
    t.equal(verified.status, 200)
    t.equal(verified.json().data.valid, true, `${instance.name}: /public/verify answers from PostgreSQL`)
    const user = await call('user during the cut', instance, { path: `/api/v1/public/users/${tenant.admin.id}`, headers: keyHeaders(tenant, valid.key) })
    t.equal(user.status, 200, `${instance.name}: /public/users answers`)
  }

  await redis.proxy.restore()
  for (const instance of [a, b]) {
    const ready = await eventually(() => request(instance.url, { path: '/ready' }), res => res.status === 200 && res.json().redis === 'up')
    t.equal(ready.json().redis, 'up', `${instance.name}: Redis reconnects by itself`)
  }
  for (const instance of [a, b]) {
    for (const key of [revokedBefore, revokedDuring]) {
      t.equal((await publicOrg(instance, key, 'revoked key after restore')).status, 401, `${instance.name}: a revoked key stays refused after the restore`)
    }
  }
  // Shared counting resumes: a burst split over A and B spends one budget.
  const burst = await Promise.all(Array.from({ length: 2 * LIMIT }, (_, i) => publicOrg(i % 2 === 0 ? a : b, counted, 'after restore')))
  const admitted = burst.filter(res => res.status === 200).length
  t.comment(`after restore: ${admitted} of ${2 * LIMIT} requests over A and B admitted (limit ${LIMIT})`)
  t.equal(admitted, LIMIT, `exactly ${LIMIT} of ${2 * LIMIT} admitted: A and B count in Redis again`)
  t.equal(burst.filter(res => res.status === 429).length, LIMIT, 'the rest are 429')

  const serverErrors = responses.filter(({ res }) => res.status >= 500).map(({ what, res }) => `${what}: ${res.status} ${res.body}`)
  t.same(serverErrors, [], `no 5xx among ${responses.length} responses`)
  for (const instance of [a, b]) {
    assertAlive(t, instance)
    t.same(crashLines(instance), [], `${instance.name} logged no crash`)
  }
})

// A partition rather than an outage: the revoking instance cannot reach Redis, the serving one
// can. The write commits but cannot move the org epoch on, so B keeps trusting its cached copy
// until the entry's 60 s TTL (public-cache ENTRY_TTL_MS), or until A reaches Redis again and
// announces the missed change. Known limit, kept as a todo: making it immediate needs writers
// to refuse while they cannot announce, which would also refuse every revocation during a full
// Redis outage, when revocation is immediate anyway (no instance trusts its cache then).
/**
 * A partition: A reaches Redis through a proxy, B directly. B caches a key; the proxy is cut and
 * A revokes the key. Returns the proxy and a /public request on B with that key.
 */
async function revokeOnACutFromRedis (t: Test) {
  const { url } = await freshDatabase(t)
  const prefix = freshRedisPrefix(t)
  const redis = await proxied(t, REDIS_URL)
  const a = await startInstance(t, 'A', { DATABASE_URL: url, REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const b = await startInstance(t, 'B', { DATABASE_URL: url, REDIS_URL, REDIS_PREFIX: prefix })
  const tenant = await provisionTenant(a.url)
  const { key, id } = await createApiKey(a.url, tenant)
  const onB = () => request(b.url, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key) })
  for (let i = 0; i < 2; i++) t.equal((await onB()).status, 200, 'B warm-up')
  await redis.proxy.cut()
  const revoked = await request(a.url, { method: 'DELETE', path: `/api/v1/org/api-keys/${id}`, headers: { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug } })
  t.equal(revoked.status, 200, 'A revokes the key while it cannot reach Redis')
  return { redis, onB }
}

t.test('Redis cut for A only: a key A revokes is refused on B', { skip: needs('postgres', 'redis'), todo: 'revocation during a partition between the writer and Redis is not immediate on the other instances' }, async t => {
  const { onB } = await revokeOnACutFromRedis(t)
  t.equal((await onB()).status, 401, 'B refuses the key')
})

t.test('Redis cut for A only: what A changed meanwhile is announced once A reaches Redis again', { skip: needs('postgres', 'redis') }, async t => {
  const { redis, onB } = await revokeOnACutFromRedis(t)
  const restoredAt = Date.now()
  await redis.proxy.restore()
  // Well inside the 60 s cache TTL: the announcement, not the expiry, makes B refuse the key.
  const refused = await eventually(onB, res => res.status === 401, 60)
  t.equal(refused.status, 401, 'B refuses the key')
  t.ok(Date.now() - restoredAt < 20_000, `B refused it ${Date.now() - restoredAt} ms after A could reach Redis again`)
})
