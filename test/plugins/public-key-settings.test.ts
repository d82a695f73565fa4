import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Writable } from 'node:stream'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { adminHeaders, build } from '../helper.ts'
import { createdKey, keyRoutes, orgAdmin, type OrgAdmin } from '../support/org-keys.ts'
import { limits } from '../support/rate-limit.ts'

// §9 on /public: the order of checks (key → allowlist → scope → budget), the effective budget
// and its headers, X-API-Key-Expires-At, and changes seen by the next request.

const RATE_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after']
const USER_ID = 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E'

interface Call { method: 'GET' | 'POST', url: string, payload?: object }
const ROUTES: Record<string, Call> = {
  'tokens:verify': { method: 'POST', url: '/api/v1/public/verify', payload: { token: 'not-a-token' } },
  'users:read': { method: 'GET', url: `/api/v1/public/users/${USER_ID}` },
  'org:read': { method: 'GET', url: '/api/v1/public/org' }
}

function call (app: FastifyInstance, admin: OrgAdmin, key: string, route: Call, remoteAddress = '127.0.0.1', headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ ...route, headers: { 'x-org-slug': admin.org.slug, 'x-api-key': key, ...headers }, remoteAddress })
}
const orgOf = (app: FastifyInstance, admin: OrgAdmin, key: string, remoteAddress?: string) => call(app, admin, key, ROUTES['org:read'], remoteAddress)

function collect (lines: string[]): Writable {
  return new Writable({ write (chunk, _encoding, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done() } })
}

function noRateHeaders (t: Test, res: LightMyRequestResponse, what: string): void {
  t.same(RATE_HEADERS.filter(name => name in res.headers), [], `${what}: no X-RateLimit-* or Retry-After header`)
}

t.test('scopes: a route outside the key\'s scopes is 403 insufficient_scope naming the scope; the others pass', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  for (const [scope, route] of Object.entries(ROUTES)) {
    const others = Object.keys(ROUTES).filter(s => s !== scope)
    const { key } = await createdKey(app, admin, { scopes: others })
    const refused = await call(app, admin, key, route)
    t.equal(refused.statusCode, 403, `${scope}: 403 without it`)
    t.equal(refused.json().code, 'insufficient_scope')
    t.match(refused.json().message, scope, 'the message names the missing scope')
    t.equal(refused.json().status, 'error')
    noRateHeaders(t, refused, scope)
    for (const other of others) {
      const res = await call(app, admin, key, ROUTES[other])
      t.ok(res.statusCode === 200 || res.statusCode === 404, `${other} passes with a key holding ${others.join(', ')} (${res.statusCode})`)
      t.equal(res.headers['x-ratelimit-remaining'] !== undefined, true, `${other}: budget headers`)
    }
  }
  const all = await createdKey(app, admin)
  t.same(all.apiKey.scopes, ['tokens:verify', 'users:read', 'org:read'], 'a new key holds every scope')
  for (const route of Object.values(ROUTES)) t.not((await call(app, admin, all.key, route)).statusCode, 403, `${route.url} with every scope`)
})

t.test('IP allowlists: addresses and CIDRs, IPv4 and IPv6, IPv4-mapped IPv6 matched against IPv4 entries', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const { key } = await createdKey(app, admin, { allowedIps: ['203.0.113.0/24', '198.51.100.7', '2001:db8::/32', '2001:db8:ffff::1', '::ffff:192.0.2.0/120'] })
  const allowed = ['203.0.113.1', '203.0.113.254', '198.51.100.7', '::ffff:203.0.113.9', '::ffff:198.51.100.7', '2001:db8::1', '2001:db8:1234::5', '::ffff:c000:0205', '192.0.2.99']
  for (const address of allowed) t.equal((await orgOf(app, admin, key, address)).statusCode, 200, `${address} is allowed`)
  const refused = ['198.51.100.8', '203.0.114.1', '10.0.0.1', '::ffff:198.51.100.8', '2001:db9::1', '::1', '127.0.0.1', '192.0.3.1']
  for (const address of refused) {
    const res = await orgOf(app, admin, key, address)
    t.equal(res.statusCode, 403, `${address} is refused`)
    t.equal(res.json().code, 'ip_not_allowed')
    t.match(res.json().message, address, 'the message names the caller\'s address')
    noRateHeaders(t, res, address)
  }
  const open = await createdKey(app, admin, { allowedIps: [] })
  for (const address of ['10.0.0.1', '2001:db9::1']) t.equal((await orgOf(app, admin, open.key, address)).statusCode, 200, `an empty allowlist lets ${address} in`)
})

t.test('the allowlist is checked before the scope, and a suspended org before both', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const { key } = await createdKey(app, admin, { scopes: ['tokens:verify'], allowedIps: ['10.0.0.0/8'] })
  const outside = await orgOf(app, admin, key, '192.0.2.1')
  t.equal(outside.json().code, 'ip_not_allowed', 'outside the allowlist and without the scope: the allowlist speaks')
  t.equal((await orgOf(app, admin, key, '10.1.2.3')).json().code, 'insufficient_scope', 'inside the allowlist: the scope speaks')
  t.equal((await call(app, admin, key, ROUTES['tokens:verify'], '10.1.2.3')).statusCode, 200)
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${admin.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  for (const address of ['192.0.2.1', '10.1.2.3']) {
    const res = await orgOf(app, admin, key, address)
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'org_suspended', `${address}: a suspended org is refused whatever the key's settings`)
    noRateHeaders(t, res, 'org_suspended')
  }
})

t.test('behind a proxy (TRUST_PROXY), the allowlist sees the forwarded client address', async t => {
  const app = await build(t, { trustProxy: true })
  const admin = await orgAdmin(app)
  const { key } = await createdKey(app, admin, { allowedIps: ['203.0.113.0/24'] })
  const via = (forwarded: string) => call(app, admin, key, ROUTES['org:read'], '127.0.0.1', { 'x-forwarded-for': forwarded })
  t.equal((await via('203.0.113.5')).statusCode, 200)
  const res = await via('192.0.2.1')
  t.equal(res.statusCode, 403)
  t.match(res.json().message, '192.0.2.1')
})

t.test('X-Forwarded-For while TRUST_PROXY is off: warned once in the log', async t => {
  const lines: string[] = []
  const app = await build(t, {}, { logStream: collect(lines) })
  const admin = await orgAdmin(app)
  const { key } = await createdKey(app, admin)
  for (let i = 0; i < 3; i++) {
    t.equal((await call(app, admin, key, ROUTES['org:read'], '127.0.0.1', { 'x-forwarded-for': '203.0.113.5' })).statusCode, 200)
  }
  const warnings = lines.map(line => JSON.parse(line)).filter(entry => /X-Forwarded-For/.test(entry.msg ?? ''))
  t.equal(warnings.length, 1, 'one warning')
  t.equal(warnings[0]?.level, 40, 'at level warn')

  const trusting: string[] = []
  const behindProxy = await build(t, { trustProxy: true }, { logStream: collect(trusting) })
  const other = await orgAdmin(behindProxy)
  const otherKey = await createdKey(behindProxy, other)
  await call(behindProxy, other, otherKey.key, ROUTES['org:read'], '127.0.0.1', { 'x-forwarded-for': '203.0.113.5' })
  t.notOk(trusting.some(line => /X-Forwarded-For/.test(line)), 'no warning with TRUST_PROXY set')
})

t.test('the 403s are not counted against the budget', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const { key } = await createdKey(app, admin, { scopes: ['org:read'], allowedIps: ['10.0.0.0/8'], rateLimit: { max: 3, windowSeconds: 60 } })
  t.equal(limits(await orgOf(app, admin, key, '10.0.0.1')).remaining, 2)
  for (let i = 0; i < 5; i++) {
    t.equal((await orgOf(app, admin, key, '192.0.2.1')).json().code, 'ip_not_allowed')
    t.equal((await call(app, admin, key, ROUTES['tokens:verify'], '10.0.0.1')).json().code, 'insufficient_scope')
  }
  const after = await orgOf(app, admin, key, '10.0.0.1')
  t.equal(after.statusCode, 200)
  t.equal(limits(after).remaining, 1, 'ten 403s later, the budget has lost only the one 200')
})

t.test('budgets: the key\'s own, else the org\'s, else the service default; the headers show the effective one', async t => {
  const app = await build(t, { rateLimitMax: 50, rateLimitWindowMs: 15 * 60_000 })
  const byDefault = await orgAdmin(app)
  const withOrgBudget = await orgAdmin(app)
  const set = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${withOrgBudget.org.slug}`, headers: adminHeaders, payload: { rateLimit: { max: 20, windowSeconds: 60 } } })
  t.equal(set.statusCode, 200)

  const started = Date.now()
  const plain = await createdKey(app, byDefault)
  const orgs = await createdKey(app, withOrgBudget)
  const own = await createdKey(app, withOrgBudget, { rateLimit: { max: 3, windowSeconds: 10 } })

  const check = (res: LightMyRequestResponse, max: number, windowMs: number, what: string): void => {
    t.equal(res.statusCode, 200, what)
    const { limit, remaining, reset } = limits(res)
    t.equal(limit, max, `${what}: X-RateLimit-Limit is the effective max`)
    t.equal(remaining, max - 1, `${what}: Remaining`)
    t.ok(reset * 1000 >= started + windowMs - 1000 && reset * 1000 <= Date.now() + windowMs + 1000, `${what}: Reset is the end of the effective window (${reset})`)
  }
  check(await orgOf(app, byDefault, plain.key), 50, 15 * 60_000, 'no key or org budget: the service default')
  check(await orgOf(app, withOrgBudget, orgs.key), 20, 60_000, 'the org\'s budget')
  check(await orgOf(app, withOrgBudget, own.key), 3, 10_000, 'the key\'s own budget')

  for (let i = 0; i < 2; i++) t.equal((await orgOf(app, withOrgBudget, own.key)).statusCode, 200)
  const over = await orgOf(app, withOrgBudget, own.key)
  t.equal(over.statusCode, 429)
  t.equal(over.json().code, 'rate_limited')
  t.match(over.json().message, '3 requests per 10 seconds', 'the 429 names the effective budget')
  t.equal(limits(over).limit, 3)
  t.ok(Number(over.headers['retry-after']) >= 1 && Number(over.headers['retry-after']) <= 11)
  t.equal(limits(await orgOf(app, withOrgBudget, orgs.key)).remaining, 18, 'each key has its own count')
})

t.test('a changed budget applies from the next request: the key\'s (PATCH) and the org\'s (admin PATCH)', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const { key, apiKey } = await createdKey(app, admin, { rateLimit: { max: 2, windowSeconds: 60 } })
  t.same([(await orgOf(app, admin, key)).statusCode, (await orgOf(app, admin, key)).statusCode], [200, 200], 'the budget of 2 used up')

  t.equal((await keys.patch(apiKey.id, { rateLimit: { max: 3, windowSeconds: 60 } })).statusCode, 200)
  let res = await orgOf(app, admin, key)
  t.equal(res.statusCode, 200, 'a higher max in the same window: the next request passes')
  t.same([limits(res).limit, limits(res).remaining], [3, 0], 'and the count of the window goes on')
  t.equal((await orgOf(app, admin, key)).statusCode, 429)

  t.equal((await keys.patch(apiKey.id, { rateLimit: { max: 1, windowSeconds: 30 } })).statusCode, 200)
  res = await orgOf(app, admin, key)
  t.equal(res.statusCode, 200, 'a new window: the count starts afresh')
  t.same([limits(res).limit, limits(res).remaining], [1, 0])
  t.ok(limits(res).reset * 1000 <= Date.now() + 31_000, 'the window is 30 s')
  t.equal((await orgOf(app, admin, key)).statusCode, 429)

  t.equal((await keys.patch(apiKey.id, { rateLimit: null })).statusCode, 200)
  t.equal(limits(await orgOf(app, admin, key)).limit, 300, 'no budget of its own: the service default')
  const orgBudget = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${admin.org.slug}`, headers: adminHeaders, payload: { rateLimit: { max: 40, windowSeconds: 120 } } })
  t.equal(orgBudget.statusCode, 200)
  res = await orgOf(app, admin, key)
  t.equal(limits(res).limit, 40, 'the org\'s new budget applies from the next request')
  t.ok(limits(res).reset * 1000 <= Date.now() + 121_000)
})

t.test('X-API-Key-Expires-At: on every response authenticated by a key with an expiry, on none without', async t => {
  const app = await build(t, { rateLimitMax: 3 })
  const admin = await orgAdmin(app)
  const expiresAt = new Date(Date.now() + 86_400_000 + 1234)
  const expiring = await createdKey(app, admin, { expiresAt: expiresAt.toISOString(), scopes: ['org:read', 'users:read'] })
  const seconds = String(Math.floor(expiresAt.getTime() / 1000))
  const answers = [
    await orgOf(app, admin, expiring.key), // 200, 1 of 3
    await call(app, admin, expiring.key, ROUTES['users:read']), // 404, 2 of 3
    await call(app, admin, expiring.key, ROUTES['tokens:verify']), // 403 insufficient_scope, not counted
    await orgOf(app, admin, expiring.key), // 200, 3 of 3
    await orgOf(app, admin, expiring.key) // 429
  ]
  t.same(answers.map(res => res.statusCode), [200, 404, 403, 200, 429])
  t.same(answers.map(res => res.headers['x-api-key-expires-at']), answers.map(() => seconds), 'the Unix second of expiresAt on each')

  const forever = await createdKey(app, admin)
  const res = await orgOf(app, admin, forever.key)
  t.equal(res.statusCode, 200)
  t.notOk('x-api-key-expires-at' in res.headers, 'a key without an expiry: no header')

  await keyRoutes(app, admin).revoke(expiring.apiKey.id)
  const refused = await orgOf(app, admin, expiring.key)
  t.equal(refused.statusCode, 401)
  t.notOk('x-api-key-expires-at' in refused.headers, 'a 401 is authenticated by no key: no header')
})

t.test('rotation: the old key works during its grace period with its end in X-API-Key-Expires-At, then is refused', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const old = await createdKey(app, admin, { scopes: ['org:read'] })
  t.equal((await orgOf(app, admin, old.key)).statusCode, 200)
  const rotated = await keyRoutes(app, admin).rotate(old.apiKey.id, { gracePeriodSeconds: 2 })
  t.equal(rotated.statusCode, 201)
  const { key, previous } = rotated.json().data
  const end = new Date(previous.expiresAt).getTime()
  const during = await orgOf(app, admin, old.key)
  if (Date.now() < end - 300) {
    t.equal(during.statusCode, 200, 'the old key works during the grace period')
    t.equal(during.headers['x-api-key-expires-at'], String(Math.floor(end / 1000)), 'and says when it stops')
  }
  const fresh = await orgOf(app, admin, key)
  t.equal(fresh.statusCode, 200)
  t.notOk('x-api-key-expires-at' in fresh.headers, 'the new key has no expiry, as the old one had none')
  t.equal((await call(app, admin, key, ROUTES['tokens:verify'])).json().code, 'insufficient_scope', 'the new key has the old one\'s scopes')
  await sleep(Math.max(0, end - Date.now()) + 50)
  const after = await orgOf(app, admin, old.key)
  t.equal(after.statusCode, 401, 'after the grace period the old key is refused')
  noRateHeaders(t, after, 'the refused old key')
  t.equal((await orgOf(app, admin, key)).statusCode, 200)
})

t.test('a change of scopes or allowlist is obeyed by the next request, though the key is cached', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const { key, apiKey } = await createdKey(app, admin)
  for (let i = 0; i < 2; i++) t.equal((await orgOf(app, admin, key)).statusCode, 200, 'cached')
  t.equal((await keys.patch(apiKey.id, { scopes: ['tokens:verify'] })).statusCode, 200)
  t.equal((await orgOf(app, admin, key)).json().code, 'insufficient_scope')
  t.equal((await keys.patch(apiKey.id, { scopes: ['org:read'] })).statusCode, 200)
  const back = await orgOf(app, admin, key)
  t.equal(back.statusCode, 200, 'a scope given back applies at once too')
  t.equal(limits(back).remaining, 297, 'the refused request cost nothing')
  t.equal((await keys.patch(apiKey.id, { allowedIps: ['10.0.0.0/8'] })).statusCode, 200)
  t.equal((await orgOf(app, admin, key)).json().code, 'ip_not_allowed')
  t.equal((await orgOf(app, admin, key, '10.9.8.7')).statusCode, 200)
  t.equal((await keys.patch(apiKey.id, { allowedIps: [] })).statusCode, 200)
  t.equal((await orgOf(app, admin, key)).statusCode, 200)
  const expiresAt = new Date(Date.now() + 3_600_000)
  t.equal((await keys.patch(apiKey.id, { expiresAt: expiresAt.toISOString() })).statusCode, 200)
  t.equal((await orgOf(app, admin, key)).headers['x-api-key-expires-at'], String(Math.floor(expiresAt.getTime() / 1000)), 'a new expiry shows at once')
})

t.test('no 401 carries X-RateLimit-* headers: not an unknown key, nor a revoked key this instance had cached', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const { key, apiKey } = await createdKey(app, admin)
  for (let i = 0; i < 2; i++) t.equal((await orgOf(app, admin, key)).statusCode, 200, 'cached')
  t.equal((await keyRoutes(app, admin).revoke(apiKey.id)).statusCode, 200)
  const revoked = await orgOf(app, admin, key)
  t.equal(revoked.statusCode, 401)
  noRateHeaders(t, revoked, 'the revoked key')
  const unknown = await orgOf(app, admin, key.slice(0, 20) + 'f'.repeat(key.length - 20))
  t.equal(unknown.statusCode, 401)
  noRateHeaders(t, unknown, 'an unknown key')
})
