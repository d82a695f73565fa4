import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, createApiKey, createUser, addMember, sessionToken, adminHeaders, type Fixture } from '../helper.ts'

interface KeyedOrg extends Fixture { key: string, headers: Record<string, string> }

async function keyedOrg (app: FastifyInstance): Promise<KeyedOrg> {
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  return { ...fixture, key, headers: { 'x-org-slug': fixture.org.slug, 'x-api-key': key } }
}

async function memberToken (app: FastifyInstance, org: Fixture['org'], role: 'org_admin' | 'member' = 'member'): Promise<{ userId: string, token: string, sessionId: string }> {
  const user = await createUser(app)
  await addMember(app, org.slug, user.id, role)
  const { token, sessionId } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role })
  return { userId: user.id, token, sessionId }
}

/** Through the API, as an org admin would: a write the caches must see. */
async function suspendMember (app: FastifyInstance, org: KeyedOrg, userId: string): Promise<void> {
  const { token } = await sessionToken(app, { userId: org.user.id, orgId: org.org.id, slug: org.org.slug, role: 'org_admin' })
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/org/members/${userId}`, headers: { authorization: `Bearer ${token}`, 'x-org-slug': org.org.slug }, payload: { status: 'suspended' } })
  if (res.statusCode !== 200) throw new Error(`suspend: ${res.statusCode} ${res.body}`)
}

function verify (app: FastifyInstance, headers: Record<string, string>, token: unknown) {
  return app.inject({ method: 'POST', url: '/api/v1/public/verify', headers, payload: { token } as object })
}

t.test('POST /public/verify: a valid token of this org → the full shape', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const { userId, token } = await memberToken(app, acme.org)
  const res = await verify(app, acme.headers, token)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8', 'the answer names its JSON content type')
  const body = res.json()
  t.same(Object.keys(body), ['status', 'data'])
  const { data } = body
  t.same(Object.keys(data), ['valid', 'user', 'membership', 'org'])
  t.equal(data.valid, true)
  t.same(Object.keys(data.user), ['id', 'name', 'email', 'role', 'isEmailVerified'])
  t.match(data.user, { id: userId, name: 'Test User', role: 'user', isEmailVerified: false })
  t.same(Object.keys(data.membership), ['role', 'status', 'joinedAt'])
  t.match(data.membership, { role: 'member', status: 'active', joinedAt: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/ })
  t.same(data.org, { id: acme.org.id, name: `Org ${acme.org.slug}`, slug: acme.org.slug, plan: 'free', status: 'active' })
})

t.test('POST /public/verify: every kind of bad token → 200 { valid: false }', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const other = await keyedOrg(app)
  const good = await memberToken(app, acme.org)
  const [header, payload] = good.token.split('.')
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString())
  const { sub, org, slug, role, sid } = claims
  t.equal(claims.exp - claims.iat, 15 * 60, 'access tokens live 15 minutes')

  const otherApp = await build(t, { jwtSecret: 'another-jwt-secret-0123456789abcdef012345' })
  const otherOrgMember = await memberToken(app, other.org)
  const loggedOut = await memberToken(app, acme.org)
  await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${loggedOut.token}`, 'x-org-slug': acme.org.slug } })
  const removed = await memberToken(app, acme.org)
  await app.db.deleteFrom('memberships').where('user_id', '=', removed.userId).where('org_id', '=', acme.org.id).execute()
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`

  const bad: Array<[string, string]> = [
    ['empty', ''],
    ['malformed', 'not-a-jwt'],
    ['three junk parts', 'a.b.c'],
    ['bad signature', `${header}.${payload}.${'A'.repeat(43)}`],
    ['signed with another secret', otherApp.issueAccessToken({ userId: sub, orgId: org, slug, role, sessionId: sid })],
    ['alg none', none],
    ['expired: issued 16 minutes ago', app.jwt.sign({ sub, org, slug, role, sid, typ: 'access' }, { clockTimestamp: Date.now() - 16 * 60_000 })],
    ['wrong typ', app.jwt.sign({ sub, org, slug, role, sid, typ: 'refresh' })],
    ['token of another org', otherOrgMember.token],
    ['session ended by logout', loggedOut.token],
    ['user no longer a member', removed.token],
    ['too long', 'x'.repeat(5000)]
  ]
  for (const [label, token] of bad) {
    const res = await verify(app, acme.headers, token)
    t.equal(res.statusCode, 200, label)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', label)
    t.same(res.json(), { status: 'success', data: { valid: false } }, label)
  }
  t.same((await verify(app, other.headers, good.token)).json().data, { valid: false }, "the other org's key cannot verify acme's token")
  t.equal((await verify(app, acme.headers, good.token)).json().data.valid, true, 'the good token still verifies')

  for (const body of [{}, { token: 42 }, { token: null }]) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers: acme.headers, payload: body })
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'validation_failed')
    t.match(res.json().message, /token/)
  }
})

t.test('POST /public/verify: a suspended membership verifies with status suspended', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const member = await memberToken(app, acme.org)
  t.equal((await verify(app, acme.headers, member.token)).json().data.membership.status, 'active')
  await suspendMember(app, acme, member.userId)
  const { data } = (await verify(app, acme.headers, member.token)).json()
  t.equal(data.valid, true)
  t.equal(data.membership.status, 'suspended')
})

t.test('GET /public/users/:userId: members of the key org only', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const other = await keyedOrg(app)
  const member = await memberToken(app, acme.org, 'org_admin')
  const get = (headers: Record<string, string>, id: string) => app.inject({ method: 'GET', url: `/api/v1/public/users/${id}`, headers })

  const res = await get(acme.headers, member.userId)
  t.equal(res.statusCode, 200)
  const { data } = res.json()
  t.same(Object.keys(data), ['user', 'membership'])
  t.same(Object.keys(data.user), ['id', 'name', 'email', 'role', 'isEmailVerified'])
  t.match(data, { user: { id: member.userId, role: 'user' }, membership: { role: 'org_admin', status: 'active' } })

  for (const [label, headers, id] of [
    ['a user of another org only', acme.headers, other.user.id],
    ['the same user, through the other org', other.headers, member.userId],
    ['an unknown user', acme.headers, 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E'],
    ['a malformed id', acme.headers, 'nope']
  ] as const) {
    const miss = await get(headers, id)
    t.equal(miss.statusCode, 404, label)
    t.same(miss.json(), { status: 'error', message: 'User not found', code: 'not_found' }, label)
  }

  await suspendMember(app, acme, member.userId)
  t.equal((await get(acme.headers, member.userId)).json().data.membership.status, 'suspended', 'a suspended member is still a member')
})

t.test('GET /public/org: the key org', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const res = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: acme.headers })
  t.equal(res.statusCode, 200)
  const { org } = res.json().data
  t.same(Object.keys(org), ['id', 'slug', 'name', 'plan', 'status', 'appUrl', 'createdAt'])
  t.match(org, { id: acme.org.id, slug: acme.org.slug, plan: 'free', status: 'active', appUrl: null })
})

t.test('a suspended org answers 403 on every public route once the key is valid', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const member = await memberToken(app, acme.org)
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${acme.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  for (const request of [
    { method: 'POST' as const, url: '/api/v1/public/verify', payload: { token: member.token } },
    { method: 'GET' as const, url: `/api/v1/public/users/${member.userId}` },
    { method: 'GET' as const, url: '/api/v1/public/org' }
  ]) {
    const res = await app.inject({ ...request, headers: acme.headers })
    t.equal(res.statusCode, 403, request.url)
    t.equal(res.json().code, 'org_suspended')
  }
})

t.test('every public route needs a key of the org named by X-Org-Slug', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const other = await keyedOrg(app)
  for (const request of [
    { method: 'POST' as const, url: '/api/v1/public/verify', payload: { token: 'x' } },
    { method: 'GET' as const, url: `/api/v1/public/users/${acme.user.id}` },
    { method: 'GET' as const, url: '/api/v1/public/org' }
  ]) {
    for (const headers of [{ 'x-org-slug': acme.org.slug }, { 'x-org-slug': acme.org.slug, 'x-api-key': other.key }]) {
      const res = await app.inject({ ...request, headers })
      t.equal(res.statusCode, 401, request.url)
      t.same(res.json(), { status: 'error', message: 'Invalid API key', code: 'invalid_api_key' })
      t.notOk('x-ratelimit-limit' in res.headers, 'no rate-limit headers before authentication')
    }
  }
})

t.test('/public/* sends no CORS headers', async t => {
  const app = await build(t)
  const acme = await keyedOrg(app)
  const origin = 'https://evil.example'
  const preflight = await app.inject({
    method: 'OPTIONS', url: '/api/v1/public/verify', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-api-key,x-org-slug,content-type' }
  })
  const simple = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { ...acme.headers, origin } })
  t.equal(simple.statusCode, 200)
  for (const res of [preflight, simple]) {
    t.same(Object.keys(res.headers).filter(name => name.startsWith('access-control-')), [], `${res.statusCode}: no access-control-* header`)
  }
})
