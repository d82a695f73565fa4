import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { build, createOrgWithMember, createUser, addMember, adminHeaders, sessionToken, uniqueSlug } from '../helper.ts'
import { ISO, login, me, refresh } from '../auth-helpers.ts'

type Role = 'org_admin' | 'member'

function call (app: FastifyInstance, method: 'GET' | 'PATCH' | 'DELETE', url: string, slug: string, token: string, payload?: object): Promise<LightMyRequestResponse> {
  return app.inject({ method, url: `/api/v1${url}`, headers: { 'x-org-slug': slug, authorization: `Bearer ${token}` }, ...(payload !== undefined && { payload }) })
}

/** An org with an admin and extra members, each with a session token (no password hashing per token). */
async function orgWith (app: FastifyInstance, roles: Role[]) {
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  const admin = { ...user, token: (await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'org_admin' })).token }
  const others = []
  for (const role of roles) {
    const other = await createUser(app)
    await addMember(app, org.slug, other.id, role)
    others.push({ ...other, token: (await sessionToken(app, { userId: other.id, orgId: org.id, slug: org.slug, role })).token })
  }
  return { org, admin, others }
}

t.test('GET /org and GET /org/members for any active member', async t => {
  const app = await build(t)
  const { org, admin, others: [member] } = await orgWith(app, ['member'])

  const res = await call(app, 'GET', '/org', org.slug, member.token)
  t.equal(res.statusCode, 200)
  const body = res.json().data
  t.same(Object.keys(body), ['org'])
  t.same(Object.keys(body.org).sort(), ['appUrl', 'createdAt', 'id', 'name', 'plan', 'slug', 'status'])
  t.match(body.org, { id: org.id, slug: org.slug, name: `Org ${org.slug}`, plan: 'free', status: 'active', appUrl: null, createdAt: ISO })

  const list = await call(app, 'GET', '/org/members', org.slug, member.token)
  t.equal(list.statusCode, 200)
  const { members } = list.json().data
  t.equal(members.length, 2)
  t.same(members.map((m: { userId: string }) => m.userId), [admin.id, member.id], 'in the order they joined')
  t.same(Object.keys(members[0]).sort(), ['email', 'joinedAt', 'name', 'role', 'status', 'userId'])
  t.match(members[0], { userId: admin.id, name: 'Test User', email: admin.email, role: 'org_admin', status: 'active', joinedAt: ISO })
  t.match(members[1], { userId: member.id, role: 'member', status: 'active' })

  const anonymous = await app.inject({ method: 'GET', url: '/api/v1/org', headers: { 'x-org-slug': org.slug } })
  t.equal(anonymous.statusCode, 401)
})

t.test('X-Org-Slug on /org: 400 missing, 404 unknown, 403 suspended org', async t => {
  const app = await build(t)
  const { org, admin } = await orgWith(app, [])
  const missing = await app.inject({ method: 'GET', url: '/api/v1/org', headers: { authorization: `Bearer ${admin.token}` } })
  t.equal(missing.statusCode, 400)
  t.same(missing.json(), { status: 'error', message: 'Missing X-Org-Slug header', code: 'validation_failed' })
  const unknown = await call(app, 'GET', '/org/members', uniqueSlug('nope'), admin.token)
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'not_found')

  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  for (const [method, url] of [['GET', '/org'], ['GET', '/org/members'], ['GET', '/auth/me']] as const) {
    const res = await call(app, method, url, org.slug, admin.token)
    t.equal(res.statusCode, 403, `${url} in a suspended org`)
    t.same(res.json(), { status: 'error', message: 'Organization is suspended', code: 'org_suspended' })
  }
})

t.test('PATCH /org/members/:userId: org_admin changes role and status', async t => {
  const app = await build(t)
  const { org, admin, others: [member, second] } = await orgWith(app, ['member', 'member'])

  const byMember = await call(app, 'PATCH', `/org/members/${second.id}`, org.slug, member.token, { role: 'org_admin' })
  t.equal(byMember.statusCode, 403)
  t.same(byMember.json(), { status: 'error', message: 'This action requires the org_admin role', code: 'forbidden' })

  const promoted = await call(app, 'PATCH', `/org/members/${member.id}`, org.slug, admin.token, { role: 'org_admin' })
  t.equal(promoted.statusCode, 200)
  t.same(Object.keys(promoted.json().data), ['member'])
  t.match(promoted.json().data.member, { userId: member.id, email: member.email, name: 'Test User', role: 'org_admin', status: 'active', joinedAt: ISO })

  const both = await call(app, 'PATCH', `/org/members/${second.id}`, org.slug, admin.token, { role: 'org_admin', status: 'suspended' })
  t.match(both.json().data.member, { role: 'org_admin', status: 'suspended' })
  const listed = (await call(app, 'GET', '/org/members', org.slug, admin.token)).json().data.members
  t.match(listed.find((m: { userId: string }) => m.userId === second.id), { role: 'org_admin', status: 'suspended' }, 'the change is stored')

  const audit = await app.db.selectFrom('audit_events').select(['type', 'actor_id']).where('org_id', '=', org.id).where('target_id', '=', member.id).where('type', 'in', ['member.updated', 'member.removed']).execute()
  t.same(audit, [{ type: 'member.updated', actor_id: admin.id }])

  const outsider = await createUser(app)
  const notMember = await call(app, 'PATCH', `/org/members/${outsider.id}`, org.slug, admin.token, { role: 'member' })
  t.equal(notMember.statusCode, 404)
  t.same(notMember.json(), { status: 'error', message: 'Not a member of this organization', code: 'not_found' })

  for (const [url, payload] of [
    [`/org/members/${member.id}`, {}],
    [`/org/members/${member.id}`, { role: 'owner' }],
    [`/org/members/${member.id}`, { status: 'deleted' }],
    ['/org/members/not-an-id', { role: 'member' }]
  ] as const) {
    const res = await call(app, 'PATCH', url, org.slug, admin.token, payload)
    t.equal(res.statusCode, 400, `${url} ${JSON.stringify(payload)}`)
    t.equal(res.json().code, 'validation_failed')
  }
})

t.test('the last active org_admin cannot be demoted, suspended or removed (409)', async t => {
  const app = await build(t)
  const { org, admin, others: [member, suspendedAdmin] } = await orgWith(app, ['member', 'org_admin'])
  // A suspended admin does not count as an active one.
  t.equal((await call(app, 'PATCH', `/org/members/${suspendedAdmin.id}`, org.slug, admin.token, { status: 'suspended' })).statusCode, 200)

  const conflict = { status: 'error', message: 'The last active org_admin of an organization cannot be demoted, suspended or removed', code: 'conflict' }
  for (const [method, payload] of [['PATCH', { role: 'member' }], ['PATCH', { status: 'suspended' }], ['DELETE', undefined]] as const) {
    const res = await call(app, method, `/org/members/${admin.id}`, org.slug, admin.token, payload)
    t.equal(res.statusCode, 409, `${method} ${JSON.stringify(payload ?? {})}`)
    t.same(res.json(), conflict)
  }
  t.equal((await call(app, 'PATCH', `/org/members/${admin.id}`, org.slug, admin.token, { role: 'org_admin', status: 'active' })).statusCode, 200, 'a change that keeps them an active admin is fine')

  // With a second active admin, the first may step down; then the second is the last.
  await call(app, 'PATCH', `/org/members/${member.id}`, org.slug, admin.token, { role: 'org_admin' })
  t.equal((await call(app, 'PATCH', `/org/members/${admin.id}`, org.slug, admin.token, { role: 'member' })).statusCode, 200)
  const last = await call(app, 'DELETE', `/org/members/${member.id}`, org.slug, member.token)
  t.equal(last.statusCode, 409)
  const members = (await call(app, 'GET', '/org/members', org.slug, member.token)).json().data.members
  t.equal(members.filter((m: { role: string, status: string }) => m.role === 'org_admin' && m.status === 'active').length, 1)
})

t.test('concurrent demotions of the last two admins: exactly one succeeds', async t => {
  const app = await build(t)
  const { org, admin, others: [second] } = await orgWith(app, ['org_admin'])
  const results = await Promise.all([
    call(app, 'PATCH', `/org/members/${admin.id}`, org.slug, admin.token, { role: 'member' }),
    call(app, 'PATCH', `/org/members/${second.id}`, org.slug, second.token, { role: 'member' })
  ])
  t.same(results.map(r => r.statusCode).sort(), [200, 409])
})

t.test('a suspended member: refresh refused at once, /org routes 403, /auth/me shows the status', async t => {
  const app = await build(t)
  const { org, admin } = await orgWith(app, [])
  const member = await createUser(app)
  await addMember(app, org.slug, member.id, 'member')
  const tokens = (await login(app, org.slug, member.email, member.password)).json().data

  t.equal((await call(app, 'PATCH', `/org/members/${member.id}`, org.slug, admin.token, { status: 'suspended' })).statusCode, 200)

  const refused = await refresh(app, org.slug, tokens.refreshToken)
  t.equal(refused.statusCode, 403)
  t.same(refused.json(), { status: 'error', message: 'Your membership in this organization is not active', code: 'forbidden' })
  for (const url of ['/org', '/org/members']) {
    const res = await call(app, 'GET', url, org.slug, tokens.accessToken)
    t.equal(res.statusCode, 403, url)
    t.equal(res.json().code, 'forbidden')
  }
  const who = await me(app, org.slug, tokens.accessToken)
  t.equal(who.statusCode, 200)
  t.equal(who.json().data.membership.status, 'suspended')

  // Reinstated: the same refresh token works again (suspension did not spend it).
  await call(app, 'PATCH', `/org/members/${member.id}`, org.slug, admin.token, { status: 'active' })
  t.equal((await refresh(app, org.slug, tokens.refreshToken)).statusCode, 200)
})

t.test('DELETE /org/members/:userId removes the member and ends their sessions in this org only', async t => {
  const app = await build(t)
  const { org, admin, others: [bystander] } = await orgWith(app, ['member'])
  const elsewhere = await createOrgWithMember(app, 'org_admin')
  const member = await createUser(app)
  await addMember(app, org.slug, member.id, 'member')
  await addMember(app, elsewhere.org.slug, member.id, 'member')
  const tokens = (await login(app, org.slug, member.email, member.password)).json().data
  const second = await sessionToken(app, { userId: member.id, orgId: org.id, slug: org.slug, role: 'member' })
  const otherOrg = await sessionToken(app, { userId: member.id, orgId: elsewhere.org.id, slug: elsewhere.org.slug, role: 'member' })

  const byMember = await call(app, 'DELETE', `/org/members/${member.id}`, org.slug, bystander.token)
  t.equal(byMember.statusCode, 403)

  const removed = await call(app, 'DELETE', `/org/members/${member.id}`, org.slug, admin.token)
  t.equal(removed.statusCode, 200)
  t.same(removed.json(), { status: 'success', data: { message: 'Member removed' } })

  t.equal((await me(app, org.slug, tokens.accessToken)).statusCode, 401, 'the login session is over')
  t.equal((await me(app, org.slug, second.token)).statusCode, 401, 'every session in the org is over')
  t.equal((await refresh(app, org.slug, tokens.refreshToken)).statusCode, 401, 'the refresh token is refused')
  const sessions = await app.db.selectFrom('sessions').select(['id', 'revoked_reason']).where('user_id', '=', member.id).where('org_id', '=', org.id).execute()
  t.equal(sessions.length, 2)
  t.ok(sessions.every(s => s.revoked_reason === 'member_removed'), 'revoked server-side, not merely unreachable')
  t.equal((await me(app, elsewhere.org.slug, otherOrg.token)).statusCode, 200, 'the session in another org is untouched')
  t.equal((await call(app, 'GET', '/org', org.slug, bystander.token)).statusCode, 200, 'other members are untouched')

  const again = await call(app, 'DELETE', `/org/members/${member.id}`, org.slug, admin.token)
  t.equal(again.statusCode, 404)
  const audit = await app.db.selectFrom('audit_events').select(['type', 'data']).where('org_id', '=', org.id).where('target_id', '=', member.id).where('type', 'in', ['member.updated', 'member.removed']).execute()
  t.match(audit, [{ type: 'member.removed', data: { user: { id: member.id, email: member.email }, removedBy: { id: admin.id, email: admin.email } } }])
})
