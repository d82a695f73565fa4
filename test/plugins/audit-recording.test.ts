import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { addMember, adminHeaders, build, createOrgWithMember, createUser, sessionToken, uniqueEmail, uniqueSlug } from '../helper.ts'
import { ID, ISO, login } from '../auth-helpers.ts'

// Every write of Part I records exactly one event of §10 with the documented actor, target and
// data, in the transaction of the change; a refused change (400, 403, 404, 409) records nothing.

interface StoredEvent {
  id: string
  type: string
  orgId: string | null
  actor: { type: string, id: string | null, email: string | null }
  target: { type: string, id: string }
  data: Record<string, unknown>
  ip: string | null
  createdAt: string
}

/** The events that concern an org or a target, oldest first, as stored. */
async function eventsAbout (app: FastifyInstance, about: { orgId?: string, targetId?: string }): Promise<StoredEvent[]> {
  const rows = await app.db.selectFrom('audit_events').selectAll()
    .where(eb => eb.or([
      ...(about.orgId !== undefined ? [eb('org_id', '=', about.orgId)] : []),
      ...(about.targetId !== undefined ? [eb('target_id', '=', about.targetId)] : [])
    ]))
    .orderBy('created_at').orderBy('id').execute()
  return rows.map(row => ({
    id: row.id,
    type: row.type,
    orgId: row.org_id,
    actor: { type: row.actor_type, id: row.actor_id, email: row.actor_email },
    target: { type: row.target_type, id: row.target_id },
    data: row.data,
    ip: row.ip,
    createdAt: row.created_at.toISOString()
  }))
}

const ADMIN = { type: 'admin', id: null, email: null }

t.test('platform admin writes: org.created, user.created, member.joined, org.updated, with actor admin', async t => {
  const app = await build(t)
  const slug = uniqueSlug()
  const created = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug, name: 'Acme', plan: 'pro' }, remoteAddress: '203.0.113.7' })
  t.equal(created.statusCode, 201)
  const org = created.json().data.org
  const [orgCreated] = await eventsAbout(app, { orgId: org.id })
  t.same(orgCreated, {
    id: orgCreated.id, type: 'org.created', orgId: org.id, actor: ADMIN, target: { type: 'org', id: org.id }, data: { org }, ip: '203.0.113.7', createdAt: orgCreated.createdAt
  })
  t.match(orgCreated, { id: ID('evt'), createdAt: ISO })

  const email = uniqueEmail()
  const userRes = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email, name: 'Ada', password: 'correct horse battery' } })
  const userId = userRes.json().data.user.id
  const [userCreated] = await eventsAbout(app, { targetId: userId })
  t.same({ ...userCreated, id: null, createdAt: null }, {
    id: null, type: 'user.created', orgId: null, actor: ADMIN, target: { type: 'user', id: userId }, data: { user: { id: userId, name: 'Ada', email } }, ip: '127.0.0.1', createdAt: null
  }, 'a user belongs to no org yet')

  const added = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId, role: 'org_admin' } })
  t.equal(added.statusCode, 201)
  const { joinedAt } = added.json().data.membership
  const joined = (await eventsAbout(app, { orgId: org.id })).filter(event => event.type === 'member.joined')
  t.same(joined.map(event => ({ ...event, id: null, createdAt: null })), [{
    id: null,
    type: 'member.joined',
    orgId: org.id,
    actor: ADMIN,
    target: { type: 'user', id: userId },
    data: { user: { id: userId, name: 'Ada', email }, membership: { role: 'org_admin', status: 'active', joinedAt } },
    ip: '127.0.0.1',
    createdAt: null
  }], 'the member added as org_admin (issue 12, item 10)')

  const suspended = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { status: 'suspended', name: 'Acme', plan: 'enterprise' } })
  t.equal(suspended.statusCode, 200)
  const updated = (await eventsAbout(app, { orgId: org.id })).filter(event => event.type === 'org.updated')
  t.same(updated.map(event => ({ actor: event.actor, target: event.target, data: event.data })), [{
    actor: ADMIN, target: { type: 'org', id: org.id }, data: { org: suspended.json().data.org, changes: ['plan', 'status'] }
  }], 'the org after the change and the fields that changed (the name was sent unchanged)')

  const unchanged = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  t.equal(unchanged.statusCode, 200)
  t.equal((await eventsAbout(app, { orgId: org.id })).length, 3, 'nothing changed: no event')
})

t.test('refused admin writes record nothing', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  const before = await eventsAbout(app, { orgId: org.id, targetId: user.id })
  const count = async (): Promise<number> => Number((await app.db.selectFrom('audit_events').select(eb => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)

  const total = await count()
  const refused = [
    { method: 'POST', url: '/api/v1/admin/orgs', payload: { slug: org.slug, name: 'Taken' }, status: 409 },
    { method: 'POST', url: '/api/v1/admin/orgs', payload: { slug: 'NO', name: 'x' }, status: 400 },
    { method: 'POST', url: '/api/v1/admin/users', payload: { email: user.email.toUpperCase(), name: 'Again', password: 'correct horse battery' }, status: 409 },
    { method: 'POST', url: `/api/v1/admin/orgs/${org.slug}/members`, payload: { userId: user.id }, status: 409 },
    { method: 'POST', url: `/api/v1/admin/orgs/${uniqueSlug('nope')}/members`, payload: { userId: user.id }, status: 404 },
    { method: 'PATCH', url: `/api/v1/admin/orgs/${org.slug}`, payload: {}, status: 400 },
    { method: 'PATCH', url: `/api/v1/admin/orgs/${uniqueSlug('nope')}`, payload: { status: 'suspended' }, status: 404 }
  ] as const
  for (const { method, url, payload, status } of refused) {
    const res = await app.inject({ method, url, headers: adminHeaders, payload })
    t.equal(res.statusCode, status, `${method} ${url} → ${status}`)
  }
  const wrongToken = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${org.slug}`, headers: { authorization: 'Bearer nope' }, payload: { status: 'suspended' } })
  t.equal(wrongToken.statusCode, 401)
  t.equal(await count(), total, 'no event anywhere')
  t.same(await eventsAbout(app, { orgId: org.id, targetId: user.id }), before)
})

t.test('org members: member.updated and member.removed with the acting org_admin; refusals record nothing', async t => {
  const app = await build(t)
  const { org, user: admin } = await createOrgWithMember(app, 'org_admin')
  const member = await createUser(app)
  await addMember(app, org.slug, member.id, 'member')
  const tokenOf = async (userId: string, role: 'org_admin' | 'member'): Promise<string> => (await sessionToken(app, { userId, orgId: org.id, slug: org.slug, role })).token
  const adminToken = await tokenOf(admin.id, 'org_admin')
  const call = (method: 'PATCH' | 'DELETE', userId: string, token: string, payload?: object) => app.inject({
    method, url: `/api/v1/org/members/${userId}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${token}` }, remoteAddress: '198.51.100.4', ...(payload !== undefined && { payload })
  })
  const actor = { type: 'user', id: admin.id, email: admin.email }
  const baseline = (await eventsAbout(app, { orgId: org.id })).length

  const promoted = await call('PATCH', member.id, adminToken, { role: 'org_admin', status: 'active' })
  t.equal(promoted.statusCode, 200)
  const { joinedAt } = promoted.json().data.member
  let events = (await eventsAbout(app, { orgId: org.id })).slice(baseline)
  t.same(events.map(event => ({ ...event, id: null, createdAt: null })), [{
    id: null,
    type: 'member.updated',
    orgId: org.id,
    actor,
    target: { type: 'user', id: member.id },
    data: { user: { id: member.id, email: member.email }, membership: { role: 'org_admin', status: 'active', joinedAt }, changes: ['role'] },
    ip: '198.51.100.4',
    createdAt: null
  }], 'only the role changed (the status was sent unchanged)')

  t.equal((await call('PATCH', member.id, adminToken, { role: 'org_admin' })).statusCode, 200)
  t.equal((await eventsAbout(app, { orgId: org.id })).length, baseline + 1, 'the same role again: no event')

  // Refusals: 409 (the last active org_admin), 403 (not an org_admin), 400, 404.
  const memberToken = await tokenOf(member.id, 'org_admin')
  t.equal((await call('PATCH', member.id, adminToken, { role: 'member' })).statusCode, 200, 'demoted again')
  const other = await createUser(app)
  await addMember(app, org.slug, other.id, 'member')
  const afterSetup = (await eventsAbout(app, { orgId: org.id })).length
  t.equal((await call('PATCH', admin.id, adminToken, { status: 'suspended' })).statusCode, 409)
  t.equal((await call('DELETE', admin.id, adminToken)).statusCode, 409)
  t.equal((await call('DELETE', other.id, memberToken)).statusCode, 403)
  t.equal((await call('PATCH', other.id, adminToken, { role: 'owner' })).statusCode, 400)
  t.equal((await call('PATCH', (await createUser(app)).id, adminToken, { role: 'member' })).statusCode, 404)
  t.equal((await eventsAbout(app, { orgId: org.id })).length, afterSetup, 'no event for a refused change')

  const removed = await call('DELETE', other.id, adminToken)
  t.equal(removed.statusCode, 200)
  events = (await eventsAbout(app, { orgId: org.id })).slice(afterSetup)
  t.same(events.map(event => ({ ...event, id: null, createdAt: null })), [{
    id: null,
    type: 'member.removed',
    orgId: org.id,
    actor,
    target: { type: 'user', id: other.id },
    data: { user: { id: other.id, email: other.email }, removedBy: { id: admin.id, email: admin.email } },
    ip: '198.51.100.4',
    createdAt: null
  }])
})

t.test('user.login: one event per login, none for a refused one', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const outsider = await createUser(app)
  const baseline = (await eventsAbout(app, { orgId: org.id })).length

  const res = await app.inject({
    method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': org.slug, 'user-agent': 'audit-test/1.0' }, payload: { email: user.email, password: user.password }, remoteAddress: '192.0.2.55'
  })
  t.equal(res.statusCode, 200)
  const sessionId = JSON.parse(Buffer.from(res.json().data.accessToken.split('.')[1], 'base64url').toString()).sid
  const events = (await eventsAbout(app, { orgId: org.id })).slice(baseline)
  t.same(events.map(event => ({ ...event, id: null, createdAt: null })), [{
    id: null,
    type: 'user.login',
    orgId: org.id,
    actor: { type: 'user', id: user.id, email: user.email },
    target: { type: 'user', id: user.id },
    data: { user: { id: user.id, email: user.email }, sessionId, userAgent: 'audit-test/1.0' },
    ip: '192.0.2.55',
    createdAt: null
  }])

  t.equal((await login(app, org.slug, user.email, 'not the password')).statusCode, 401)
  t.equal((await login(app, org.slug, outsider.email, outsider.password)).statusCode, 403)
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  t.equal((await login(app, org.slug, user.email, user.password)).statusCode, 403)
  t.same((await eventsAbout(app, { orgId: org.id })).slice(baseline).map(event => event.type), ['user.login', 'org.updated'], 'refused logins record nothing')
})
