import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstances, type Instance } from './support/instances.ts'
import { pool, request, type HttpResponse } from './support/http.ts'
import { createApiKey, keyHeaders, provisionTenant } from './support/provision.ts'
import { assertAlive, crashLines } from './support/faults.ts'

// Key rotation (§9) across two real server processes sharing one PostgreSQL database and one
// Redis: a rotation through A is seen by B's next request, like a revocation.
const TRIALS = 20

t.test('rotation across two instances', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  const [a, b] = await startInstances(t, 2, { DATABASE_URL: url, REDIS_URL: process.env.REDIS_URL, REDIS_PREFIX: freshRedisPrefix(t) })
  const tenant = await provisionTenant(a.url)
  const statuses = new Map<number, number>()
  const publicOrg = async (instance: Instance, key: string): Promise<HttpResponse> => {
    const res = await request(instance.url, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key) })
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    return res
  }
  const rotate = (instance: Instance, keyId: string, gracePeriodSeconds: number): Promise<HttpResponse> => request(instance.url, {
    method: 'POST',
    path: `/api/v1/org/api-keys/${keyId}/rotate`,
    headers: { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug },
    body: { gracePeriodSeconds }
  })

  // Each trial warms B (the second call is answered from B's cache), rotates through A, asks B at once.
  t.test(`rotated with gracePeriodSeconds 0 via A: the old key is refused on B at once, the new one accepted, ${TRIALS} trials`, async t => {
    const keys = await pool(TRIALS, 4, i => createApiKey(a.url, tenant, `rotate-now-${i}`))
    let passed = 0
    const failures: string[] = []
    for (const [i, { key, id }] of keys.entries()) {
      const warm = [await publicOrg(b, key), await publicOrg(b, key)]
      if (warm.some(res => res.status !== 200)) { failures.push(`trial ${i}: warm-up ${warm.map(res => res.status).join(',')}`); continue }
      const rotated = await rotate(a, id, 0)
      if (rotated.status !== 201) { failures.push(`trial ${i}: rotate ${rotated.status} ${rotated.body}`); continue }
      const [old, fresh] = [await publicOrg(b, key), await publicOrg(b, rotated.json().data.key)]
      if (old.status === 401 && old.json().code === 'invalid_api_key' && fresh.status === 200) passed++
      else failures.push(`trial ${i}: B answered the old key ${old.status}, the new one ${fresh.status}`)
    }
    t.comment(`rotation with grace 0 A→B: ${passed}/${TRIALS} trials refused the old key at once`)
    t.equal(passed, TRIALS, 'every old key is refused by B on the next request; every new key accepted', { failures: failures.slice(0, 10) })
  })

  t.test('rotated with a grace period via A: the old key works on B until the grace period ends, then is refused', async t => {
    const keys = await pool(5, 4, i => createApiKey(a.url, tenant, `rotate-grace-${i}`))
    for (const { key } of keys) for (let i = 0; i < 2; i++) t.equal((await publicOrg(b, key)).status, 200, 'B has the key cached')
    const rotations = await pool(keys.length, 4, i => rotate(a, keys[i].id, 3))
    t.same(rotations.map(res => res.status), keys.map(() => 201))
    const ends = rotations.map(res => new Date(res.json().data.previous.expiresAt).getTime())
    const during = await Promise.all(keys.map(({ key }) => publicOrg(b, key)))
    // Allow for the machine's load: only the answers given well before the end count.
    if (Date.now() < Math.min(...ends) - 500) t.same(during.map(res => res.status), keys.map(() => 200), 'during the grace period B accepts the old keys')
    else t.comment('the grace period ran out before B was asked: the during-grace check was skipped')
    await sleep(Math.max(...ends) - Date.now() + 100)
    const after = await Promise.all(keys.map(({ key }) => publicOrg(b, key)))
    t.same(after.map(res => res.status), keys.map(() => 401), 'after it B refuses them')
    const fresh = await Promise.all(rotations.map(res => publicOrg(b, res.json().data.key)))
    t.same(fresh.map(res => res.status), keys.map(() => 200), 'the new keys go on')
  })

  t.test('no 5xx, no crash', async t => {
    t.same([...statuses].filter(([status]) => status >= 500), [], 'no /public response was a 5xx', { statuses: Object.fromEntries(statuses) })
    for (const instance of [a, b]) {
      assertAlive(t, instance)
      t.same(crashLines(instance), [], `${instance.name} logged no crash`)
    }
  })
})
