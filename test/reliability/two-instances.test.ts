import http from 'node:http'
import t from 'tap'
import { adminHeaders, uniqueSlug } from '../helper.ts'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstances, type Instance } from './support/instances.ts'
import { pool, request, type HttpResponse } from './support/http.ts'
import { createApiKey, createMember, keyHeaders, login, provisionTenant } from './support/provision.ts'
import { assertAlive, crashLines } from './support/faults.ts'

// Several real server processes behind no balancer, sharing one PostgreSQL database and one
// Redis: what one instance writes, every other one sees at once, and they share one rate budget.
const TRIALS = 100
const BURST = 1000
const LIMIT = 300 // RATE_LIMIT_MAX's default, which these instances keep

t.test('two instances share one database and one Redis', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  const [a, b] = await startInstances(t, 2, { DATABASE_URL: url, REDIS_URL: process.env.REDIS_URL, REDIS_PREFIX: freshRedisPrefix(t) })
  // Every /public response of this file, to check that none is a 5xx.
  const statuses = new Map<number, number>()
  const call = async (instance: Instance, options: Parameters<typeof request>[1]): Promise<HttpResponse> => {
    const res = await request(instance.url, options)
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    return res
  }

  t.test('both ready; what A writes B reads', async t => {
    for (const instance of [a, b]) {
      const ready = await request(instance.url, { path: '/ready' })
      t.equal(ready.status, 200, `${instance.name} is ready`)
      t.match(ready.json(), { database: 'up', redis: 'up' })
    }
    const slug = uniqueSlug('shared')
    const created = await request(a.url, { method: 'POST', path: '/api/v1/admin/orgs', headers: adminHeaders, body: { slug, name: 'Shared' } })
    t.equal(created.status, 201)
    const listed = await request(b.url, { path: '/api/v1/admin/orgs', headers: adminHeaders })
    t.ok(listed.json().data.orgs.some((org: { slug: string }) => org.slug === slug), 'B lists the org A created')
  })

  const tenant = await provisionTenant(a.url)

  t.test(`${BURST} concurrent requests with one key over A and B: exactly ${LIMIT} admitted`, async t => {
    const { key } = await createApiKey(a.url, tenant, 'burst')
    // One socket per request, so the burst really is concurrent (per host: 500 each on A and B).
    const agent = new http.Agent({ keepAlive: true, maxSockets: BURST })
    t.teardown(() => agent.destroy())
    const started = Date.now()
    const responses = await Promise.all(Array.from({ length: BURST }, (_, i) =>
      call(i % 2 === 0 ? a : b, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key), agent })))
    const elapsed = Date.now() - started
    const admitted = responses.filter(res => res.status === 200)
    const limited = responses.filter(res => res.status === 429)
    t.equal(admitted.length, LIMIT, `exactly ${LIMIT} admitted`)
    t.equal(limited.length, BURST - LIMIT, `the other ${BURST - LIMIT} are 429`)
    t.same(responses.filter(res => res.status !== 200 && res.status !== 429).map(res => `${res.status} ${res.body}`), [], 'nothing else')
    const tally = (n: number): string => {
      const of = responses.filter((_, i) => i % 2 === n)
      return `${of.filter(res => res.status === 200).length}/${of.length} admitted`
    }
    t.comment(`${BURST} concurrent requests in ${elapsed} ms: ${admitted.length} admitted, ${limited.length} limited (A ${tally(0)}, B ${tally(1)})`)

    const remaining = admitted.map(res => Number(res.headers['x-ratelimit-remaining'])).sort((x, y) => y - x)
    t.same(remaining, Array.from({ length: LIMIT }, (_, i) => LIMIT - 1 - i), `the 200s carry Remaining ${LIMIT - 1} … 0, each once`)
    t.ok(admitted.every(res => res.headers['x-ratelimit-limit'] === String(LIMIT)), 'the 200s carry X-RateLimit-Limit')
    t.ok(admitted.every(res => res.json().data.org.slug === tenant.slug), 'the 200s answer the org')

    const badLimited = limited.filter(res => {
      const body = res.json()
      return body.status !== 'error' || body.code !== 'rate_limited' || typeof body.message !== 'string' ||
        !/^[1-9]\d*$/.test(String(res.headers['retry-after'])) ||
        res.headers['x-ratelimit-limit'] !== String(LIMIT) || res.headers['x-ratelimit-remaining'] !== '0' ||
        res.headers['x-ratelimit-reset'] === undefined
    })
    t.same(badLimited.map(res => ({ headers: res.headers, body: res.body })), [], 'every 429: envelope (rate_limited), Retry-After, Limit, Remaining 0, Reset')

    // Reset is the Unix second the window ends: one value for the whole burst, ~15 min ahead.
    const resets = new Set(responses.map(res => res.headers['x-ratelimit-reset']))
    t.equal(resets.size, 1, 'one X-RateLimit-Reset for every response of the window', { resets: [...resets] })
    const reset = Number([...resets][0])
    const now = Date.now() / 1000
    t.ok(reset > now + 15 * 60 - 60 && reset <= now + 15 * 60 + 1, 'Reset is the epoch second the 15-minute window ends', { reset, now })
    // Each 429 was sent between the burst's start and now: Retry-After counts from then to Reset.
    const retryAfters = limited.map(res => Number(res.headers['retry-after']))
    t.ok(retryAfters.every(seconds => reset - seconds >= started / 1000 - 1 && reset - seconds <= now + 1),
      'Retry-After is the seconds left until that Reset', { reset, started: started / 1000, now, min: Math.min(...retryAfters), max: Math.max(...retryAfters) })
  })

  const publicOrg = (instance: Instance, key: string): Promise<HttpResponse> =>
    call(instance, { path: '/api/v1/public/org', headers: keyHeaders(tenant, key) })
  const verify = (instance: Instance, key: string, token: string): Promise<HttpResponse> =>
    call(instance, { method: 'POST', path: '/api/v1/public/verify', headers: keyHeaders(tenant, key), body: { token } })
  const asAdmin = (extra: Record<string, string> = {}): Record<string, string> =>
    ({ authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug, ...extra })
  // B's cache has answered this request without the database when its lookup hit (metrics).
  const sessionCacheHits = async (instance: Instance): Promise<number> => {
    const res = await request(instance.url, { path: '/metrics' })
    const match = /^tenantkey_cache_requests_total\{cache="sessions",result="hit"\} (\d+)/m.exec(res.body)
    return match === null ? 0 : Number(match[1])
  }

  // Each trial warms B (two calls: the first loads from the database, the second is answered
  // from B's cache stamped with the current org epoch), writes through A, and asks B at once.
  t.test(`key revoked via A: refused on B at once, ${TRIALS} trials`, async t => {
    const keys = await pool(TRIALS, 4, i => createApiKey(i % 2 === 0 ? a.url : b.url, tenant, `revoke-${i}`))
    let passed = 0
    const failures: string[] = []
    for (const [i, { key, id }] of keys.entries()) {
      const warm = [await publicOrg(b, key), await publicOrg(b, key)]
      if (warm.some(res => res.status !== 200)) { failures.push(`trial ${i}: warm-up ${warm.map(res => res.status).join(',')}`); continue }
      const revoked = await call(a, { method: 'DELETE', path: `/api/v1/org/api-keys/${id}`, headers: asAdmin() })
      if (revoked.status !== 200) { failures.push(`trial ${i}: revoke ${revoked.status} ${revoked.body}`); continue }
      const after = await publicOrg(b, key)
      if (after.status === 401 && after.json().code === 'invalid_api_key') passed++
      else failures.push(`trial ${i}: B answered ${after.status} ${after.body}`)
    }
    t.comment(`key revocation A→B: ${passed}/${TRIALS} trials refused at once`)
    t.equal(passed, TRIALS, 'every revoked key is refused by B on the next request', { failures: failures.slice(0, 10) })
  })

  t.test(`member removed via A: valid:false on B at once, ${TRIALS} trials`, async t => {
    // Three /public calls per trial: two keys keep each within its budget.
    const keys = [await createApiKey(a.url, tenant, 'verify-removal-1'), await createApiKey(a.url, tenant, 'verify-removal-2')]
    // Each trial removes one member with a live session. Passwords cost an scrypt each, so a
    // few users take turns: each round (re-)adds them and logs them in, in bulk, then removes each.
    const ROUND = 10
    const users = await pool(ROUND, 4, i => createMember(i % 2 === 0 ? a.url : b.url, tenant.slug, 'member'))
    const hitsBefore = await sessionCacheHits(b)
    let passed = 0
    const failures: string[] = []
    for (let round = 0; round < TRIALS / ROUND; round++) {
      const tokens = await pool(ROUND, 4, async i => {
        const base = i % 2 === 0 ? a.url : b.url
        if (round > 0) {
          const added = await request(base, { method: 'POST', path: `/api/v1/admin/orgs/${tenant.slug}/members`, headers: adminHeaders, body: { userId: users[i].id } })
          if (added.status !== 201) throw new Error(`re-add member: ${added.status} ${added.body}`)
        }
        return await login(base, tenant.slug, users[i])
      })
      for (const [j, user] of users.entries()) {
        const i = round * ROUND + j
        const { key } = keys[i % 2]
        const warm = [await verify(b, key, tokens[j]), await verify(b, key, tokens[j])]
        if (warm.some(res => res.status !== 200 || res.json().data.valid !== true)) { failures.push(`trial ${i}: warm-up ${warm.map(res => res.body).join(' ')}`); continue }
        const removed = await call(a, { method: 'DELETE', path: `/api/v1/org/members/${user.id}`, headers: asAdmin() })
        if (removed.status !== 200) { failures.push(`trial ${i}: remove ${removed.status} ${removed.body}`); continue }
        const after = await verify(b, key, tokens[j])
        if (after.status === 200 && after.json().data.valid === false && Object.keys(after.json().data).length === 1) passed++
        else failures.push(`trial ${i}: B answered ${after.status} ${after.body}`)
      }
    }
    const hits = await sessionCacheHits(b) - hitsBefore
    t.comment(`member removal A→B: ${passed}/${TRIALS} trials answered valid:false at once (B's session cache hits during the trials: ${hits})`)
    t.ok(hits >= TRIALS, 'B answered the warm-ups from its cache, so the trials test invalidation', { hits })
    t.equal(passed, TRIALS, 'every removed member verifies as valid:false on B on the next call', { failures: failures.slice(0, 10) })
  })

  t.test(`logout via A: valid:false on B at once, ${TRIALS} trials`, async t => {
    const keys = [await createApiKey(a.url, tenant, 'verify-logout-1'), await createApiKey(a.url, tenant, 'verify-logout-2')]
    const user = await createMember(a.url, tenant.slug, 'member')
    // One user, one session per trial.
    const tokens = await pool(TRIALS, 4, i => login(i % 2 === 0 ? a.url : b.url, tenant.slug, user))
    const hitsBefore = await sessionCacheHits(b)
    let passed = 0
    const failures: string[] = []
    for (const [i, token] of tokens.entries()) {
      const { key } = keys[i % 2]
      const warm = [await verify(b, key, token), await verify(b, key, token)]
      if (warm.some(res => res.status !== 200 || res.json().data.valid !== true)) { failures.push(`trial ${i}: warm-up ${warm.map(res => res.body).join(' ')}`); continue }
      const loggedOut = await call(a, { method: 'POST', path: '/api/v1/auth/logout', headers: { authorization: `Bearer ${token}`, 'x-org-slug': tenant.slug } })
      if (loggedOut.status !== 200) { failures.push(`trial ${i}: logout ${loggedOut.status} ${loggedOut.body}`); continue }
      const after = await verify(b, key, token)
      if (after.status === 200 && after.json().data.valid === false && Object.keys(after.json().data).length === 1) passed++
      else failures.push(`trial ${i}: B answered ${after.status} ${after.body}`)
    }
    const hits = await sessionCacheHits(b) - hitsBefore
    t.comment(`logout A→B: ${passed}/${TRIALS} trials answered valid:false at once (B's session cache hits during the trials: ${hits})`)
    t.ok(hits >= TRIALS, 'B answered the warm-ups from its cache, so the trials test invalidation', { hits })
    t.equal(passed, TRIALS, 'every logged-out session verifies as valid:false on B on the next call', { failures: failures.slice(0, 10) })
    // The other sessions of the same user are untouched by each logout.
    const other = await login(a.url, tenant.slug, user)
    const still = await verify(b, (await createApiKey(a.url, tenant, 'verify-other')).key, other)
    t.equal(still.status, 200)
    t.equal(still.json().data?.valid, true, 'a session not logged out still verifies')
  })

  t.test('org routes on B see a role change, logout, removal and suspension made via A on the next request', async t => {
    // requireOrgUser reads the org, session and membership in one query and caches none of them.
    const user = await createMember(a.url, tenant.slug, 'org_admin')
    const page = async (token: string): Promise<number> => (await call(b, { path: '/api/v1/org/audit-events?limit=1', headers: { authorization: `Bearer ${token}`, 'x-org-slug': tenant.slug } })).status
    const token = await login(b.url, tenant.slug, user)
    t.equal(await page(token), 200, 'an org_admin reads the audit log on B')
    const demote = await call(a, { method: 'PATCH', path: `/api/v1/org/members/${user.id}`, headers: asAdmin(), body: { role: 'member' } })
    t.equal(demote.status, 200)
    t.equal(await page(token), 403, 'demoted via A: refused on B at once')
    const promote = await call(a, { method: 'PATCH', path: `/api/v1/org/members/${user.id}`, headers: asAdmin(), body: { role: 'org_admin' } })
    t.equal(promote.status, 200)
    t.equal(await page(token), 200, 'promoted again via A: admitted on B at once')
    const loggedOut = await call(a, { method: 'POST', path: '/api/v1/auth/logout', headers: { authorization: `Bearer ${token}`, 'x-org-slug': tenant.slug } })
    t.equal(loggedOut.status, 200)
    t.equal(await page(token), 401, 'logged out via A: refused on B at once')
    const again = await login(b.url, tenant.slug, user)
    t.equal(await page(again), 200)
    const removed = await call(a, { method: 'DELETE', path: `/api/v1/org/members/${user.id}`, headers: asAdmin() })
    t.equal(removed.status, 200)
    t.equal(await page(again), 401, 'removed via A: refused on B at once')
    const suspended = await call(a, { method: 'PATCH', path: `/api/v1/admin/orgs/${tenant.slug}`, headers: adminHeaders, body: { status: 'suspended' } })
    t.equal(suspended.status, 200)
    t.equal(await page(tenant.accessToken), 403, 'org suspended via A: refused on B at once')
    const resumed = await call(a, { method: 'PATCH', path: `/api/v1/admin/orgs/${tenant.slug}`, headers: adminHeaders, body: { status: 'active' } })
    t.equal(resumed.status, 200)
    t.equal(await page(tenant.accessToken), 200, 'active again via A: admitted on B at once')
  })

  t.test('no 5xx, no crash', async t => {
    const serverErrors = [...statuses].filter(([status]) => status >= 500)
    t.same(serverErrors, [], 'no response of this file was a 5xx', { statuses: Object.fromEntries(statuses) })
    for (const instance of [a, b]) {
      assertAlive(t, instance)
      t.same(crashLines(instance), [], `${instance.name} logged no crash`)
    }
  })
})
