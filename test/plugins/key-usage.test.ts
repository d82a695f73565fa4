import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, createApiKey, sessionToken, adminHeaders, type Fixture } from '../helper.ts'

const ZERO = { total: 0, success: 0, clientError: 0, forbidden: 0, rateLimited: 0, tokensValid: 0, tokensInvalid: 0 }
const UNKNOWN_USER = '/api/v1/public/users/usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E'

async function setUp (app: FastifyInstance): Promise<{ fixture: Fixture, admin: string, keyA: string, keyAId: string, keyB: string, keyBId: string, memberToken: string }> {
  const fixture = await createOrgWithMember(app)
  const { token: admin } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const a = await createApiKey(app, fixture, { name: 'A' })
  const b = await createApiKey(app, fixture, { name: 'B' })
  return { fixture, admin, keyA: a.key, keyAId: a.id, keyB: b.key, keyBId: b.id, memberToken: admin }
}

function call (app: FastifyInstance, slug: string, key: string, method: 'GET' | 'POST', url: string, payload?: object) {
  return app.inject({ method, url, headers: { 'x-org-slug': slug, 'x-api-key': key }, ...(payload !== undefined && { payload }) })
}

async function usage (app: FastifyInstance, slug: string, admin: string, keyId: string, query = '') {
  return await app.inject({ method: 'GET', url: `/api/v1/org/api-keys/${keyId}/usage${query}`, headers: { authorization: `Bearer ${admin}`, 'x-org-slug': slug } })
}

function last<T> (items: T[]): T { return items[items.length - 1] }

t.test('known traffic with one key is counted exactly, by outcome, apart from another key', async t => {
  const app = await build(t, { rateLimitMax: 12 })
  const { fixture, admin, keyA, keyAId, keyB, keyBId } = await setUp(app)
  const slug = fixture.org.slug
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await call(app, slug, keyA, 'GET', '/api/v1/public/org')).statusCode)
  for (let i = 0; i < 2; i++) statuses.push((await call(app, slug, keyA, 'GET', UNKNOWN_USER)).statusCode)
  for (let i = 0; i < 2; i++) statuses.push((await call(app, slug, keyA, 'POST', '/api/v1/public/verify', { token: admin })).statusCode)
  for (let i = 0; i < 4; i++) statuses.push((await call(app, slug, keyA, 'POST', '/api/v1/public/verify', { token: 'not-a-token' })).statusCode)
  statuses.push((await call(app, slug, keyA, 'POST', '/api/v1/public/verify', {})).statusCode)
  for (let i = 0; i < 3; i++) statuses.push((await call(app, slug, keyA, 'GET', '/api/v1/public/org')).statusCode)
  t.same(statuses, [200, 200, 200, 404, 404, 200, 200, 200, 200, 200, 200, 400, 429, 429, 429], 'the traffic made: 12 within the budget, then 429s')
  // Its last character changed (a key ending in 0 gets a 1, not itself: 1 run in 16 sent key A again).
  const wrongKey = keyA.slice(0, -1) + (keyA.endsWith('0') ? '1' : '0')
  t.equal((await call(app, slug, wrongKey, 'GET', '/api/v1/public/org')).statusCode, 401, 'a wrong key authenticates nothing and counts for no key')
  t.equal((await call(app, slug, keyB, 'GET', '/api/v1/public/org')).statusCode, 200)
  // Key A loses tokens:verify and is fenced to 10.0.0.0/8: the 403s of scope and allowlist are its traffic too.
  const fenced = await app.inject({
    method: 'PATCH', url: `/api/v1/org/api-keys/${keyAId}`, headers: { authorization: `Bearer ${admin}`, 'x-org-slug': slug }, payload: { scopes: ['org:read', 'users:read'], allowedIps: ['10.0.0.0/8'] }
  })
  t.equal(fenced.statusCode, 200)
  const fencedCall = (url: string, remoteAddress: string, method: 'GET' | 'POST' = 'GET') => app.inject({
    method, url, headers: { 'x-org-slug': slug, 'x-api-key': keyA }, remoteAddress, ...(method === 'POST' && { payload: { token: admin } })
  })
  const refusals = [
    await fencedCall('/api/v1/public/verify', '10.1.1.1', 'POST'),
    await fencedCall('/api/v1/public/verify', '10.1.1.1', 'POST'),
    await fencedCall('/api/v1/public/org', '192.0.2.1'),
    await fencedCall(UNKNOWN_USER, '192.0.2.1')
  ]
  t.same(refusals.map(r => r.json().code), ['insufficient_scope', 'insufficient_scope', 'ip_not_allowed', 'ip_not_allowed'], 'two 403s of scope, two of the allowlist')

  const res = await usage(app, slug, admin, keyAId)
  t.equal(res.statusCode, 200)
  const buckets = res.json().data.usage
  t.ok(buckets.length === 24 || buckets.length === 25, `the last 24 hours, dense: ${buckets.length} buckets`)
  t.same(buckets.slice(0, -1).map((b: Record<string, unknown>) => ({ ...b, start: undefined })), buckets.slice(0, -1).map(() => ({ ...ZERO, start: undefined })), 'earlier hours are zeros')
  t.match(last(buckets), { total: 19, success: 3 + 2 + 4, clientError: 2 + 1, forbidden: 4, rateLimited: 3, tokensValid: 2, tokensInvalid: 4 })
  t.equal(new Date(last<{ start: string }>(buckets).start).getTime() % 3_600_000, 0, 'buckets start on the hour')
  t.match(last((await usage(app, slug, admin, keyBId)).json().data.usage), { ...ZERO, total: 1, success: 1 }, "key B's traffic is its own")

  // A suspended org still authenticates the key, and answers 403: counted as forbidden.
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  t.equal((await call(app, slug, keyB, 'GET', '/api/v1/public/org')).statusCode, 403)
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { status: 'active' } })
  t.match(last((await usage(app, slug, admin, keyBId)).json().data.usage), { total: 2, success: 1, forbidden: 1 })
})

t.test('day buckets are summed from hours; ranges are checked', async t => {
  const app = await build(t)
  const { fixture, admin, keyA, keyAId } = await setUp(app)
  const slug = fixture.org.slug
  const hour = 3_600_000
  const now = Date.now()
  const thisHour = now - now % hour
  // Two earlier hours of yesterday, as another instance would have flushed them.
  const yesterday = thisHour - 24 * hour
  await app.db.insertInto('api_key_usage').values([
    { key_id: keyAId, hour: new Date(yesterday), total: 5, success: 5, client_error: 0, forbidden: 0, rate_limited: 0, tokens_valid: 0, tokens_invalid: 0 },
    { key_id: keyAId, hour: new Date(yesterday - hour), total: 2, success: 1, client_error: 1, forbidden: 0, rate_limited: 0, tokens_valid: 0, tokens_invalid: 0 }
  ]).execute()
  await call(app, slug, keyA, 'GET', '/api/v1/public/org')

  const since = new Date(now - 3 * 86_400_000).toISOString()
  const days = (await usage(app, slug, admin, keyAId, `?granularity=day&since=${since}`)).json().data.usage
  t.ok(days.length === 4, `3 days back from now: ${days.length} day buckets`)
  t.equal(days.reduce((sum: number, day: { total: number }) => sum + day.total, 0), 8, 'every hour lands in its day')
  for (const day of days) t.equal(new Date(day.start).getUTCHours(), 0, 'days start at midnight UTC')

  const hours = (await usage(app, slug, admin, keyAId, `?since=${new Date(yesterday - hour).toISOString()}&until=${new Date(yesterday + hour).toISOString()}`)).json().data.usage
  t.same(hours, [
    { start: new Date(yesterday - hour).toISOString(), ...ZERO, total: 2, success: 1, clientError: 1 },
    { start: new Date(yesterday).toISOString(), ...ZERO, total: 5, success: 5 }
  ], 'an exact range of hours')

  const tooLong = await usage(app, slug, admin, keyAId, `?since=${new Date(now - 32 * 86_400_000).toISOString()}`)
  t.equal(tooLong.statusCode, 400, 'more than 744 hourly buckets')
  t.match(tooLong.json(), { code: 'validation_failed', message: /since/ })
  t.equal((await usage(app, slug, admin, keyAId, `?granularity=day&since=${new Date(now - 32 * 86_400_000).toISOString()}`)).statusCode, 200, 'the same range in days is fine')
  const backwards = await usage(app, slug, admin, keyAId, `?since=${new Date(now).toISOString()}&until=${new Date(now - hour).toISOString()}`)
  t.equal(backwards.statusCode, 400)
  t.equal((await usage(app, slug, admin, keyAId, '?since=yesterday')).statusCode, 400, 'not a date')
  t.equal((await usage(app, slug, admin, keyAId, '?granularity=week')).statusCode, 400)

  const other = await setUp(app)
  t.equal((await usage(app, slug, admin, other.keyAId)).statusCode, 404, "another org's key")
  t.equal((await usage(app, slug, admin, 'key_nope')).statusCode, 404)
})

t.test('two instances add up; shutdown flushes; buckets past 90 days are pruned', async t => {
  const a = await build(t)
  const b = await build(t)
  const { fixture, admin, keyA, keyAId } = await setUp(a)
  const slug = fixture.org.slug
  for (let i = 0; i < 3; i++) await call(a, slug, keyA, 'GET', '/api/v1/public/org')
  for (let i = 0; i < 4; i++) await call(b, slug, keyA, 'GET', '/api/v1/public/org')
  await b.close()
  t.match(last((await usage(a, slug, admin, keyAId)).json().data.usage), { total: 7, success: 7 }, 'A flushed on read, B on shutdown: the counts add up')

  const old = new Date(Date.now() - 91 * 86_400_000)
  old.setUTCMinutes(0, 0, 0)
  await a.db.insertInto('api_key_usage').values({ key_id: keyAId, hour: old, total: 1, success: 1, client_error: 0, forbidden: 0, rate_limited: 0, tokens_valid: 0, tokens_invalid: 0 }).execute()
  t.ok(await a.keyUsage.prune() >= 1)
  const left = await a.db.selectFrom('api_key_usage').select('hour').where('key_id', '=', keyAId).execute()
  t.equal(left.length, 1, 'only the current hour is left')
})
