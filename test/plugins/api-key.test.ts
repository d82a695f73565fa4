import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, createApiKey, adminHeaders, sharedDatabase, sessionToken } from '../helper.ts'
import { generateApiKey } from '../../src/api-key-format.ts'

const INVALID = { status: 'error', message: 'Invalid API key', code: 'invalid_api_key' }

function getOrg (app: FastifyInstance, slug: string | undefined, key: string | undefined) {
  const headers: Record<string, string> = {}
  if (slug !== undefined) headers['x-org-slug'] = slug
  if (key !== undefined) headers['x-api-key'] = key
  return app.inject({ method: 'GET', url: '/api/v1/public/org', headers })
}

async function lastUsedAt (app: FastifyInstance, keyId: string): Promise<Date | null> {
  const row = await app.db.selectFrom('api_keys').select('last_used_at').where('id', '=', keyId).executeTakeFirstOrThrow()
  return row.last_used_at
}

t.test('a live key of the org passes; request.apiKey names it', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  const res = await getOrg(app, fixture.org.slug, key)
  t.equal(res.statusCode, 200)
  t.equal(res.json().data.org.id, fixture.org.id)
})

t.test('every failure is the same 401 Invalid API key', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  const failures: Array<[string, string | undefined]> = [
    ['no key', undefined],
    ['empty key', ''],
    ['not a key', 'secret'],
    ['truncated', key.slice(0, -1)],
    ['upper case', key.toUpperCase()],
    ['test prefix', key.replace('pk_live_', 'pk_test_')]
  ]
  for (const [label, value] of failures) {
    const res = await getOrg(app, fixture.org.slug, value)
    t.equal(res.statusCode, 401, label)
    t.same(res.json(), INVALID, label)
  }
  const repeated = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': fixture.org.slug, 'x-api-key': [key, key] } })
  t.equal(repeated.statusCode, 401, 'a repeated header')
  const unknownOrg = await getOrg(app, 'no-such-org-here', key)
  t.same([unknownOrg.statusCode, unknownOrg.json()], [401, INVALID], 'an unknown slug looks like a bad key')
  const noSlug = await getOrg(app, undefined, key)
  t.equal(noSlug.statusCode, 400, 'a missing X-Org-Slug is 400')
  const noSlugBadKey = await getOrg(app, undefined, 'nonsense')
  t.equal(noSlugBadKey.statusCode, 400, 'whatever the key')
})

t.test('a one-character typo is 401 without a database query', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  const last = key.at(-1) === '0' ? '1' : '0'
  const typos = [key.slice(0, -1) + last, key.slice(0, 20) + (key[20] === 'a' ? 'b' : 'a') + key.slice(21)]
  for (const typo of typos) {
    const before = app.database.stats.queries
    const res = await getOrg(app, fixture.org.slug, typo)
    t.same([res.statusCode, res.json()], [401, INVALID])
    t.equal(app.database.stats.queries, before, 'no query was made')
  }
  const before = app.database.stats.queries
  await getOrg(app, fixture.org.slug, key)
  t.ok(app.database.stats.queries > before, 'the counter does count queries')
})

t.test("a key of org A with org B's slug is 401", async t => {
  const app = await build(t)
  const a = await createOrgWithMember(app)
  const b = await createOrgWithMember(app)
  const { key: keyOfA } = await createApiKey(app, a)
  const res = await getOrg(app, b.org.slug, keyOfA)
  t.same([res.statusCode, res.json()], [401, INVALID])
  t.equal((await getOrg(app, a.org.slug, keyOfA)).statusCode, 200)
})

t.test('a revoked key is 401 on the next request', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key, id } = await createApiKey(app, fixture)
  t.equal((await getOrg(app, fixture.org.slug, key)).statusCode, 200)
  t.equal((await getOrg(app, fixture.org.slug, key)).statusCode, 200, 'now answered from the cache')
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const revoke = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${id}`, headers: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug } })
  t.equal(revoke.statusCode, 200)
  const res = await getOrg(app, fixture.org.slug, key)
  t.same([res.statusCode, res.json()], [401, INVALID])
})

t.test('an expired key is 401', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture, { expiresAt: new Date(Date.now() + 5000).toISOString() })
  t.equal((await getOrg(app, fixture.org.slug, key)).statusCode, 200)
  t.equal((await getOrg(app, fixture.org.slug, key)).statusCode, 200, 'now answered from the cache')
  // Expiry needs no write: the cached expiresAt is compared with the clock on every request.
  await new Promise(resolve => setTimeout(resolve, 5100))
  const res = await getOrg(app, fixture.org.slug, key)
  t.same([res.statusCode, res.json()], [401, INVALID])
})

t.test('a suspended org is 403 once the key is valid, 401 for a bad key', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${fixture.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  const res = await getOrg(app, fixture.org.slug, key)
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'org_suspended')
  const other = await createOrgWithMember(app)
  const { key: otherKey } = await createApiKey(app, other)
  t.equal((await getOrg(app, fixture.org.slug, otherKey)).statusCode, 401, "another org's key learns nothing about the suspension")
})

t.test('lastUsedAt: written on first use, then not on every request, flushed on close', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { key, id } = await createApiKey(app, fixture)
  t.equal(await lastUsedAt(app, id), null)

  const beforeFirst = Date.now()
  let before = app.database.stats.queries
  t.equal((await getOrg(app, fixture.org.slug, key)).statusCode, 200)
  const firstUseQueries = app.database.stats.queries - before
  const first = await lastUsedAt(app, id)
  t.ok(first !== null && first.getTime() >= beforeFirst - 1000, 'set by the first use')

  // let the clock pass the first use, so the flushed time can be told from it
  await new Promise(resolve => setTimeout(resolve, 5))
  for (let i = 0; i < 3; i++) {
    before = app.database.stats.queries
    t.equal((await getOrg(app, fixture.org.slug, key)).statusCode, 200)
    t.ok(app.database.stats.queries - before < firstUseQueries, 'a later use makes fewer queries than the first: no write (the key is cached)')
    t.same(await lastUsedAt(app, id), first, 'not rewritten by a later use')
  }

  await app.close()
  const { handle } = await sharedDatabase()
  const row = await handle.db.selectFrom('api_keys').select('last_used_at').where('id', '=', id).executeTakeFirstOrThrow()
  t.ok(row.last_used_at !== null && first !== null && row.last_used_at > first, 'the latest use is written on shutdown')
})

t.test('an address blocked for guessing keys may still use a key this instance has seen valid; unknown keys wait', async t => {
  const app = await build(t, { apiKeyFailureMax: 3 })
  const fixture = await createOrgWithMember(app)
  const known = await createApiKey(app, fixture, { name: 'known' })
  const unseen = await createApiKey(app, fixture, { name: 'never used here' })
  // Behind a load balancer with TRUST_PROXY unset, every client has this one address.
  const proxy = '203.0.113.77'
  const from = (key: string) => app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': fixture.org.slug, 'x-api-key': key }, remoteAddress: proxy })
  t.equal((await from(known.key)).statusCode, 200, 'the known key is seen valid once')
  for (let i = 0; i < 3; i++) t.equal((await from(generateApiKey())).statusCode, 401, 'a made-up key')
  t.equal((await from(generateApiKey())).statusCode, 429, 'the address is now blocked for unknown keys')
  // The key's cache entry expires (60 s): simulated by dropping every entry.
  app.publicCache.keys.clear()
  app.publicCache.orgs.clear()
  const res = await from(known.key)
  t.equal(res.statusCode, 200, 'the key this instance has seen valid still works from the blocked address')
  t.equal(res.json().data.org.id, fixture.org.id)
  t.equal((await from(unseen.key)).statusCode, 429, 'a key this instance has not seen valid waits, like any unknown key')
  t.equal((await from(generateApiKey())).statusCode, 429)
})

t.test('a burst of first requests with a new valid key from one address is one attempt at the guessing budget, not one each', async t => {
  const app = await build(t, { apiKeyFailureMax: 3 })
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  const from = (presented: string) => app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': fixture.org.slug, 'x-api-key': presented }, remoteAddress: '203.0.113.78' })
  const burst = await Promise.all(Array.from({ length: 20 }, () => from(key)))
  t.same([...new Set(burst.map(res => res.statusCode))], [200], '20 concurrent first uses, a failure budget of 3: all pass')
  // The budget is intact: three made-up keys are still needed to block the address.
  for (let i = 0; i < 3; i++) t.equal((await from(generateApiKey())).statusCode, 401)
  t.equal((await from(generateApiKey())).statusCode, 429)
})
