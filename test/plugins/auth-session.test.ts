import t from 'tap'
import { build, createOrgWithMember, addMember, sessionToken } from '../helper.ts'
import { ISO, claimsOf, cookie, login, me, refresh } from '../auth-helpers.ts'

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
  const audit = await app.db.selectFrom('audit_events').select('type').where('target_id', '=', claimsOf(first.accessToken).sid as string).execute()
  t.same(audit.map(a => a.type), ['session.revoked'])
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
