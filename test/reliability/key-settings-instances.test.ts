import t, { type Test } from 'tap'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstances, type Instance } from './support/instances.ts'
import { pool, request, type HttpResponse } from './support/http.ts'
import { createApiKey, keyHeaders, provisionTenant, type Tenant } from './support/provision.ts'
import { assertAlive, crashLines } from './support/faults.ts'

// Key settings (§9) across two real server processes sharing one PostgreSQL database and one
// Redis: A has the key cached, a PATCH through B changes its scopes, allowlist or budget, and A's
// very next request obeys the change (both ways: taking away and giving back).
const TRIALS = 10

t.test('key settings across two instances', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  const [a, b] = await startInstances(t, 2, { DATABASE_URL: url, REDIS_URL: process.env.REDIS_URL, REDIS_PREFIX: freshRedisPrefix(t) })
  const tenant = await provisionTenant(a.url)
  const statuses = new Map<number, number>()
  const publicOrg = async (instance: Instance, key: string): Promise<HttpResponse> => {
    const res = await request(instance.url, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key) })
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    return res
  }
  const patch = (instance: Instance, keyId: string, body: object): Promise<HttpResponse> => request(instance.url, {
    method: 'PATCH',
    path: `/api/v1/org/api-keys/${keyId}`,
    headers: { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug },
    body
  })

  /**
   * Per trial: warm A (the second call is answered from A's cache), change the key through B,
   * ask A at once, expecting `refused`; give the setting back through B, ask A, expecting 200.
   */
  async function trials (t: Test, what: string, change: object, restore: object, refused: (res: HttpResponse) => boolean): Promise<void> {
    const keys = await pool(TRIALS, 4, i => createApiKey(a.url, tenant as Tenant, `${what}-${i}`))
    const failures: string[] = []
    let passed = 0
    for (const [i, { key, id }] of keys.entries()) {
      const warm = [await publicOrg(a, key), await publicOrg(a, key)]
      if (warm.some(res => res.status !== 200)) { failures.push(`trial ${i}: warm-up ${warm.map(res => res.status).join(',')}`); continue }
      const changed = await patch(b, id, change)
      if (changed.status !== 200) { failures.push(`trial ${i}: PATCH ${changed.status} ${changed.body}`); continue }
      const after = await publicOrg(a, key)
      if (!refused(after)) { failures.push(`trial ${i}: A answered ${after.status} ${after.body} after the change`); continue }
      const restored = await patch(b, id, restore)
      if (restored.status !== 200) { failures.push(`trial ${i}: PATCH back ${restored.status}`); continue }
      const again = await publicOrg(a, key)
      if (again.status !== 200) { failures.push(`trial ${i}: A answered ${again.status} after the change was undone`); continue }
      passed++
    }
    t.comment(`${what} B→A: ${passed}/${TRIALS} trials obeyed on the next request`)
    t.equal(passed, TRIALS, `A obeys every change made through B on its next request (${what})`, { failures: failures.slice(0, 10) })
  }

  t.test('scopes', t => trials(t, 'scopes', { scopes: ['tokens:verify'] }, { scopes: ['org:read'] },
    res => res.status === 403 && res.json().code === 'insufficient_scope' && res.headers['x-ratelimit-limit'] === undefined))

  // The instances see the test's requests from 127.0.0.1.
  t.test('allowlists', t => trials(t, 'allowlist', { allowedIps: ['10.0.0.0/8', '2001:db8::/32'] }, { allowedIps: ['127.0.0.0/8'] },
    res => res.status === 403 && res.json().code === 'ip_not_allowed' && /127\.0\.0\.1/.test(res.json().message)))

  t.test('budgets', t => trials(t, 'budget', { rateLimit: { max: 7, windowSeconds: 60 } }, { rateLimit: null },
    res => res.status === 200 && res.headers['x-ratelimit-limit'] === '7'))

  t.test('expiry', async t => {
    const expiresAt = new Date(Date.now() + 3_600_000)
    await trials(t, 'expiry', { expiresAt: expiresAt.toISOString() }, { scopes: ['org:read'] },
      res => res.status === 200 && res.headers['x-api-key-expires-at'] === String(Math.floor(expiresAt.getTime() / 1000)))
  })

  t.test('no 5xx, no crash', async t => {
    t.same([...statuses].filter(([status]) => status >= 500), [], 'no /public response was a 5xx', { statuses: Object.fromEntries(statuses) })
    for (const instance of [a, b]) {
      assertAlive(t, instance)
      t.same(crashLines(instance), [], `${instance.name} logged no crash`)
    }
  })
})
