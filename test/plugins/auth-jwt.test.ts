import { createHmac } from 'node:crypto'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, addMember, sessionToken, testConfig } from '../helper.ts'

// The access-token guard: everything but a genuine, unexpired HS256 access token of this
// org's live session is refused with 401, on /auth and on /org alike.

const SECRET = testConfig().jwtSecret

function b64 (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** A JWT made by hand, so the test controls every header field and claim. */
function forge (header: Record<string, unknown>, claims: Record<string, unknown>, secret = SECRET): string {
  const signingInput = `${b64(header)}.${b64(claims)}`
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512', RS256: 'sha256' }[header.alg as string]
  const signature = hash === undefined ? '' : createHmac(hash, secret).update(signingInput).digest('base64url')
  return `${signingInput}.${signature}`
}

function claimsOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
}

async function status (app: FastifyInstance, url: string, slug: string, token: string): Promise<number> {
  const res = await app.inject({ method: 'GET', url, headers: { 'x-org-slug': slug, authorization: `Bearer ${token}` } })
  if (res.statusCode === 401) {
    const body = res.json()
    if (body.code !== 'unauthorized' || body.status !== 'error') throw new Error(`unexpected 401 body ${res.body}`)
  }
  return res.statusCode
}

t.test('only a genuine access token of this org is accepted', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const other = await createOrgWithMember(app, 'member')
  await addMember(app, other.org.slug, user.id, 'member')
  const { token } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'member' })
  const genuine = claimsOf(token)
  const now = Math.floor(Date.now() / 1000)

  for (const url of ['/api/v1/auth/me', '/api/v1/org']) {
    t.equal(await status(app, url, org.slug, token), 200, `${url}: the genuine token passes (so every 401 below is the check, not the setup)`)
    t.equal(await status(app, url, org.slug, forge({ alg: 'HS256', typ: 'JWT' }, genuine)), 200, `${url}: a hand-made HS256 token with the right secret and claims passes`)

    const refused: Array<[string, string]> = [
      ['alg none', forge({ alg: 'none', typ: 'JWT' }, genuine)],
      ['alg none with a signature', forge({ alg: 'none', typ: 'JWT' }, genuine).replace(/\.$/, '.AAAA')],
      ['HS512 with the right secret', forge({ alg: 'HS512', typ: 'JWT' }, genuine)],
      ['HS384 with the right secret', forge({ alg: 'HS384', typ: 'JWT' }, genuine)],
      ['RS256 header, HMAC-signed with the secret', forge({ alg: 'RS256', typ: 'JWT' }, genuine)],
      ['signed with another secret', forge({ alg: 'HS256', typ: 'JWT' }, genuine, 'another-secret-0123456789abcdef0123456789')],
      ['expired', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, iat: now - 3600, exp: now - 1800 })],
      ['typ refresh used as access', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, typ: 'refresh' })],
      ['no typ', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, typ: undefined })],
      ['wrong iss', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, iss: 'someone-else' })],
      ['wrong aud', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, aud: 'someone-else' })],
      ['no exp', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, exp: undefined })],
      ['unknown session', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, sid: 'ses_01JZ8Q4K7X3W5N2M9B6V1C0D8E' })],
      ['another user in the claims', forge({ alg: 'HS256', typ: 'JWT' }, { ...genuine, sub: other.user.id })],
      ['payload tampered after signing', `${token.split('.')[0]}.${b64({ ...genuine, role: 'org_admin' })}.${token.split('.')[2]}`],
      ['signature stripped', token.split('.').slice(0, 2).join('.') + '.'],
      ['not a JWT', 'not-a-jwt'],
      ['three garbage parts', 'a.b.c'],
      ['oversized', `${token}${'A'.repeat(5000)}`]
    ]
    for (const [name, forged] of refused) t.equal(await status(app, url, org.slug, forged), 401, `${url}: ${name}`)

    t.equal(await status(app, url, other.org.slug, token), 401, `${url}: a token of org A with X-Org-Slug of org B, though the user is a member of both`)
  }
})

t.test('the bearer header wins over the cookie, and a malformed header is 401', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const { token } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'member' })
  const bearerBadCookieGood = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug, authorization: 'Bearer nope' }, cookies: { access_token: token } })
  t.equal(bearerBadCookieGood.statusCode, 401)
  for (const authorization of ['Basic abc', 'Bearer', `Bearer ${token} extra`, 'token']) {
    const res = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug, authorization } })
    t.equal(res.statusCode, 401, authorization.slice(0, 20))
  }
  const lowercaseScheme = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug, authorization: `bearer ${token}` } })
  t.equal(lowercaseScheme.statusCode, 200, 'the scheme is case-insensitive')
})

t.test('issued access tokens carry the §4 claims and live 15 minutes', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  const { token, sessionId } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'org_admin' })
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8'))
  t.equal(header.alg, 'HS256')
  const claims = claimsOf(token)
  t.same(Object.keys(claims).sort(), ['aud', 'exp', 'iat', 'iss', 'org', 'role', 'sid', 'slug', 'sub', 'typ'])
  t.match(claims, { sub: user.id, org: org.id, slug: org.slug, role: 'org_admin', sid: sessionId, typ: 'access', iss: 'tenantkey', aud: 'tenantkey' })
  t.equal((claims.exp as number) - (claims.iat as number), 15 * 60)
})

t.test('access tokens expire 15 minutes after issue', async t => {
  const ids = { userId: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', orgId: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', slug: 'acme', role: 'member' as const, sessionId: 'ses_01JZ8Q4K7X3W5N2M9B6V1C0D8E' }
  const app = await build(t, { redisUrl: null })
  const claims = app.verifyAccessToken(app.issueAccessToken(ids))
  t.ok(claims !== null)
  t.equal(claims!.exp - claims!.iat, 15 * 60)
  const payload = { sub: ids.userId, org: ids.orgId, slug: ids.slug, role: ids.role, sid: ids.sessionId, typ: 'access' }
  t.ok(app.verifyAccessToken(app.jwt.sign(payload, { clockTimestamp: Date.now() - 14 * 60_000 })) !== null, 'issued 14 minutes ago: valid')
  t.equal(app.verifyAccessToken(app.jwt.sign(payload, { clockTimestamp: Date.now() - 16 * 60_000 })), null, 'issued 16 minutes ago: expired')
})

t.test('a token remembered as verified stops verifying at its exp', async t => {
  const ids = { userId: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', orgId: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', slug: 'acme', role: 'member' as const, sessionId: 'ses_01JZ8Q4K7X3W5N2M9B6V1C0D8E' }
  const app = await build(t, { redisUrl: null })
  const payload = { sub: ids.userId, org: ids.orgId, slug: ids.slug, role: ids.role, sid: ids.sessionId, typ: 'access' }
  // Issued 15 minutes less 1.5 s ago: valid now, expired in 1.5 s.
  const token = app.jwt.sign(payload, { clockTimestamp: Date.now() - 15 * 60_000 + 1500 })
  t.ok(app.verifyAccessToken(token) !== null, 'valid, and now remembered')
  t.ok(app.verifyAccessToken(token) !== null, 'valid from memory')
  await new Promise(resolve => setTimeout(resolve, 2100))
  t.equal(app.verifyAccessToken(token), null, 'past its exp: refused although remembered')
})
