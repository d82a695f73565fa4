import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { build, createOrgWithMember, createUser, addMember, adminHeaders, sessionToken, uniqueSlug } from '../helper.ts'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const ID = (prefix: string): RegExp => new RegExp(`^${prefix}_[0-9A-HJKMNP-TV-Z]{26}$`)

let ipCounter = 0
// Each login gets a client address of its own so the login throttle never interferes here.
function nextIp (): string {
  ipCounter++
  return `10.7.${Math.floor(ipCounter / 250)}.${ipCounter % 250 + 1}`
}

function login (app: FastifyInstance, slug: string, email: string, password: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, payload: { email, password }, remoteAddress: nextIp() })
}
function refresh (app: FastifyInstance, slug: string, refreshToken: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { 'x-org-slug': slug }, payload: { refreshToken } })
}
function me (app: FastifyInstance, slug: string, accessToken: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': slug, authorization: `Bearer ${accessToken}` } })
}
function claimsOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
}
function cookie (res: LightMyRequestResponse, name: string) {
  return (res.cookies as Array<{ name: string, value: string, maxAge?: number, path?: string, httpOnly?: boolean, secure?: boolean, sameSite?: string, expires?: Date }>)
    .find(c => c.name === name)
}

t.test('login answers tokens, user and membership and sets HttpOnly cookies', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  const res = await login(app, org.slug, user.email, user.password)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.status, 'success')
  t.same(Object.keys(body.data).sort(), ['accessToken', 'membership', 'refreshToken', 'user'])
  t.same(body.data.user, { id: user.id, name: 'Test User', email: user.email, role: 'user', isEmailVerified: false })
  t.same(body.data.membership, { role: 'org_admin', status: 'active' })
  t.match(body.data.refreshToken, /^[A-Za-z0-9_-]{43}$/, 'opaque 256-bit refresh token')

  const claims = claimsOf(body.data.accessToken)
  t.match(claims, { sub: user.id, org: org.id, slug: org.slug, role: 'org_admin', typ: 'access', iss: 'tenantkey', aud: 'tenantkey' })
  t.match(claims.sid, ID('ses'))
  t.equal((claims.exp as number) - (claims.iat as number), 900, 'access token lives 15 minutes')

  const access = cookie(res, 'access_token')
  const refreshCookie = cookie(res, 'refresh_token')
  t.match(access, { value: body.data.accessToken, httpOnly: true, secure: true, sameSite: 'Lax', path: '/', maxAge: 900 })
  t.match(refreshCookie, { value: body.data.refreshToken, httpOnly: true, secure: true, sameSite: 'Lax', path: '/' })
  t.ok(refreshCookie!.maxAge! > 7 * 86400 - 5 && refreshCookie!.maxAge! <= 7 * 86400, 'refresh cookie lives 7 days')

  // The refresh token is stored only as a hash.
  const stored = await app.db.selectFrom('refresh_tokens').select('token_hash').where('session_id', '=', claims.sid as string).execute()
  t.equal(stored.length, 1)
  t.not(stored[0].token_hash, body.data.refreshToken)
  t.match(stored[0].token_hash, /^[0-9a-f]{64}$/)

  // The email is matched case-insensitively.
  t.equal((await login(app, org.slug, user.email.toUpperCase(), user.password)).statusCode, 200)
})

t.test('COOKIE_SECURE=false drops the Secure attribute for local http', async t => {
  const app = await build(t, { cookieSecure: false })
  const { org, user } = await createOrgWithMember(app, 'member')
  const res = await login(app, org.slug, user.email, user.password)
  t.equal(res.statusCode, 200)
  t.notOk(cookie(res, 'access_token')!.secure)
  t.notOk(cookie(res, 'refresh_token')!.secure)
  t.match(cookie(res, 'access_token'), { httpOnly: true, sameSite: 'Lax', path: '/' })
})

t.test('wrong password and unknown email: the same 401', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const wrongPassword = await login(app, org.slug, user.email, 'not the password')
  const unknownEmail = await login(app, org.slug, `nobody-${user.email}`, user.password)
  t.equal(wrongPassword.statusCode, 401)
  t.equal(unknownEmail.statusCode, 401)
  t.same(wrongPassword.json(), { status: 'error', message: 'Invalid email or password', code: 'invalid_credentials' })
  t.same(unknownEmail.json(), wrongPassword.json())
  t.notOk(wrongPassword.headers['set-cookie'], 'no cookie on failure')
})

t.test('login is refused with 403 to non-members and suspended members, and in a suspended org', async t => {
  const app = await build(t)
  const { org, user: admin } = await createOrgWithMember(app, 'org_admin')
  const other = await createOrgWithMember(app, 'member')

  const notMember = await login(app, org.slug, other.user.email, other.user.password)
  t.equal(notMember.statusCode, 403)
  t.same(notMember.json(), { status: 'error', message: 'You are not a member of this organization', code: 'forbidden' })

  const suspended = await createUser(app)
  await addMember(app, org.slug, suspended.id, 'member')
  const { token } = await sessionToken(app, { userId: admin.id, orgId: org.id, slug: org.slug, role: 'org_admin' })
  const patch = await app.inject({ method: 'PATCH', url: `/api/v1/org/members/${suspended.id}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${token}` }, payload: { status: 'suspended' } })
  t.equal(patch.statusCode, 200)
  const res = await login(app, org.slug, suspended.email, suspended.password)
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'forbidden')

  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${other.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  const inSuspendedOrg = await login(app, other.org.slug, other.user.email, other.user.password)
  t.equal(inSuspendedOrg.statusCode, 403)
  t.equal(inSuspendedOrg.json().code, 'org_suspended')
})

t.test('X-Org-Slug is required on /auth/*: 400 missing, 404 unknown', async t => {
  const app = await build(t)
  for (const [method, url] of [['POST', '/api/v1/auth/login'], ['POST', '/api/v1/auth/refresh'], ['POST', '/api/v1/auth/logout'], ['GET', '/api/v1/auth/me']] as const) {
    const missing = await app.inject({ method, url, ...(method === 'POST' && { payload: {} }) })
    t.equal(missing.statusCode, 400, `${url} without X-Org-Slug`)
    t.same(missing.json(), { status: 'error', message: 'Missing X-Org-Slug header', code: 'validation_failed' })
    const unknown = await app.inject({ method, url, headers: { 'x-org-slug': uniqueSlug('nope') } })
    t.equal(unknown.statusCode, 404, `${url} with an unknown org`)
    t.same(unknown.json(), { status: 'error', message: 'Organization not found', code: 'not_found' })
  }
})

t.test('login validation names the field', async t => {
  const app = await build(t)
  const { org } = await createOrgWithMember(app, 'member')
  const cases: Array<[unknown, RegExp]> = [
    [{ password: 'x' }, /email/],
    [{ email: 'ada@acme.test' }, /password/],
    [{ email: 'not-an-email', password: 'x' }, /email/],
    [{ email: 'ada@acme.test', password: '' }, /password/],
    [{ email: 'ada@acme.test', password: 'x'.repeat(1025) }, /password/]
  ]
  for (const [payload, field] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': org.slug }, payload: payload as object })
    t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 60))
    t.match(res.json(), { status: 'error', code: 'validation_failed', message: field })
  }
  const text = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': org.slug, 'content-type': 'text/plain' }, payload: 'email=a' })
  t.equal(text.statusCode, 415)
})

t.test('refresh rotates the token on every use; reusing a spent token revokes the session', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const first = (await login(app, org.slug, user.email, user.password)).json().data

  const second = await refresh(app, org.slug, first.refreshToken)
  t.equal(second.statusCode, 200)
  const rotated = second.json().data
  t.same(Object.keys(rotated).sort(), ['accessToken', 'membership', 'refreshToken', 'user'])
  t.not(rotated.refreshToken, first.refreshToken, 'a new refresh token')
  t.equal(claimsOf(rotated.accessToken).sid, claimsOf(first.accessToken).sid, 'same session')
  t.same(rotated.membership, { role: 'member', status: 'active' })
  t.equal(cookie(second, 'refresh_token')!.value, rotated.refreshToken)
  t.equal(cookie(second, 'access_token')!.value, rotated.accessToken)

  // The refresh cookie works as well as the body.
  const viaCookie = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { 'x-org-slug': org.slug }, cookies: { refresh_token: rotated.refreshToken } })
  t.equal(viaCookie.statusCode, 200)
  const third = viaCookie.json().data
  t.equal((await me(app, org.slug, third.accessToken)).statusCode, 200)

  // Reuse of a spent token: 401, and the whole session ends, including its newest tokens.
  const reuse = await refresh(app, org.slug, first.refreshToken)
  t.equal(reuse.statusCode, 401)
  t.same(reuse.json(), { status: 'error', message: 'Invalid or expired refresh token', code: 'unauthorized' })
  t.equal((await refresh(app, org.slug, third.refreshToken)).statusCode, 401, 'the newest refresh token is dead too')
  t.equal((await me(app, org.slug, third.accessToken)).statusCode, 401, 'access tokens of the session are dead')
  const session = await app.db.selectFrom('sessions').select(['revoked_at', 'revoked_reason']).where('id', '=', claimsOf(first.accessToken).sid as string).executeTakeFirstOrThrow()
  t.ok(session.revoked_at)
  t.equal(session.revoked_reason, 'refresh_token_reuse')
  const audit = await app.db.selectFrom('audit_events').select('action').where('target_id', '=', claimsOf(first.accessToken).sid as string).execute()
  t.same(audit.map(a => a.action), ['session.revoked'])
})

t.test('refresh refuses missing, unknown and other-org tokens with 401', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const other = await createOrgWithMember(app, 'member')
  await addMember(app, other.org.slug, user.id, 'member')
  const tokens = (await login(app, org.slug, user.email, user.password)).json().data

  const missing = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { 'x-org-slug': org.slug } })
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'unauthorized')
  t.equal((await refresh(app, org.slug, 'not-a-refresh-token')).statusCode, 401)
  t.equal((await refresh(app, org.slug, tokens.accessToken)).statusCode, 401, 'an access token is not a refresh token')
  t.equal((await refresh(app, other.org.slug, tokens.refreshToken)).statusCode, 401, 'a token of org A sent to org B')
  t.equal((await refresh(app, org.slug, tokens.refreshToken)).statusCode, 200, 'the refused presentation did not spend it')
  const wrongType = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { 'x-org-slug': org.slug }, payload: { refreshToken: 42 } })
  t.equal(wrongType.statusCode, 400)
  t.match(wrongType.json().message, /refreshToken/)
})

t.test('logout revokes the session, clears the cookies and is idempotent', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const tokens = (await login(app, org.slug, user.email, user.password)).json().data
  t.equal((await me(app, org.slug, tokens.accessToken)).statusCode, 200)

  const out = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { 'x-org-slug': org.slug }, cookies: { access_token: tokens.accessToken } })
  t.equal(out.statusCode, 200)
  t.same(out.json(), { status: 'success', data: { message: 'Logged out successfully' } })
  for (const name of ['access_token', 'refresh_token', 'partial_token']) {
    const cleared = cookie(out, name)
    t.ok(cleared, `${name} cleared`)
    t.equal(cleared!.value, '')
    t.ok(cleared!.expires !== undefined && cleared!.expires.getTime() <= Date.now(), `${name} expired`)
    t.match(cleared, { path: '/', httpOnly: true })
  }

  t.equal((await me(app, org.slug, tokens.accessToken)).statusCode, 401, 'the access token no longer works')
  const cookieMe = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug }, cookies: { access_token: tokens.accessToken } })
  t.equal(cookieMe.statusCode, 401)
  t.equal((await refresh(app, org.slug, tokens.refreshToken)).statusCode, 401, 'nor does the refresh token')

  const again = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { 'x-org-slug': org.slug, authorization: `Bearer ${tokens.accessToken}` } })
  t.equal(again.statusCode, 200, 'a second logout is fine')
  const anonymous = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { 'x-org-slug': org.slug, 'content-type': 'application/json' }, payload: '' })
  t.equal(anonymous.statusCode, 200, 'logout without any token is fine')
})

t.test('logout with only the refresh token (access token expired or gone) still ends the session', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const tokens = (await login(app, org.slug, user.email, user.password)).json().data
  const out = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { 'x-org-slug': org.slug }, cookies: { refresh_token: tokens.refreshToken } })
  t.equal(out.statusCode, 200)
  t.equal((await me(app, org.slug, tokens.accessToken)).statusCode, 401)
})

t.test('/auth/me answers the user and membership by bearer or cookie; 401 without a token', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  const { token } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'org_admin' })
  const byBearer = await me(app, org.slug, token)
  t.equal(byBearer.statusCode, 200)
  const data = byBearer.json().data
  t.same(Object.keys(data).sort(), ['membership', 'user'])
  t.same(data.user, { id: user.id, name: 'Test User', email: user.email, role: 'user', isEmailVerified: false })
  t.same(Object.keys(data.membership).sort(), ['joinedAt', 'role', 'status'])
  t.match(data.membership, { role: 'org_admin', status: 'active', joinedAt: ISO })

  const byCookie = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug }, cookies: { access_token: token } })
  t.same(byCookie.json(), byBearer.json())

  const none = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug } })
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'unauthorized')
})
