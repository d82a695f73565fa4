import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { build } from '../helper.ts'
import { ISO } from '../auth-helpers.ts'
import { createdKey, keyEvents, keyRoutes, orgAdmin, publicOrg } from '../support/org-keys.ts'

// §9 rotation: POST /org/api-keys/:keyId/rotate.

const DAY_MS = 86_400_000
const near = (iso: string, ms: number, slack = 60_000): boolean => Math.abs(new Date(iso).getTime() - ms) <= slack

t.test('rotate: a new key with the old one\'s settings, shown once; the old key lives on for the grace period (default one day)', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const old = await createdKey(app, admin, {
    name: 'Billing', description: 'For billing', scopes: ['org:read', 'tokens:verify'], rateLimit: { max: 10, windowSeconds: 60 }, allowedIps: ['127.0.0.0/8', '2001:db8::/32']
  })
  t.equal((await publicOrg(app, admin, old.key)).statusCode, 200, 'the old key works before')

  const res = await keys.rotate(old.apiKey.id)
  const now = Date.now()
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.same(Object.keys(body.data), ['key', 'apiKey', 'previous'])
  const { key, apiKey, previous } = body.data
  t.match(key, /^pk_live_[0-9a-f]{64}$/)
  t.not(key, old.key)
  t.equal(apiKey.prefix, key.slice(0, 10))
  t.not(apiKey.id, old.apiKey.id)
  t.same(apiKey, {
    ...old.apiKey,
    id: apiKey.id,
    prefix: apiKey.prefix,
    createdAt: apiKey.createdAt,
    createdBy: { type: 'user', id: admin.user.id },
    rotatedFromId: old.apiKey.id
  }, 'name, description, scopes, budget, allowlist and expiry (none) copied; it names the key it replaced')
  t.same(Object.keys(previous), ['id', 'expiresAt', 'revokedAt'])
  t.equal(previous.id, old.apiKey.id)
  t.equal(previous.revokedAt, null)
  t.ok(near(previous.expiresAt, now + DAY_MS), `the old key ends one day from now (${previous.expiresAt})`)

  const oldNow = (await keys.get(old.apiKey.id)).json().data.apiKey
  t.same(oldNow, { ...old.apiKey, expiresAt: previous.expiresAt, rotatedToId: apiKey.id, lastUsedAt: oldNow.lastUsedAt }, 'the old key names its successor and ends with the grace period')
  t.equal(oldNow.isActive, true, 'and is still active')
  t.same((await keys.get(apiKey.id)).json().data.apiKey, apiKey)

  t.equal((await publicOrg(app, admin, old.key)).statusCode, 200, 'the old key keeps working during the grace period')
  t.equal((await publicOrg(app, admin, key)).statusCode, 200, 'the new key works at once')
  const list = await keys.list()
  t.notOk(list.body.includes(key.slice(10)), 'the new key is never shown again')
})

t.test('rotating a key WITH an expiry gives a new key with the same expiry (unkeyed/unkey#3767\'s bug)', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const expiresAt = new Date(Date.now() + 10 * DAY_MS).toISOString()

  const long = await createdKey(app, admin, { expiresAt })
  const rotated = await keys.rotate(long.apiKey.id, { gracePeriodSeconds: 3600 })
  t.equal(rotated.statusCode, 201)
  t.equal(rotated.json().data.apiKey.expiresAt, expiresAt, 'the new key expires when the old one would have')
  t.ok(near(rotated.json().data.previous.expiresAt, Date.now() + 3600_000), 'the old key: now + grace, sooner than its own expiry')

  const short = await createdKey(app, admin, { expiresAt })
  const longGrace = await keys.rotate(short.apiKey.id, { gracePeriodSeconds: 2_592_000 })
  t.equal(longGrace.statusCode, 201)
  t.equal(longGrace.json().data.apiKey.expiresAt, expiresAt, 'the new key keeps the expiry')
  t.equal(longGrace.json().data.previous.expiresAt, expiresAt, 'a grace period past the old key\'s expiry never extends it')
  t.equal((await keys.get(short.apiKey.id)).json().data.apiKey.expiresAt, expiresAt)

  // And again: the successor of the successor still carries the first expiry.
  const again = await keys.rotate(longGrace.json().data.apiKey.id, { gracePeriodSeconds: 0 })
  t.equal(again.json().data.apiKey.expiresAt, expiresAt)
})

t.test('rotate with gracePeriodSeconds 0 revokes the old key at once', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const old = await createdKey(app, admin)
  t.equal((await publicOrg(app, admin, old.key)).statusCode, 200, 'the old key is cached')
  const res = await keys.rotate(old.apiKey.id, { gracePeriodSeconds: 0 })
  t.equal(res.statusCode, 201)
  const { key, previous } = res.json().data
  t.match(previous, { id: old.apiKey.id, expiresAt: null, revokedAt: ISO })
  const refused = await publicOrg(app, admin, old.key)
  t.equal(refused.statusCode, 401, 'the next request with the old key is refused')
  t.equal(refused.json().code, 'invalid_api_key')
  t.equal((await publicOrg(app, admin, key)).statusCode, 200, 'the new key works')
  const oldNow = (await keys.get(old.apiKey.id)).json().data.apiKey
  t.match(oldNow, { isActive: false, revokedAt: previous.revokedAt, expiresAt: null, rotatedToId: res.json().data.apiKey.id })
  const row = await app.db.selectFrom('api_keys').select('revoked_by').where('id', '=', old.apiKey.id).executeTakeFirstOrThrow()
  t.equal(row.revoked_by, admin.user.id)
})

t.test('the old key stops when its grace period ends', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const old = await createdKey(app, admin)
  const res = await keyRoutes(app, admin).rotate(old.apiKey.id, { gracePeriodSeconds: 1 })
  t.equal(res.statusCode, 201)
  t.equal((await publicOrg(app, admin, old.key)).statusCode, 200, 'during the grace period')
  await sleep(new Date(res.json().data.previous.expiresAt).getTime() - Date.now() + 50)
  t.equal((await publicOrg(app, admin, old.key)).statusCode, 401, 'after it')
  t.equal((await publicOrg(app, admin, res.json().data.key)).statusCode, 200, 'the new key goes on')
})

t.test('rotate: 409 for a revoked, expired or already rotated key, 404 for another org\'s; a refused rotation writes nothing', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const other = await orgAdmin(app)
  const keys = keyRoutes(app, admin)

  const revoked = await createdKey(app, admin)
  await keys.revoke(revoked.apiKey.id)
  const expired = await createdKey(app, admin)
  await app.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', expired.apiKey.id).execute()
  const rotated = await createdKey(app, admin)
  const successor = (await keys.rotate(rotated.apiKey.id)).json().data.apiKey

  const cases: Array<[string, string]> = [
    [revoked.apiKey.id, 'API key is revoked: it cannot be rotated'],
    [expired.apiKey.id, 'API key has expired: it cannot be rotated'],
    [rotated.apiKey.id, `API key was already rotated (to ${successor.id}): rotate that key instead`]
  ]
  const before = await app.db.selectFrom('api_keys').select('id').where('org_id', '=', admin.org.id).execute()
  for (const [id, message] of cases) {
    const res = await keys.rotate(id, { gracePeriodSeconds: 0 })
    t.equal(res.statusCode, 409, message)
    t.same(res.json(), { status: 'error', message, code: 'conflict' })
  }
  const after = await app.db.selectFrom('api_keys').select('id').where('org_id', '=', admin.org.id).execute()
  t.equal(after.length, before.length, 'no key was made')
  t.equal((await keys.get(rotated.apiKey.id)).json().data.apiKey.revokedAt, null, 'the rotated key was not revoked by the refused rotation')
  t.same((await keyEvents(app, revoked.apiKey.id)).map(e => e.type), ['api_key.created', 'api_key.revoked'])
  t.same((await keyEvents(app, expired.apiKey.id)).map(e => e.type), ['api_key.created'])
  t.same((await keyEvents(app, rotated.apiKey.id)).map(e => e.type), ['api_key.created', 'api_key.rotated'], 'one rotation, one event')

  const theirs = await createdKey(app, other)
  for (const id of [theirs.apiKey.id, 'key_01JZ8Q4K7X3W5N2M9B6V1C0D8E', 'nope']) {
    const res = await keys.rotate(id)
    t.equal(res.statusCode, 404, id)
    t.equal(res.json().message, 'API key not found')
  }
  t.equal((await keyRoutes(app, other).get(theirs.apiKey.id)).json().data.apiKey.rotatedToId, null)
})

t.test('rotate: gracePeriodSeconds is a whole number from 0 to 2,592,000; a bodiless POST takes the default', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const keys = keyRoutes(app, admin)
  const { apiKey } = await createdKey(app, admin)
  for (const [body, message] of [
    [{ gracePeriodSeconds: -1 }, /^body\.gracePeriodSeconds must be >= 0$/],
    [{ gracePeriodSeconds: 2_592_001 }, /^body\.gracePeriodSeconds must be <= 2592000$/],
    [{ gracePeriodSeconds: 1.5 }, /^body\.gracePeriodSeconds must be integer$/],
    [{ gracePeriodSeconds: '60' }, /^body\.gracePeriodSeconds must be integer$/],
    [{ gracePeriodSeconds: null }, /^body\.gracePeriodSeconds must be integer$/],
    [[], /^Request body must be a JSON object$/]
  ] as Array<[object, RegExp]>) {
    const res = await keys.rotate(apiKey.id, body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'validation_failed')
    t.match(res.json().message, message)
  }
  t.same((await keyEvents(app, apiKey.id)).map(e => e.type), ['api_key.created'], 'nothing was rotated')

  const bare = await app.inject({ method: 'POST', url: `/api/v1/org/api-keys/${apiKey.id}/rotate`, headers: admin.headers })
  t.equal(bare.statusCode, 201, 'no body at all')
  t.ok(near(bare.json().data.previous.expiresAt, Date.now() + DAY_MS), 'the default grace period: one day')
})

t.test('rotate records one api_key.rotated: the new key and the old one\'s end, never a secret', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const old = await createdKey(app, admin, { scopes: ['tokens:verify'] })
  const res = await keyRoutes(app, admin).rotate(old.apiKey.id, { gracePeriodSeconds: 600 })
  const { key, apiKey, previous } = res.json().data
  const events = await keyEvents(app, old.apiKey.id)
  t.same(events.map(e => e.type), ['api_key.created', 'api_key.rotated'])
  const rotated = events[1]
  t.match(rotated, { org_id: admin.org.id, actor_type: 'user', actor_id: admin.user.id, actor_email: admin.user.email, target_type: 'api_key', target_id: old.apiKey.id, ip: '127.0.0.1' })
  t.same(rotated.data, { apiKey, previous }, 'data: the new key object and previous, as answered')
  t.same(await keyEvents(app, apiKey.id), [], 'the new key has no api_key.created of its own: a rotation is one event')
  const all = JSON.stringify(await app.db.selectFrom('audit_events').selectAll().where('org_id', '=', admin.org.id).execute())
  t.notOk(all.includes(key.slice(10)) || all.includes(old.key.slice(10)), 'neither key is in any event')
})

t.test('concurrent rotations of one key: exactly one succeeds', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  // Several rounds: the first requests of a session can be spread out by its cold caches; later ones arrive together.
  for (let round = 0; round < 5; round++) {
    const { apiKey } = await createdKey(app, admin)
    const responses = await Promise.all(Array.from({ length: 6 }, () => keyRoutes(app, admin).rotate(apiKey.id, { gracePeriodSeconds: 60 })))
    const statuses = responses.map(res => res.statusCode).sort()
    t.same(statuses, [201, 409, 409, 409, 409, 409], `round ${round}: one 201, the others 409`)
    const successors = await app.db.selectFrom('api_keys').select('id').where('rotated_from_id', '=', apiKey.id).execute()
    const winner = responses.find(res => res.statusCode === 201)?.json().data.apiKey
    t.same(successors.map(key => key.id), [winner?.id], 'one successor key exists: the one answered')
    const old = await app.db.selectFrom('api_keys').select('rotated_to_id').where('id', '=', apiKey.id).executeTakeFirstOrThrow()
    t.equal(old.rotated_to_id, winner?.id, 'the old key names it')
    t.same((await keyEvents(app, apiKey.id)).map(e => e.type), ['api_key.created', 'api_key.rotated'], 'one event')
  }
})
