import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { deleteRedisKeysByPrefix } from '../support/redis-keys.ts'
import { build, createOrgWithMember, createApiKey, adminHeaders, sessionToken, createUser, addMember, REDIS_URL, type Fixture } from '../helper.ts'

interface Setup { fixture: Fixture, key: string, keyId: string, token: string, refreshToken: string, adminToken: string }

async function setup (app: FastifyInstance): Promise<Setup> {
  const fixture = await createOrgWithMember(app)
  const { key, id } = await createApiKey(app, fixture)
  const { token: adminToken } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const login = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': fixture.org.slug }, payload: { email: fixture.user.email, password: fixture.user.password } })
  if (login.statusCode !== 200) throw new Error(`login: ${login.body}`)
  return { fixture, key, keyId: id, token: login.json().data.accessToken, refreshToken: login.json().data.refreshToken, adminToken }
}

function publicRequest (app: FastifyInstance, s: Setup, route: 'org' | 'user' | 'verify', key = s.key) {
  const headers = { 'x-org-slug': s.fixture.org.slug, 'x-api-key': key }
  if (route === 'verify') return app.inject({ method: 'POST', url: '/api/v1/public/verify', headers, payload: { token: s.token } })
  return app.inject({ method: 'GET', url: route === 'org' ? '/api/v1/public/org' : `/api/v1/public/users/${s.fixture.user.id}`, headers })
}

async function queriesDuring (app: FastifyInstance, run: () => Promise<unknown>): Promise<number> {
  const before = app.database.stats.queries
  await run()
  return app.database.stats.queries - before
}

t.test('steady state: /public/* answers from the cache with no database query', async t => {
  const app = await build(t)
  const s = await setup(app)
  for (const route of ['org', 'user', 'verify'] as const) {
    for (let i = 0; i < 3; i++) t.equal((await publicRequest(app, s, route)).statusCode, 200, `warm-up ${route}`)
    const queries = await queriesDuring(app, async () => {
      for (let i = 0; i < 20; i++) {
        const res = await publicRequest(app, s, route)
        t.equal(res.statusCode, 200)
        if (route === 'verify') t.equal(res.json().data.valid, true)
      }
    })
    t.equal(queries, 0, `20 × ${route}: no database query`)
  }
})

t.test('a burst of requests with a key not cached yet shares one query for the key and one for the org', async t => {
  const app = await build(t)
  const s = await setup(app)
  const queries = await queriesDuring(app, async () => {
    const responses = await Promise.all(Array.from({ length: 100 }, () => publicRequest(app, s, 'org')))
    t.same([...new Set(responses.map(res => res.statusCode))], [200])
  })
  // 2 loads; with Redis the requests that joined them read both again once, together (2 more);
  // and the key's first use is recorded once (1).
  t.ok(queries <= 5, `100 concurrent first requests: ${queries} database queries`)
})

/** Every write below must be seen by the very next /public request on `reader`. */
async function invalidations (t: Test, writer: FastifyInstance, reader: FastifyInstance): Promise<void> {
  /** A key cached on `reader`, then revoked through `writer`. */
  async function cachedThenRevoked (t: Test): Promise<Setup> {
    const s = await setup(writer)
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 200)
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 200)
    const revoke = await writer.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${s.keyId}`, headers: { authorization: `Bearer ${s.adminToken}`, 'x-org-slug': s.fixture.org.slug } })
    t.equal(revoke.statusCode, 200)
    return s
  }

  t.test('revoking a key', async t => {
    const s = await cachedThenRevoked(t)
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 401)
  })

  t.test('revoking a key whose org then drops out of the cache', async t => {
    const s = await cachedThenRevoked(t)
    // Only the org is read again; the key still cached from before the revocation must not be trusted.
    reader.publicCache.orgs.delete(s.fixture.org.slug)
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 401)
  })

  t.test('suspending and renaming the org', async t => {
    const s = await setup(writer)
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 200)
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 200)
    await writer.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${s.fixture.org.slug}`, headers: adminHeaders, payload: { name: 'Renamed' } })
    t.equal((await publicRequest(reader, s, 'org')).json().data.org.name, 'Renamed')
    await writer.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${s.fixture.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 403)
    await writer.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${s.fixture.org.slug}`, headers: adminHeaders, payload: { status: 'active' } })
    t.equal((await publicRequest(reader, s, 'org')).statusCode, 200)
  })

  t.test('logging out', async t => {
    const s = await setup(writer)
    t.equal((await publicRequest(reader, s, 'verify')).json().data.valid, true)
    t.equal((await publicRequest(reader, s, 'verify')).json().data.valid, true)
    const logout = await writer.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${s.token}`, 'x-org-slug': s.fixture.org.slug } })
    t.equal(logout.statusCode, 200)
    t.same((await publicRequest(reader, s, 'verify')).json().data, { valid: false })
  })

  t.test('reusing a spent refresh token (the session is revoked)', async t => {
    const s = await setup(writer)
    t.equal((await publicRequest(reader, s, 'verify')).json().data.valid, true)
    t.equal((await publicRequest(reader, s, 'verify')).json().data.valid, true)
    const refresh = (refreshToken: string) => writer.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { 'x-org-slug': s.fixture.org.slug }, payload: { refreshToken } })
    t.equal((await refresh(s.refreshToken)).statusCode, 200, 'first use rotates it')
    t.equal((await refresh(s.refreshToken)).statusCode, 401, 'second use is reuse')
    t.same((await publicRequest(reader, s, 'verify')).json().data, { valid: false }, 'the access token of that session no longer verifies')
  })

  t.test('suspending, then removing a member', async t => {
    const s = await setup(writer)
    const member = await createUser(writer)
    await addMember(writer, s.fixture.org.slug, member.id, 'member')
    const login = await writer.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': s.fixture.org.slug }, payload: { email: member.email, password: member.password } })
    const memberToken = login.json().data.accessToken
    const verify = () => reader.inject({ method: 'POST', url: '/api/v1/public/verify', headers: { 'x-org-slug': s.fixture.org.slug, 'x-api-key': s.key }, payload: { token: memberToken } })
    const admin = { authorization: `Bearer ${s.adminToken}`, 'x-org-slug': s.fixture.org.slug }
    t.equal((await verify()).json().data.membership.status, 'active')
    t.equal((await verify()).json().data.membership.status, 'active')
    const suspend = await writer.inject({ method: 'PATCH', url: `/api/v1/org/members/${member.id}`, headers: admin, payload: { status: 'suspended' } })
    t.equal(suspend.statusCode, 200)
    t.match((await verify()).json().data, { valid: true, membership: { status: 'suspended' } })
    const remove = await writer.inject({ method: 'DELETE', url: `/api/v1/org/members/${member.id}`, headers: admin })
    t.equal(remove.statusCode, 200)
    t.same((await verify()).json().data, { valid: false })
  })

  t.test('adding a member', async t => {
    const s = await setup(writer)
    const newcomer = await createUser(writer)
    const url = `/api/v1/public/users/${newcomer.id}`
    const headers = { 'x-org-slug': s.fixture.org.slug, 'x-api-key': s.key }
    t.equal((await reader.inject({ method: 'GET', url, headers })).statusCode, 404)
    t.equal((await reader.inject({ method: 'GET', url, headers })).statusCode, 404)
    await addMember(writer, s.fixture.org.slug, newcomer.id)
    t.equal((await reader.inject({ method: 'GET', url, headers })).statusCode, 200)
  })
}

t.test('every write is seen by the next /public request (one instance)', async t => {
  const app = await build(t)
  await invalidations(t, app, app)
})

t.test('every write on instance A is seen by the next /public request on instance B (shared Redis)', { skip: REDIS_URL === null ? 'REDIS_URL is not set: two instances share revocations only through Redis' : false }, async t => {
  const a = await build(t)
  const b = await build(t)
  await invalidations(t, a, b)
})

// Issue 13: with Redis, a request answered from the cache costs one round trip, which both counts
// it against its key's budget and reads its org's epoch (plugins/public-api/budget.ts). Redis's
// MONITOR lists every command this app sends under its own key prefix.
t.test('with Redis: one command per cached /public request, the count that reads the epoch', { skip: REDIS_URL === null ? 'REDIS_URL is not set' : false }, async t => {
  const { Redis } = await import('ioredis')
  const redisPrefix = `tk-roundtrip-${process.pid}-${Date.now()}:`
  const app = await build(t, { redisPrefix })
  const s = await setup(app)
  for (let i = 0; i < 3; i++) t.equal((await publicRequest(app, s, 'org')).statusCode, 200, 'warm-up')
  const client = new Redis(REDIS_URL as string)
  const monitor = await client.monitor()
  t.teardown(async () => {
    monitor.disconnect()
    client.disconnect()
    await deleteRedisKeysByPrefix(REDIS_URL as string, redisPrefix)
  })
  const sent: string[][] = []
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    // Commands a Lua script runs are listed too, with source "lua": they cost no round trip.
    if (source !== 'lua' && args.some(arg => arg.startsWith(redisPrefix))) sent.push(args)
  })
  await new Promise(resolve => setTimeout(resolve, 100))
  for (let i = 0; i < 20; i++) t.equal((await publicRequest(app, s, 'org')).statusCode, 200)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(sent.length, 20, '20 requests, 20 commands')
  t.ok(sent.every(args => /^evalsha$/i.test(args[0]) && args[2] === '2' &&
    args[3] === `${redisPrefix}rate-limit:${s.fixture.org.id}/${s.keyId}:900000` && args[4] === `${redisPrefix}epoch:${s.fixture.org.id}`),
  'each one the Lua count of the key\'s window, reading the org\'s epoch', { sent: sent.slice(0, 3) })
})
