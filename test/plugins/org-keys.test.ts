import { Writable } from 'node:stream'
import { crc32 } from 'node:zlib'
import t from 'tap'
import { build, createUser, addMember, sessionToken, adminHeaders } from '../helper.ts'
import { orgAdmin } from '../support/org-keys.ts'
import { hashApiKey } from '../../src/api-key-format.ts'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
// §9's full key object, the seed's fields first in its order, on every key response.
const KEY_FIELDS = ['id', 'name', 'prefix', 'isActive', 'createdAt', 'expiresAt', 'lastUsedAt', 'description', 'scopes', 'rateLimit', 'allowedIps', 'createdBy', 'revokedAt', 'rotatedFromId', 'rotatedToId']
const PEPPER = 'test-api-key-pepper-0123456789abcdef0123'

t.test('POST /org/api-keys answers the seed page shape, with the key shown once', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const res = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: admin.headers, payload: { name: 'Production backend' } })
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.same(Object.keys(body), ['status', 'data'])
  t.equal(body.status, 'success')
  t.same(Object.keys(body.data), ['key', 'apiKey'])
  const { key, apiKey } = body.data
  t.match(key, /^pk_live_[0-9a-f]{64}$/)
  t.equal(key.slice(64), crc32(key.slice(0, 64)).toString(16).padStart(8, '0'), 'the last 8 hex are the CRC32 of the rest')
  t.same(Object.keys(apiKey), KEY_FIELDS)
  t.match(apiKey.id, /^key_[0-9A-HJKMNP-TV-Z]{26}$/)
  t.equal(apiKey.name, 'Production backend')
  t.equal(apiKey.prefix, key.slice(0, 10))
  t.match(apiKey.createdAt, ISO)
  t.equal(apiKey.expiresAt, null)
  t.equal(apiKey.lastUsedAt, null)
  t.same(apiKey, {
    ...apiKey,
    isActive: true,
    description: null,
    scopes: ['tokens:verify', 'users:read', 'org:read'],
    rateLimit: null,
    allowedIps: [],
    createdBy: { type: 'user', id: admin.user.id },
    revokedAt: null,
    rotatedFromId: null,
    rotatedToId: null
  }, 'the defaults: every scope, the org budget, any address')

  const row = await app.db.selectFrom('api_keys').selectAll().where('id', '=', apiKey.id).executeTakeFirstOrThrow()
  t.equal(row.key_hash, hashApiKey(PEPPER, key), 'stored as HMAC-SHA256 under the pepper')
  t.equal(row.prefix, key.slice(0, 10))
  t.equal(row.org_id, admin.org.id)
  t.equal(row.created_by, admin.user.id)
  const stored = JSON.stringify(row)
  t.notOk(stored.includes(key.slice(10)), 'no column holds the raw key or its secret part')

  const list = await app.inject({ method: 'GET', url: '/api/v1/org/api-keys', headers: admin.headers })
  t.notOk(list.body.includes(key.slice(10)), 'the list never shows the key again')
})

t.test('name is trimmed, 1–100 characters; expiresAt must be a future ISO 8601 date-time', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const post = (payload: unknown) => app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: admin.headers, payload: payload as object })

  const trimmed = await post({ name: '  Staging  ' })
  t.equal(trimmed.statusCode, 201)
  t.equal(trimmed.json().data.apiKey.name, 'Staging')
  t.equal((await post({ name: 'x'.repeat(100) })).statusCode, 201)

  const future = new Date(Date.now() + 86400_000)
  const expiring = await post({ name: 'Expiring', expiresAt: future.toISOString().replace('Z', '+00:00') })
  t.equal(expiring.statusCode, 201)
  t.equal(expiring.json().data.apiKey.expiresAt, future.toISOString())

  const bad: Array<[unknown, RegExp]> = [
    [{}, /name/],
    [{ name: '' }, /name/],
    [{ name: '   ' }, /name/],
    [{ name: 'x'.repeat(101) }, /name/],
    [{ name: 42 }, /name/],
    [{ name: 'Old', expiresAt: new Date(Date.now() - 60_000).toISOString() }, /expiresAt.*future/],
    [{ name: 'Bad', expiresAt: 'tomorrow' }, /expiresAt/],
    [{ name: 'No zone', expiresAt: '2999-01-01T00:00:00' }, /expiresAt/],
    [{ name: 'Bad day', expiresAt: '2999-02-30T00:00:00Z' }, /expiresAt/],
    [{ name: 'Number', expiresAt: 1893456000000 }, /expiresAt/]
  ]
  for (const [payload, field] of bad) {
    const res = await post(payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().code, 'validation_failed')
    t.match(res.json().message, field)
  }
  const notJson = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: { ...admin.headers, 'content-type': 'text/plain' }, payload: 'name=x' })
  t.equal(notJson.statusCode, 415)
})

t.test('only an active org_admin of the org may manage keys', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const member = await createUser(app)
  await addMember(app, admin.org.slug, member.id, 'member')
  const { token: memberToken } = await sessionToken(app, { userId: member.id, orgId: admin.org.id, slug: admin.org.slug, role: 'member' })
  const other = await orgAdmin(app)

  const routes = [
    { method: 'POST' as const, url: '/api/v1/org/api-keys', payload: { name: 'x' } },
    { method: 'GET' as const, url: '/api/v1/org/api-keys' },
    { method: 'DELETE' as const, url: '/api/v1/org/api-keys/key_01JZ8Q4K7X3W5N2M9B6V1C0D8E' },
    { method: 'GET' as const, url: '/api/v1/org/api-keys/key_01JZ8Q4K7X3W5N2M9B6V1C0D8E' },
    { method: 'PATCH' as const, url: '/api/v1/org/api-keys/key_01JZ8Q4K7X3W5N2M9B6V1C0D8E', payload: { name: 'x' } },
    { method: 'POST' as const, url: '/api/v1/org/api-keys/key_01JZ8Q4K7X3W5N2M9B6V1C0D8E/rotate', payload: {} }
  ]
  for (const route of routes) {
    const noToken = await app.inject({ ...route, headers: { 'x-org-slug': admin.org.slug } })
    t.equal(noToken.statusCode, 401, `${route.method} without a token`)
    t.equal(noToken.json().code, 'unauthorized')
    const asMember = await app.inject({ ...route, headers: { authorization: `Bearer ${memberToken}`, 'x-org-slug': admin.org.slug } })
    t.equal(asMember.statusCode, 403, `${route.method} as a member`)
    t.equal(asMember.json().code, 'forbidden')
    const otherOrgsAdmin = await app.inject({ ...route, headers: { authorization: other.headers.authorization, 'x-org-slug': admin.org.slug } })
    t.equal(otherOrgsAdmin.statusCode, 401, `${route.method} with another org's token`)
    const noSlug = await app.inject({ ...route, headers: { authorization: admin.headers.authorization } })
    t.equal(noSlug.statusCode, 400, `${route.method} without X-Org-Slug`)
    const unknownSlug = await app.inject({ ...route, headers: { authorization: admin.headers.authorization, 'x-org-slug': 'no-such-org-here' } })
    t.equal(unknownSlug.statusCode, 404, `${route.method} with an unknown org`)
  }

  await app.db.updateTable('memberships').set({ status: 'suspended' }).where('user_id', '=', admin.user.id).execute()
  const suspended = await app.inject({ method: 'GET', url: '/api/v1/org/api-keys', headers: admin.headers })
  t.equal(suspended.statusCode, 403, 'a suspended org_admin')

  const suspendedOrg = await orgAdmin(app)
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${suspendedOrg.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  const inSuspendedOrg = await app.inject({ method: 'GET', url: '/api/v1/org/api-keys', headers: suspendedOrg.headers })
  t.equal(inSuspendedOrg.statusCode, 403, 'a suspended org')
})

t.test('GET /org/api-keys lists the org keys newest first, revoked and expired ones inactive', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const other = await orgAdmin(app)
  const create = async (who: typeof admin, name: string) => (await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: who.headers, payload: { name } })).json().data.apiKey
  const first = await create(admin, 'First')
  const second = await create(admin, 'Second')
  const third = await create(admin, 'Third')
  await create(other, 'Not mine')
  await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${first.id}`, headers: admin.headers })
  await app.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', second.id).execute()

  const res = await app.inject({ method: 'GET', url: '/api/v1/org/api-keys', headers: admin.headers })
  t.equal(res.statusCode, 200)
  const { apiKeys } = res.json().data
  t.same(apiKeys.map((k: { name: string }) => k.name), ['Third', 'Second', 'First'])
  for (const listed of apiKeys) {
    t.same(Object.keys(listed), KEY_FIELDS)
  }
  t.same(apiKeys.map((k: { isActive: boolean }) => k.isActive), [true, false, false])
  t.same(apiKeys[0], third, 'listed as created')
  t.match(apiKeys[1].expiresAt, ISO)
  t.equal(apiKeys[1].revokedAt, null, 'expired, not revoked')
  t.match(apiKeys[2].revokedAt, ISO, 'revoked')
})

t.test('DELETE /org/api-keys/:keyId revokes idempotently, only within the org, and is audited', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const other = await orgAdmin(app)
  const created = (await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: admin.headers, payload: { name: 'To revoke' } })).json().data
  const keyId = created.apiKey.id

  const fromOtherOrg = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${keyId}`, headers: other.headers })
  t.equal(fromOtherOrg.statusCode, 404)
  t.same(fromOtherOrg.json(), { status: 'error', message: 'API key not found', code: 'not_found' })
  const stillActive = await app.db.selectFrom('api_keys').select('revoked_at').where('id', '=', keyId).executeTakeFirstOrThrow()
  t.equal(stillActive.revoked_at, null, "another org's admin cannot revoke it")

  for (let i = 0; i < 2; i++) {
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${keyId}`, headers: admin.headers })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { status: 'success', data: { message: 'API key revoked' } })
  }
  for (const unknown of ['key_01JZ8Q4K7X3W5N2M9B6V1C0D8E', 'not-a-key-id']) {
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${unknown}`, headers: admin.headers })
    t.equal(res.statusCode, 404)
  }

  const row = await app.db.selectFrom('api_keys').select(['revoked_at', 'revoked_by']).where('id', '=', keyId).executeTakeFirstOrThrow()
  t.ok(row.revoked_at instanceof Date)
  t.equal(row.revoked_by, admin.user.id)

  const events = await app.db.selectFrom('audit_events').selectAll().where('target_id', '=', keyId).orderBy('created_at').orderBy('id').execute()
  t.same(events.map(e => e.type), ['api_key.created', 'api_key.revoked'], 'one event each; the repeated revoke records nothing')
  for (const event of events) {
    t.match(event, { org_id: admin.org.id, actor_type: 'user', actor_id: admin.user.id, target_type: 'api_key', target_id: keyId })
    t.notOk(JSON.stringify(event).includes(created.key.slice(10)), 'no secret in the audit trail')
  }
  const hash = hashApiKey(PEPPER, created.key)
  t.notOk(JSON.stringify(events).includes(hash), 'nor the key hash')
  t.same(events[0].data, { apiKey: created.apiKey }, 'api_key.created holds the full key object as created')
  const revokedKey = (await app.inject({ method: 'GET', url: `/api/v1/org/api-keys/${keyId}`, headers: admin.headers })).json().data.apiKey
  t.same(events[1].data, { apiKey: revokedKey }, 'api_key.revoked holds the full key object as revoked')
  t.match(revokedKey, { isActive: false, revokedAt: ISO })
})

t.test('the raw key never reaches a log line', async t => {
  let logs = ''
  const logStream = new Writable({ write (chunk, _encoding, done) { logs += String(chunk); done() } })
  const app = await build(t, { logLevel: 'trace' }, { logStream })
  const admin = await orgAdmin(app)
  const res = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: admin.headers, payload: { name: 'Logged?' } })
  const { key } = res.json().data
  await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': admin.org.slug, 'x-api-key': key } })
  t.match(logs, /API key created/)
  t.notOk(logs.includes(key.slice(10)))
})
