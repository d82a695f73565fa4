import t from 'tap'
import { build, adminHeaders, uniqueSlug, uniqueEmail, createUser } from '../helper.ts'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

t.test('admin API needs the admin token', async t => {
  const app = await build(t)
  for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: 'Basic abc' }, { authorization: `Bearer ${'x'.repeat(5000)}` }]) {
    const res = await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers })
    t.equal(res.statusCode, 401)
    t.same(res.json(), { status: 'error', message: 'Invalid admin token', code: 'unauthorized' })
  }
})

t.test('without an admin token (production) the admin API does not exist', async t => {
  const app = await build(t, { adminToken: null, nodeEnv: 'production' })
  const res = await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('create, list and update orgs', async t => {
  const app = await build(t)
  const slug = uniqueSlug('acme')
  const created = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug, name: 'Acme Inc.', plan: 'pro', appUrl: 'https://app.acme.test' } })
  t.equal(created.statusCode, 201)
  const { org } = created.json().data
  t.match(org, { slug, name: 'Acme Inc.', plan: 'pro', status: 'active', appUrl: 'https://app.acme.test' })
  t.match(org.id, /^org_[0-9A-HJKMNP-TV-Z]{26}$/)
  t.match(org.createdAt, ISO)
  t.same(Object.keys(org).sort(), ['appUrl', 'createdAt', 'id', 'name', 'plan', 'rateLimit', 'slug', 'status'], "§2's fields and the org's budget per key (§9)")
  t.equal(org.rateLimit, null, 'a new org has the service default budget')

  const dup = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug, name: 'Other' } })
  t.equal(dup.statusCode, 409)
  t.equal(dup.json().code, 'conflict')

  const list = await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders })
  t.equal(list.statusCode, 200)
  t.ok(list.json().data.orgs.some((o: { slug: string }) => o.slug === slug))

  const patched = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { status: 'suspended', appUrl: null } })
  t.equal(patched.statusCode, 200)
  t.match(patched.json().data.org, { status: 'suspended', appUrl: null, plan: 'pro' })

  const missing = await app.inject({ method: 'PATCH', url: '/api/v1/admin/orgs/no-such-org', headers: adminHeaders, payload: { name: 'x' } })
  t.equal(missing.statusCode, 404)
  const empty = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: {} })
  t.equal(empty.statusCode, 400)
})

t.test('org validation names the field', async t => {
  const app = await build(t)
  const cases: Array<[unknown, RegExp]> = [
    [{ slug: 'AB', name: 'x' }, /slug/],
    [{ slug: 'has space', name: 'x' }, /slug/],
    [{ slug: 'x'.repeat(49), name: 'x' }, /slug/],
    [{ slug: uniqueSlug(), name: '' }, /name/],
    [{ slug: uniqueSlug(), name: 'x', appUrl: 'javascript:alert(1)' }, /appUrl/],
    [{ slug: uniqueSlug(), name: 'x', plan: 42 }, /plan/],
    [{ name: 'x' }, /slug/]
  ]
  for (const [payload, field] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: payload as object })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().code, 'validation_failed')
    t.match(res.json().message, field)
  }
})

t.test('create users: password hashed, email unique case-insensitively', async t => {
  const app = await build(t)
  const email = uniqueEmail('Ada')
  const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email, name: 'Ada', password: 'correct horse battery' } })
  t.equal(res.statusCode, 201)
  const { user } = res.json().data
  t.match(user, { email, name: 'Ada', role: 'user', isEmailVerified: false })
  t.notOk('password' in user)
  t.notOk('passwordHash' in user)
  const row = await app.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.match(row.password_hash, /^scrypt\$/)
  t.notMatch(row.password_hash, /correct horse/)

  const dup = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email: email.toUpperCase(), name: 'Ada', password: 'correct horse battery' } })
  t.equal(dup.statusCode, 409)

  const short = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email: uniqueEmail(), name: 'Ada', password: 'short' } })
  t.equal(short.statusCode, 400)
  t.match(short.json().message, /password/)
  const badEmail = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email: 'not-an-email', name: 'Ada', password: 'correct horse battery' } })
  t.equal(badEmail.statusCode, 400)
  t.match(badEmail.json().message, /email/)
})

t.test('add members', async t => {
  const app = await build(t)
  const slug = uniqueSlug()
  await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug, name: 'x' } })
  const user = await createUser(app)
  const res = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId: user.id } })
  t.equal(res.statusCode, 201)
  t.match(res.json().data.membership, { userId: user.id, role: 'member', status: 'active', joinedAt: ISO })
  const again = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId: user.id, role: 'org_admin' } })
  t.equal(again.statusCode, 409)
  const noUser = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E' } })
  t.equal(noUser.statusCode, 404)
  const noOrg = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs/no-such-org/members', headers: adminHeaders, payload: { userId: user.id } })
  t.equal(noOrg.statusCode, 404)
  const badId = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId: 'nope' } })
  t.equal(badId.statusCode, 400)
  const badRole = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId: user.id, role: 'owner' } })
  t.equal(badRole.statusCode, 400)
})
