import http from 'node:http'
import t from 'tap'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstances, type Instance } from './support/instances.ts'
import { request, type HttpResponse } from './support/http.ts'
import { keyHeaders, provisionTenant, type Tenant } from './support/provision.ts'
import { assertAlive } from './support/faults.ts'

// The races the freshness rule of the /public caches exists for (plugins/public-api/freshness.ts),
// against real Redis and two server processes: B is under a steady concurrent load with a key
// while A changes the key. Every B request sent after A answered the change must see it, whatever
// B had in flight at that moment: loads started under the old epoch, requests sharing them, cache
// entries stamped a moment before. Requests sent before may go either way.
const TRIALS = 15
const LOOPS = 8 // concurrent requests kept in flight on B
const AFTER_MS = 150 // how long B stays under load once A has answered

interface Sample { sentAt: number, status: number, code: string | undefined }

t.test('a change through A is seen by every B request sent after A answered, under concurrent load', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  // Budgets out of the way: thousands of requests per key, and the 401s after a revocation are
  // no guesses this test is about.
  const [a, b] = await startInstances(t, 2, {
    DATABASE_URL: url,
    REDIS_URL: process.env.REDIS_URL,
    REDIS_PREFIX: freshRedisPrefix(t),
    RATE_LIMIT_MAX: '1000000',
    API_KEY_FAILURE_MAX: '1000000'
  })
  const tenant = await provisionTenant(a.url)
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS })
  t.teardown(() => agent.destroy())
  const asAdmin = { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug }

  /** Load on B with the key while `change` runs on A; the B answers to requests sent after A answered. */
  async function race (key: string, change: () => Promise<HttpResponse>): Promise<{ changed: HttpResponse, before: Sample[], after: Sample[] }> {
    const samples: Sample[] = []
    let stopAt = Infinity
    const loop = async (): Promise<void> => {
      while (Date.now() < stopAt) {
        const sentAt = performance.now()
        const res = await request(b.url, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key), agent })
        samples.push({ sentAt, status: res.status, code: res.status === 200 ? undefined : res.json().code })
      }
    }
    const loops = Array.from({ length: LOOPS }, loop)
    await new Promise(resolve => setTimeout(resolve, 30))
    const changed = await change()
    const answeredAt = performance.now()
    stopAt = Date.now() + AFTER_MS
    await Promise.all(loops)
    return { changed, before: samples.filter(s => s.sentAt < answeredAt), after: samples.filter(s => s.sentAt > answeredAt) }
  }

  async function warmed (tenant: Tenant, instance: Instance, body: Record<string, unknown>): Promise<{ key: string, id: string }> {
    const created = await request(a.url, { method: 'POST', path: '/api/v1/org/api-keys', headers: asAdmin, body: { name: 'race', ...body } })
    if (created.status !== 201) throw new Error(`create key: ${created.status} ${created.body}`)
    const { key, apiKey } = created.json().data
    for (let i = 0; i < 2; i++) {
      const res = await request(instance.url, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key), agent })
      if (res.status !== 200) throw new Error(`warm-up: ${res.status} ${res.body}`)
    }
    return { key, id: apiKey.id }
  }

  t.test(`revocation: ${TRIALS} trials`, async t => {
    let seenAfter = 0
    const stale: string[] = []
    for (let trial = 0; trial < TRIALS; trial++) {
      const { key, id } = await warmed(tenant, b, {})
      const { changed, before, after } = await race(key, () => request(a.url, { method: 'DELETE', path: `/api/v1/org/api-keys/${id}`, headers: asAdmin }))
      t.equal(changed.status, 200, `trial ${trial}: revoked through A`)
      t.ok(before.some(s => s.status === 200), `trial ${trial}: B answered 200s before the revocation (${before.length} requests)`)
      for (const s of after) if (s.status !== 401 || s.code !== 'invalid_api_key') stale.push(`trial ${trial}: ${s.status} ${s.code ?? ''}`)
      t.same([...before, ...after].filter(s => s.status >= 500), [], `trial ${trial}: no 5xx`)
      seenAfter += after.length
    }
    t.comment(`revocation: ${seenAfter} B requests sent after A answered, all 401`)
    t.ok(seenAfter >= TRIALS * LOOPS, 'the load went on after every revocation')
    t.same(stale, [], 'no B request sent after the revocation was answered with the old key state')
  })

  t.test(`scopes narrowed: ${TRIALS} trials`, async t => {
    let seenAfter = 0
    const stale: string[] = []
    for (let trial = 0; trial < TRIALS; trial++) {
      const { key, id } = await warmed(tenant, b, { scopes: ['org:read', 'users:read'] })
      const { changed, after } = await race(key, () => request(a.url, { method: 'PATCH', path: `/api/v1/org/api-keys/${id}`, headers: asAdmin, body: { scopes: ['users:read'] } }))
      t.equal(changed.status, 200, `trial ${trial}: scopes changed through A`)
      for (const s of after) if (s.status !== 403 || s.code !== 'insufficient_scope') stale.push(`trial ${trial}: ${s.status} ${s.code ?? ''}`)
      seenAfter += after.length
    }
    t.comment(`scopes: ${seenAfter} B requests sent after A answered, all 403`)
    t.ok(seenAfter >= TRIALS * LOOPS, 'the load went on after every change')
    t.same(stale, [], 'no B request sent after the change was answered with the old scopes')
  })

  t.test('an allowlist that shuts B\'s client out, then lets it in again', async t => {
    const { key, id } = await warmed(tenant, b, {})
    const patch = (allowedIps: string[]) => () => request(a.url, { method: 'PATCH', path: `/api/v1/org/api-keys/${id}`, headers: asAdmin, body: { allowedIps } })
    const shut = await race(key, patch(['203.0.113.0/24']))
    t.equal(shut.changed.status, 200)
    t.same(shut.after.filter(s => s.status !== 403 || s.code !== 'ip_not_allowed'), [], 'every request after: 403 ip_not_allowed')
    // The way back: a refusal read from the cache is confirmed against the epoch before it is given.
    const open = await race(key, patch(['127.0.0.0/8', '::1/128']))
    t.equal(open.changed.status, 200)
    t.same(open.after.filter(s => s.status !== 200), [], 'every request after: 200')
    t.ok(shut.after.length > 0 && open.after.length > 0, 'the load went on after both changes')
  })

  assertAlive(t, a)
  assertAlive(t, b)
})
