import t from 'tap'
import { build, adminHeaders } from '../helper.ts'
import { createdKey, keyEvents, keyRoutes, orgAdmin } from '../support/org-keys.ts'

// §9: a key's description, scopes, budget and allowlist; GET and PATCH /org/api-keys/:keyId.

const ALL_SCOPES = ['tokens:verify', 'users:read', 'org:read']

t.test('POST /org/api-keys takes description, scopes, rateLimit and allowedIps; GET and the list show them', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const res = await keys.create({
    name: 'Billing service',
    description: '  Checks access tokens for billing  ',
    scopes: ['tokens:verify', 'org:read'],
    rateLimit: { max: 10, windowSeconds: 60 },
    allowedIps: ['203.0.113.0/24', '2001:DB8::1']
  })
  t.equal(res.statusCode, 201)
  const { apiKey } = res.json().data
  t.match(apiKey, {
    name: 'Billing service',
    description: 'Checks access tokens for billing',
    scopes: ['tokens:verify', 'org:read'],
    rateLimit: { max: 10, windowSeconds: 60 },
    allowedIps: ['203.0.113.0/24', '2001:db8::1'],
    createdBy: { type: 'user', id: admin.user.id }
  })

  const got = await keys.get(apiKey.id)
  t.equal(got.statusCode, 200)
  t.same(got.json(), { status: 'success', data: { apiKey } }, 'GET answers the key object of the create')
  const listed = (await keys.list()).json().data.apiKeys
  t.same(listed, [apiKey], 'the list too')

  const row = await app.db.selectFrom('api_keys').selectAll().where('id', '=', apiKey.id).executeTakeFirstOrThrow()
  t.match(row, { scopes: ['tokens:verify', 'org:read'], rate_limit_max: 10, rate_limit_window_seconds: 60, allowed_ips: ['203.0.113.0/24', '2001:db8::1'], created_by_type: 'user' })
})

t.test('GET /org/api-keys/:keyId: 404 for an unknown id, a malformed one or another org\'s key', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const other = await orgAdmin(app)
  const { apiKey } = await createdKey(app, other)
  for (const id of [apiKey.id, 'key_01JZ8Q4K7X3W5N2M9B6V1C0D8E', 'not-a-key']) {
    const res = await keyRoutes(app, admin).get(id)
    t.equal(res.statusCode, 404, id)
    t.same(res.json(), { status: 'error', message: 'API key not found', code: 'not_found' })
  }
  // §1: U+0000 in a path parameter is refused before any lookup, naming the parameter.
  const nul = await keyRoutes(app, admin).get('key_%00')
  t.equal(nul.statusCode, 400)
  t.equal(nul.json().code, 'validation_failed')
  t.match(nul.json().message, /params\.keyId/)
})

t.test('allowedIps are stored normalised', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const cases: Array<[string[], string[]]> = [
    [['10.1.2.3/8'], ['10.0.0.0/8']],
    [['203.0.113.7'], ['203.0.113.7']],
    [['203.0.113.7/32'], ['203.0.113.7']],
    [['192.168.1.77/24', '192.168.1.0/24'], ['192.168.1.0/24']],
    [[' 198.51.100.1 '], ['198.51.100.1']],
    [['0.0.0.0/0', '::/0'], ['0.0.0.0/0', '::/0']],
    [['2001:DB8:0:0:0:0:0:1'], ['2001:db8::1']],
    [['2001:db8::1/128'], ['2001:db8::1']],
    [['2001:db8:abcd::1/32'], ['2001:db8::/32']],
    [['::ffff:10.1.2.3'], ['10.1.2.3']],
    [['::ffff:10.1.2.3/104'], ['10.0.0.0/8']],
    [['::ffff:0:0/95'], ['::fffe:0:0/95']],
    [[], []]
  ]
  for (const [given, stored] of cases) {
    const res = await keyRoutes(app, admin).create({ name: 'Fenced', allowedIps: given })
    t.equal(res.statusCode, 201, JSON.stringify(given))
    t.same(res.json().data.apiKey.allowedIps, stored, `${JSON.stringify(given)} → ${JSON.stringify(stored)}`)
  }
  const fifty = Array.from({ length: 50 }, (_, i) => `10.0.${i}.0/24`)
  const full = await keyRoutes(app, admin).create({ name: 'Fifty', allowedIps: fifty })
  t.equal(full.statusCode, 201, '50 entries are allowed')
  t.same(full.json().data.apiKey.allowedIps, fifty)
})

// Each refused body, for POST (with a name) and PATCH alike: 400 validation_failed naming the field, and nothing written.
const REFUSED: Array<[object, RegExp]> = [
  [{ scopes: [] }, /^body\.scopes must NOT have fewer than 1 items$/],
  [{ scopes: ['tokens:verify', 'tokens:verify'] }, /^body\.scopes must NOT have duplicate items/],
  [{ scopes: ['tokens:verify', 'users:write'] }, /^body\.scopes\.1 must be one of: tokens:verify, users:read, org:read$/],
  [{ scopes: 'org:read' }, /^body\.scopes must be array$/],
  [{ allowedIps: Array.from({ length: 51 }, (_, i) => `10.0.${i}.1`) }, /^body\.allowedIps must NOT have more than 50 items$/],
  [{ allowedIps: ['10.0.0.1', '10.0.0.300'] }, /^body\.allowedIps\.1 "10\.0\.0\.300" is not an IPv4 or IPv6 address or CIDR block$/],
  [{ allowedIps: ['10.1'] }, /^body\.allowedIps\.0 "10\.1" is not/],
  [{ allowedIps: ['0x0a.0.0.1'] }, /^body\.allowedIps\.0 "0x0a\.0\.0\.1" is not/],
  [{ allowedIps: ['010.0.0.1'] }, /^body\.allowedIps\.0 "010\.0\.0\.1" is not/],
  [{ allowedIps: ['1.2.3.4/33'] }, /^body\.allowedIps\.0 "1\.2\.3\.4\/33" is not/],
  [{ allowedIps: ['1.2.3.4/'] }, /^body\.allowedIps\.0 "1\.2\.3\.4\/" is not/],
  [{ allowedIps: ['1.2.3.4/-1'] }, /^body\.allowedIps\.0 "1\.2\.3\.4\/-1" is not/],
  [{ allowedIps: ['2001:db8::1/129'] }, /^body\.allowedIps\.0 "2001:db8::1\/129" is not/],
  [{ allowedIps: ['fe80::1%eth0'] }, /^body\.allowedIps\.0 "fe80::1%eth0" is not/],
  [{ allowedIps: ['localhost'] }, /^body\.allowedIps\.0 "localhost" is not/],
  [{ allowedIps: [' '] }, /^body\.allowedIps\.0 " " is not/],
  [{ allowedIps: [''] }, /^body\.allowedIps\.0 must NOT have fewer than 1 characters$/],
  [{ allowedIps: ['1'.repeat(65)] }, /^body\.allowedIps\.0 must NOT have more than 64 characters$/],
  [{ description: 'x'.repeat(501) }, /^body\.description must NOT have more than 500 characters$/],
  [{ description: 7 }, /^body\.description must be string,null$/],
  [{ rateLimit: { max: 0, windowSeconds: 60 } }, /^body\.rateLimit\.max must be >= 1$/],
  [{ rateLimit: { max: 1_000_001, windowSeconds: 86_400 } }, /^body\.rateLimit\.max must be <= 1000000$/],
  [{ rateLimit: { max: 1.5, windowSeconds: 60 } }, /^body\.rateLimit\.max must be integer$/],
  [{ rateLimit: { max: 10, windowSeconds: 0 } }, /^body\.rateLimit\.windowSeconds must be >= 1$/],
  [{ rateLimit: { max: 10, windowSeconds: 86_401 } }, /^body\.rateLimit\.windowSeconds must be <= 86400$/],
  [{ rateLimit: { max: 10 } }, /^body\.rateLimit\.windowSeconds is required$/],
  [{ rateLimit: '10/60' }, /^body\.rateLimit must be object,null$/],
  // The service default in tests is 300 per 900 s (one request per 3 s); 1 per 2 s is faster.
  [{ rateLimit: { max: 1, windowSeconds: 2 } }, /^body\.rateLimit \(1 per 2 s\) is faster than the organization's budget of 300 per 900 s/]
]

t.test('POST /org/api-keys refuses bad settings with 400 naming the field, and writes nothing', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  for (const [body, message] of REFUSED) {
    const res = await keyRoutes(app, admin).create({ name: 'Refused', ...body })
    t.equal(res.statusCode, 400, JSON.stringify(body).slice(0, 80))
    t.equal(res.json().code, 'validation_failed')
    t.match(res.json().message, message)
  }
  t.same((await keyRoutes(app, admin).list()).json().data.apiKeys, [], 'no key was made')
  const events = await app.db.selectFrom('audit_events').select('id').where('org_id', '=', admin.org.id).where('type', 'like', 'api_key.%').execute()
  t.same(events, [], 'no event was written')
})

t.test('PATCH /org/api-keys/:keyId refuses bad settings with 400 naming the field, and changes nothing', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const { apiKey } = await createdKey(app, admin)
  const extra: Array<[object, RegExp]> = [
    [{}, /^body must NOT have fewer than 1 properties$/],
    [{ name: '  ' }, /^body\.name must not be blank$/],
    [{ name: null }, /^body\.name must be string$/],
    [{ expiresAt: new Date(Date.now() - 1000).toISOString() }, /^body\.expiresAt must be in the future$/],
    [{ expiresAt: '2999-01-01T00:00:00' }, /^body\.expiresAt must match format "date-time"$/],
    [{ scopes: null }, /^body\.scopes must be array$/],
    [{ allowedIps: null }, /^body\.allowedIps must be array$/]
  ]
  for (const [body, message] of [...REFUSED, ...extra]) {
    const res = await keys.patch(apiKey.id, body)
    t.equal(res.statusCode, 400, JSON.stringify(body).slice(0, 80))
    t.equal(res.json().code, 'validation_failed')
    t.match(res.json().message, message)
  }
  t.same((await keys.get(apiKey.id)).json().data.apiKey, apiKey, 'the key is as created')
  t.same((await keyEvents(app, apiKey.id)).map(e => e.type), ['api_key.created'], 'no api_key.updated was written')
})

t.test('a key may not be faster than its org: the org\'s own budget, else the service default', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  // Service default: 300 per 900 s. Equal average rates pass (100 per 300 s), faster ones do not.
  t.equal((await keys.create({ name: 'Same rate', rateLimit: { max: 100, windowSeconds: 300 } })).statusCode, 201)
  t.equal((await keys.create({ name: 'Slower', rateLimit: { max: 1, windowSeconds: 86_400 } })).statusCode, 201)
  t.equal((await keys.create({ name: 'Faster', rateLimit: { max: 101, windowSeconds: 300 } })).statusCode, 400)

  const budget = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${admin.org.slug}`, headers: adminHeaders, payload: { rateLimit: { max: 1000, windowSeconds: 60 } } })
  t.equal(budget.statusCode, 200)
  const fast = await keys.create({ name: 'Fast', rateLimit: { max: 1000, windowSeconds: 60 } })
  t.equal(fast.statusCode, 201, 'the org\'s budget, not the service default, bounds its keys')
  const tooFast = await keys.patch(fast.json().data.apiKey.id, { rateLimit: { max: 17, windowSeconds: 1 } })
  t.equal(tooFast.statusCode, 400)
  t.match(tooFast.json().message, /^body\.rateLimit \(17 per 1 s\) is faster than the organization's budget of 1000 per 60 s/)

  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${admin.org.slug}`, headers: adminHeaders, payload: { rateLimit: null } })
  const backToDefault = await keys.create({ name: 'Fast again', rateLimit: { max: 1000, windowSeconds: 60 } })
  t.equal(backToDefault.statusCode, 400, 'with the org budget cleared, the service default bounds keys again')
  t.equal((await keys.create({ name: 'Org budget', rateLimit: null })).statusCode, 201, 'null: the org\'s budget')
})

t.test('PATCH /org/api-keys/:keyId changes the fields it names, records what changed, and nothing when nothing did', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const { key, apiKey } = await createdKey(app, admin, { name: 'Backend' })

  const expiresAt = new Date(Date.now() + 7 * 86400_000).toISOString()
  const patched = await keys.patch(apiKey.id, {
    name: ' Billing ', description: 'For billing', scopes: ['users:read'], rateLimit: { max: 5, windowSeconds: 60 }, allowedIps: ['10.9.8.7/16'], expiresAt
  })
  t.equal(patched.statusCode, 200, patched.body)
  const updated = patched.json().data.apiKey
  t.same(updated, {
    ...apiKey, name: 'Billing', description: 'For billing', scopes: ['users:read'], rateLimit: { max: 5, windowSeconds: 60 }, allowedIps: ['10.9.0.0/16'], expiresAt
  }, 'every named field changed; id, prefix, createdAt, createdBy unchanged')
  t.same((await keys.get(apiKey.id)).json().data.apiKey, updated, 'as stored')

  const cleared = await keys.patch(apiKey.id, { description: '   ', rateLimit: null, allowedIps: [], expiresAt: null, scopes: ALL_SCOPES })
  t.equal(cleared.statusCode, 200)
  t.same(cleared.json().data.apiKey, { ...updated, description: null, rateLimit: null, allowedIps: [], expiresAt: null, scopes: ALL_SCOPES }, 'null and blank clear')

  const unchanged = await keys.patch(apiKey.id, { name: 'Billing', scopes: ALL_SCOPES, expiresAt: null })
  t.equal(unchanged.statusCode, 200)
  t.same(unchanged.json().data.apiKey, cleared.json().data.apiKey, 'a body equal to the key changes nothing')

  const events = await keyEvents(app, apiKey.id)
  t.same(events.map(e => e.type), ['api_key.created', 'api_key.updated', 'api_key.updated'], 'one event per change; none for the body that changed nothing')
  t.same(events[1].data, { apiKey: updated, changes: ['name', 'description', 'scopes', 'rateLimit', 'allowedIps', 'expiresAt'] })
  t.same(events[2].data, { apiKey: cleared.json().data.apiKey, changes: ['description', 'scopes', 'rateLimit', 'allowedIps', 'expiresAt'] }, 'changes names only what changed (not name)')
  t.match(events[1], { type: 'api_key.updated', org_id: admin.org.id, actor_type: 'user', actor_id: admin.user.id, actor_email: admin.user.email, target_type: 'api_key', target_id: apiKey.id })
  t.notOk(JSON.stringify(events).includes(key.slice(10)), 'no secret in the events')
})

t.test('PATCH: 404 for another org\'s key, 409 for a revoked key (nothing recorded); an expired key may be given a new expiry', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const other = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const theirs = await createdKey(app, other)
  const notMine = await keys.patch(theirs.apiKey.id, { name: 'Mine now' })
  t.equal(notMine.statusCode, 404)
  t.equal((await keyRoutes(app, other).get(theirs.apiKey.id)).json().data.apiKey.name, 'Test key')

  const { apiKey } = await createdKey(app, admin)
  await keys.revoke(apiKey.id)
  const revoked = await keys.patch(apiKey.id, { name: 'Back from the dead', expiresAt: null })
  t.equal(revoked.statusCode, 409)
  t.same(revoked.json(), { status: 'error', message: 'API key is revoked: it cannot be changed', code: 'conflict' })
  t.same((await keyEvents(app, apiKey.id)).map(e => e.type), ['api_key.created', 'api_key.revoked'])

  const expiring = await createdKey(app, admin)
  await app.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', expiring.apiKey.id).execute()
  t.equal((await keys.get(expiring.apiKey.id)).json().data.apiKey.isActive, false)
  const renewed = await keys.patch(expiring.apiKey.id, { expiresAt: null })
  t.equal(renewed.statusCode, 200)
  t.match(renewed.json().data.apiKey, { isActive: true, expiresAt: null })
})

t.test('PATCH /admin/orgs/:slug sets and clears the org\'s budget per key; the org object shows it', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const patch = (payload: object) => app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${admin.org.slug}`, headers: adminHeaders, payload })
  const set = await patch({ rateLimit: { max: 1000, windowSeconds: 60 } })
  t.equal(set.statusCode, 200)
  t.match(set.json().data.org, { slug: admin.org.slug, rateLimit: { max: 1000, windowSeconds: 60 } })
  const listed = (await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders })).json().data.orgs
  t.same(listed.find((org: { slug: string }) => org.slug === admin.org.slug).rateLimit, { max: 1000, windowSeconds: 60 })
  const row = await app.db.selectFrom('organizations').select(['rate_limit_max', 'rate_limit_window_seconds']).where('id', '=', admin.org.id).executeTakeFirstOrThrow()
  t.same(row, { rate_limit_max: 1000, rate_limit_window_seconds: 60 })

  for (const [rateLimit, message] of [
    [{ max: 0, windowSeconds: 60 }, /^body\.rateLimit\.max must be >= 1$/],
    [{ max: 10, windowSeconds: 86_401 }, /^body\.rateLimit\.windowSeconds must be <= 86400$/],
    [{ max: 10 }, /^body\.rateLimit\.windowSeconds is required$/],
    [5, /^body\.rateLimit must be object,null$/]
  ] as Array<[unknown, RegExp]>) {
    const res = await patch({ rateLimit })
    t.equal(res.statusCode, 400, JSON.stringify(rateLimit))
    t.match(res.json().message, message)
  }
  const again = await patch({ rateLimit: { windowSeconds: 60, max: 1000 } })
  t.equal(again.statusCode, 200, 'the same budget again, its fields in another order')
  const cleared = await patch({ rateLimit: null })
  t.equal(cleared.statusCode, 200)
  t.equal(cleared.json().data.org.rateLimit, null)
  const events = await app.db.selectFrom('audit_events').select(['type', 'data']).where('org_id', '=', admin.org.id).where('type', '=', 'org.updated').orderBy('created_at').orderBy('id').execute()
  t.same(events.map(event => event.data), [
    { org: set.json().data.org, changes: ['rateLimit'] },
    { org: cleared.json().data.org, changes: ['rateLimit'] }
  ], 'org.updated for each change of the budget; none for the same budget sent again nor for the refused ones')

  const publicOrg = await app.inject({ method: 'GET', url: '/api/v1/org', headers: admin.headers })
  t.notOk('rateLimit' in publicOrg.json().data.org, 'members see §2\'s org, without the budget')
})

t.test('the raw key is in no response but the create', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const { key, apiKey } = await createdKey(app, admin)
  for (const res of [await keys.get(apiKey.id), await keys.list(), await keys.patch(apiKey.id, { name: 'Renamed' })]) {
    t.equal(res.statusCode, 200)
    t.notOk(res.body.includes(key.slice(10)))
  }
})
