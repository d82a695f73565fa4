import t from 'tap'
import { build, createOrgWithMember, createUser, addMember, adminHeaders, sessionToken, uniqueSlug } from '../helper.ts'
import { ID, claimsOf, cookie, login } from '../auth-helpers.ts'

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
