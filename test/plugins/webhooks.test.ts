import { createHmac } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import { build, createOrgWithMember, sessionToken } from '../helper.ts'
import { call, causeEvent, createWebhook, deliveriesOf, orgAdmin, startReceiver, until, type Received } from '../support/webhooks.ts'
import { encodeTime } from 'ulid'
import { TEST_MESSAGE } from '../../plugins/webhooks/index.ts'
import { deliveryRetention } from '../../plugins/webhooks/worker.ts'
import { startPeriodicJob } from '../../src/periodic-job.ts'

// §11 through HTTP, against real receivers on 127.0.0.1 (http, which WEBHOOK_ALLOW_PRIVATE=true
// permits; the https-only rule and the SSRF guard are in webhooks-ssrf.test.ts). PGlite in memory,
// or PostgreSQL with DATABASE_URL.

const SHORT_SCHEDULE = [0, 150, 300]

function hmacHex (secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

function standardHeaders (received: Received): Record<string, string> {
  return {
    'webhook-id': String(received.headers['webhook-id']),
    'webhook-timestamp': String(received.headers['webhook-timestamp']),
    'webhook-signature': String(received.headers['webhook-signature'])
  }
}

t.test('create, read, list: the secrets once, in both forms; never again; the audit event holds none', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const res = await call(app, admin, 'POST', '', { url: 'https://hooks.example.com/tenantkey', events: ['member.removed', 'api_key.revoked', 'member.removed'], description: 'ops' })
  t.equal(res.statusCode, 201, res.body)
  const { secret, standardWebhooksSecret, webhook } = res.json().data
  t.match(secret, /^whs_[0-9a-f]{64}$/)
  t.equal(standardWebhooksSecret, `whsec_${Buffer.from(secret, 'utf8').toString('base64')}`, 'whsec_ + base64 of the whs_ string')
  t.match(webhook, { id: /^wh_[0-9A-Z]{26}$/, url: 'https://hooks.example.com/tenantkey', events: ['member.removed', 'api_key.revoked'], description: 'ops', isActive: true })

  const got = await call(app, admin, 'GET', `/${webhook.id}`)
  t.equal(got.statusCode, 200)
  t.same(got.json().data.webhook, webhook)
  const listed = await call(app, admin, 'GET', '')
  t.same(listed.json().data.webhooks, [webhook])
  for (const body of [got.body, listed.body]) t.notOk(body.includes(secret.slice(4)) || body.includes('whsec_'), 'no secret in reads')

  const stored = await app.db.selectFrom('webhooks').selectAll().where('id', '=', webhook.id).executeTakeFirstOrThrow()
  t.notOk(JSON.stringify(stored).includes(secret.slice(4)), 'stored sealed, not as is')
  const events = await app.db.selectFrom('audit_events').selectAll().where('target_id', '=', webhook.id).execute()
  t.same(events.map(e => [e.type, e.actor_id]), [['webhook.created', admin.user.id]])
  t.same(events[0].data, { webhook })
})

t.test('guards: 401 without a token, 403 for a member, 404 for another org\'s webhook', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: 'https://hooks.example.com/a', events: ['member.removed'] })
  const noToken = await app.inject({ method: 'GET', url: '/api/v1/org/webhooks', headers: { 'x-org-slug': admin.org.slug } })
  t.equal(noToken.statusCode, 401)
  const member = await createOrgWithMember(app, 'member')
  const { token } = await sessionToken(app, { userId: member.user.id, orgId: member.org.id, slug: member.org.slug, role: 'member' })
  const forbidden = await app.inject({ method: 'GET', url: '/api/v1/org/webhooks', headers: { authorization: `Bearer ${token}`, 'x-org-slug': member.org.slug } })
  t.equal(forbidden.statusCode, 403)
  const other = await orgAdmin(app)
  for (const [method, path] of [['GET', ''], ['PATCH', ''], ['DELETE', ''], ['POST', '/test'], ['POST', '/rotate-secret'], ['GET', '/deliveries']] as const) {
    const res = await call(app, other, method, `/${webhook.id}${path}`, method === 'PATCH' ? { isActive: false } : undefined)
    t.equal(res.statusCode, 404, `${method} ${path} of another org's webhook`)
    t.equal(res.json().code, 'not_found')
  }
  t.equal((await call(app, admin, 'GET', `/${webhook.id}`)).json().data.webhook.isActive, true, 'untouched')
})

t.test('validation: unknown or mixed event types, a bad URL, an empty PATCH, bad Unicode, a bad cursor: 400; the 21st webhook: 409', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const cases: Array<[object, RegExp]> = [
    [{ url: 'https://hooks.example.com/', events: ['member.deleted'] }, /body\.events: unknown event type "member\.deleted"/],
    [{ url: 'https://hooks.example.com/', events: ['webhook.test'] }, /body\.events: unknown event type/],
    [{ url: 'https://hooks.example.com/', events: ['org.created'] }, /body\.events: unknown event type/],
    [{ url: 'https://hooks.example.com/', events: ['*', 'member.removed'] }, /"\*" \(every event\) must be alone/],
    [{ url: 'https://hooks.example.com/', events: [] }, /body\.events must NOT have fewer than 1 items/],
    [{ url: 'not a url', events: ['*'] }, /body\.url is not an absolute URL/],
    [{ url: 'ftp://hooks.example.com/', events: ['*'] }, /body\.url must be an http/],
    [{ url: 'https://hooks.example.com/', events: ['*'], description: 'bad \ud800' }, /body\.description must not contain U\+0000 or a lone surrogate/]
  ]
  for (const [payload, message] of cases) {
    const res = await call(app, admin, 'POST', '', payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.json(), { status: 'error', code: 'validation_failed', message })
  }
  // Subscribed to an event this test does not cause: no delivery to these made-up hosts.
  const { webhook } = await createWebhook(app, admin, { url: 'https://hooks.example.com/1', events: ['member.removed'] })
  t.equal((await call(app, admin, 'PATCH', `/${webhook.id}`, {})).statusCode, 400, 'empty PATCH')
  t.equal((await call(app, admin, 'GET', `/${webhook.id}/deliveries?cursor=abc`)).statusCode, 400, 'forged cursor')
  t.equal((await call(app, admin, 'GET', `/${webhook.id}/deliveries?limit=0`)).statusCode, 400, 'limit 0')
  t.equal((await call(app, admin, 'GET', `/${webhook.id}/deliveries?limit=201`)).statusCode, 400, 'limit 201')
  t.equal((await call(app, admin, 'GET', '/wh_nope')).statusCode, 400, 'malformed id')
  for (let i = 2; i <= 20; i++) await createWebhook(app, admin, { url: `https://hooks.example.com/${i}`, events: ['member.removed'] })
  const over = await call(app, admin, 'POST', '', { url: 'https://hooks.example.com/21', events: ['member.removed'] })
  t.equal(over.statusCode, 409)
  t.match(over.json(), { code: 'conflict', message: /At most 20 webhooks/ })
})

t.test('an event is delivered within a second, signed both ways: the AuthWorx header and Standard Webhooks (verified by the standardwebhooks package)', async t => {
  const app = await build(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { secret, standardWebhooksSecret, webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  const { apiKeyId, answeredAt } = await causeEvent(app, admin)
  const [received] = await receiver.waitFor(1, 5000)
  t.ok(received.at - answeredAt < 1000, `received ${received.at - answeredAt} ms after the answer`)

  const body = JSON.parse(received.body)
  t.same(Object.keys(body), ['id', 'event', 'orgId', 'orgSlug', 'timestamp', 'actor', 'data'])
  t.match(body, { id: /^evt_/, event: 'api_key.created', orgId: admin.org.id, orgSlug: admin.org.slug, actor: { type: 'user', id: admin.user.id, email: admin.user.email }, data: { apiKey: { id: apiKeyId } } })
  const event = await app.db.selectFrom('audit_events').selectAll().where('id', '=', body.id).executeTakeFirstOrThrow()
  t.equal(body.timestamp, event.created_at.toISOString(), 'timestamp: the event\'s createdAt')

  t.equal(received.headers['content-type'], 'application/json')
  t.equal(received.headers['x-webhook-event'], 'api_key.created')
  t.match(received.headers['x-delivery-id'], /^del_[0-9A-Z]{26}$/)
  t.equal(received.headers['webhook-id'], received.headers['x-delivery-id'])
  t.equal(received.headers['x-webhook-signature'], hmacHex(secret, received.body), 'AuthWorx: sha256=<hex HMAC(secret, raw body)>')
  const timestamp = Number(received.headers['webhook-timestamp'])
  t.ok(Math.abs(timestamp - Date.now() / 1000) < 5, 'webhook-timestamp: Unix seconds of the attempt')
  const expected = createHmac('sha256', secret).update(`${received.headers['webhook-id']}.${timestamp}.${received.body}`).digest('base64')
  t.equal(received.headers['webhook-signature'], `v1,${expected}`, 'one entry: one live secret')
  t.same(new StandardWebhook(standardWebhooksSecret).verify(received.body, standardHeaders(received)), body, 'standardwebhooks verifies it unchanged')
  t.throws(() => new StandardWebhook(standardWebhooksSecret).verify(received.body.replace('api_key', 'api_kez'), standardHeaders(received)), 'and refuses an altered body')

  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'succeeded')
  const [delivery] = await deliveriesOf(app, admin, webhook.id)
  t.match(delivery, { id: received.headers['x-delivery-id'], webhookId: webhook.id, eventId: body.id, event: 'api_key.created', status: 'succeeded', attempts: 1, nextAttemptAt: null, lastResponseStatus: 200, lastError: null })
})

t.test('the retry schedule: failures are retried after its delays, same delivery id, until a 2xx', async t => {
  const app = await build(t, { webhookRetryScheduleMs: SHORT_SCHEDULE })
  const receiver = await startReceiver(n => n < 2 ? 500 : 200)
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  await causeEvent(app, admin)
  const received = await receiver.waitFor(3)
  t.equal(new Set(received.map(r => r.headers['webhook-id'])).size, 1, 'one delivery id on every attempt')
  t.equal(new Set(received.map(r => r.body)).size, 1, 'the same bytes on every attempt')
  const gaps = [received[1].at - received[0].at, received[2].at - received[1].at]
  t.ok(gaps[0] >= 150 && gaps[1] >= 300, `gaps ${gaps.join(', ')} ms follow 150, 300`)
  t.ok(gaps[0] < 1500 && gaps[1] < 1500, 'and are not left to the slow poll')
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'succeeded')
  t.match((await deliveriesOf(app, admin, webhook.id))[0], { status: 'succeeded', attempts: 3, lastResponseStatus: 200, lastError: null })
  await sleep(500)
  t.equal(receiver.received.length, 3, 'nothing after the 2xx')
})

t.test('failed after the last attempt; the answer kept only as a short excerpt; a manual retry makes exactly one more attempt, same id', async t => {
  const app = await build(t, { webhookRetryScheduleMs: SHORT_SCHEDULE })
  const receiver = await startReceiver(() => ({ status: 503, body: `upstream down ${'x'.repeat(5000)}` }))
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  await causeEvent(app, admin)
  await receiver.waitFor(3)
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'failed')
  const [failed] = await deliveriesOf(app, admin, webhook.id)
  t.match(failed, { status: 'failed', attempts: 3, nextAttemptAt: null, lastResponseStatus: 503, lastError: /^HTTP 503: upstream down x+$/ })
  t.ok(failed.lastError.length <= 220, `lastError is an excerpt (${failed.lastError.length} characters)`)
  await sleep(600)
  t.equal(receiver.received.length, 3, 'no fourth attempt')
  t.same(await deliveriesOf(app, admin, webhook.id, '?status=failed'), [failed], 'filter: failed')
  t.same(await deliveriesOf(app, admin, webhook.id, '?status=pending'), [], 'filter: pending')

  receiver.answer = () => 204
  const retried = await call(app, admin, 'POST', `/${webhook.id}/deliveries/${failed.id}/retry`)
  t.equal(retried.statusCode, 202, retried.body)
  t.match(retried.json().data.delivery, { id: failed.id, status: 'pending', attempts: 3 })
  const all = await receiver.waitFor(4)
  t.equal(all[3].headers['webhook-id'], failed.id, 'the same delivery id')
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'succeeded')
  t.match((await deliveriesOf(app, admin, webhook.id))[0], { id: failed.id, status: 'succeeded', attempts: 4, lastResponseStatus: 204 })

  receiver.answer = () => 500
  t.equal((await call(app, admin, 'POST', `/${webhook.id}/deliveries/${failed.id}/retry`)).statusCode, 202, 'a succeeded one can be retried too')
  await receiver.waitFor(5)
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'failed')
  await sleep(500)
  t.equal(receiver.received.length, 5, 'exactly one more attempt, not a new schedule')
  const missing = await call(app, admin, 'POST', `/${webhook.id}/deliveries/del_01JZ8Q4K7XA3F09C2B7E4D1F60/retry`)
  t.equal(missing.statusCode, 404)
})

t.test('410 Gone: the webhook is deactivated (recorded, actor system), its pending deliveries fail, and nothing more is sent', async t => {
  const app = await build(t, { webhookRetryScheduleMs: [0, 60_000] })
  const receiver = await startReceiver(() => 410)
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  await causeEvent(app, admin, 'one')
  await receiver.waitFor(1)
  await until(async () => (await call(app, admin, 'GET', `/${webhook.id}`)).json().data.webhook.isActive === false)
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'failed')
  t.match((await deliveriesOf(app, admin, webhook.id))[0], { status: 'failed', attempts: 1, lastResponseStatus: 410, lastError: /410 Gone/ })
  const events = await app.db.selectFrom('audit_events').selectAll().where('target_id', '=', webhook.id).where('type', '=', 'webhook.updated').execute()
  t.equal(events.length, 1)
  t.match(events[0], { actor_type: 'system', data: { webhook: { id: webhook.id, isActive: false } } })
  await causeEvent(app, admin, 'two')
  await sleep(500)
  t.equal(receiver.received.length, 1, 'nothing after the 410')
  t.equal((await deliveriesOf(app, admin, webhook.id)).length, 1, 'no delivery for an inactive webhook')
  t.equal((await call(app, admin, 'POST', `/${webhook.id}/test`)).statusCode, 409, 'no test to an inactive webhook')
})

t.test('no delivery to an inactive, an unsubscribed or another org\'s webhook; deactivating fails what was pending', async t => {
  const app = await build(t, { webhookRetryScheduleMs: [0, 60_000] })
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const other = await orgAdmin(app)
  const inactive = await createWebhook(app, admin, { url: `${receiver.url}/inactive`, events: ['*'] })
  const unsubscribed = await createWebhook(app, admin, { url: `${receiver.url}/unsubscribed`, events: ['member.removed'] })
  const subscribed = await createWebhook(app, admin, { url: `${receiver.url}/subscribed`, events: ['api_key.created'] })
  const others = await createWebhook(app, other, { url: `${receiver.url}/other`, events: ['*'] })
  t.equal((await call(app, admin, 'PATCH', `/${inactive.webhook.id}`, { isActive: false })).statusCode, 200)
  await sleep(300)
  receiver.received.length = 0
  const before = await receiver.waitFor(0)
  await causeEvent(app, admin)
  await receiver.waitFor(1)
  await sleep(500)
  t.same(receiver.received.map(r => r.headers['x-webhook-event'] + ' ' + (r.body.includes(admin.org.id) ? 'admin' : 'other')), ['api_key.created admin'])
  t.equal(before.length, 0)
  t.equal((await deliveriesOf(app, admin, inactive.webhook.id)).filter(d => d.event === 'api_key.created').length, 0, 'inactive: none')
  t.equal((await deliveriesOf(app, admin, unsubscribed.webhook.id)).length, 0, 'unsubscribed: none')
  t.equal((await deliveriesOf(app, other, others.webhook.id)).filter(d => d.event === 'api_key.created').length, 0, 'another org: none')
  t.equal((await deliveriesOf(app, admin, subscribed.webhook.id)).length, 1)

  // A pending delivery (its receiver failing, the next attempt a minute away) fails when the webhook is deactivated.
  receiver.answer = () => 500
  await causeEvent(app, admin)
  await until(async () => (await deliveriesOf(app, admin, subscribed.webhook.id))[0]?.attempts === 1)
  t.equal((await deliveriesOf(app, admin, subscribed.webhook.id))[0].status, 'pending')
  t.equal((await call(app, admin, 'PATCH', `/${subscribed.webhook.id}`, { isActive: false })).statusCode, 200)
  t.match((await deliveriesOf(app, admin, subscribed.webhook.id))[0], { status: 'failed', lastError: 'the webhook was deactivated' })
  const retry = await call(app, admin, 'POST', `/${subscribed.webhook.id}/deliveries/${(await deliveriesOf(app, admin, subscribed.webhook.id))[0].id}/retry`)
  t.equal(retry.statusCode, 409, 'no retry while inactive')
})

t.test('test event: delivered to this endpoint only, signed, never recorded', async t => {
  const app = await build(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { secret, webhook } = await createWebhook(app, admin, { url: `${receiver.url}/one`, events: ['*'] })
  await createWebhook(app, admin, { url: `${receiver.url}/two`, events: ['*'] })
  await sleep(300)
  receiver.received.length = 0
  const res = await call(app, admin, 'POST', `/${webhook.id}/test`)
  t.equal(res.statusCode, 202, res.body)
  const { delivery } = res.json().data
  t.match(delivery, { id: /^del_/, webhookId: webhook.id, eventId: /^evt_/, event: 'webhook.test', status: 'pending', attempts: 0 })
  const [received] = await receiver.waitFor(1)
  await sleep(300)
  t.equal(receiver.received.length, 1, 'only this endpoint')
  t.equal(received.headers['x-delivery-id'], delivery.id)
  t.equal(received.headers['x-webhook-signature'], hmacHex(secret, received.body))
  t.match(JSON.parse(received.body), { id: delivery.eventId, event: 'webhook.test', orgId: admin.org.id, orgSlug: admin.org.slug, actor: { type: 'user', id: admin.user.id }, data: { message: TEST_MESSAGE } })
  t.equal((await app.db.selectFrom('audit_events').select('id').where('id', '=', delivery.eventId).execute()).length, 0, 'not in the audit log')
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'succeeded')
})

t.test('rotate-secret: for 24 h a webhook-signature entry per secret (both verify), X-Webhook-Signature with the new one; then only the new', async t => {
  const app = await build(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const old = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  const res = await call(app, admin, 'POST', `/${old.webhook.id}/rotate-secret`)
  t.equal(res.statusCode, 200, res.body)
  const rotated = res.json().data
  t.match(rotated.secret, /^whs_[0-9a-f]{64}$/)
  t.not(rotated.secret, old.secret)
  t.equal(rotated.standardWebhooksSecret, `whsec_${Buffer.from(rotated.secret).toString('base64')}`)
  t.same(Object.keys(rotated).sort(), ['secret', 'standardWebhooksSecret'])
  const events = await app.db.selectFrom('audit_events').selectAll().where('target_id', '=', old.webhook.id).orderBy('id').execute()
  t.same(events.map(e => e.type), ['webhook.created', 'webhook.updated'], 'the rotation is recorded as webhook.updated')
  t.notOk(JSON.stringify(events).includes(rotated.secret.slice(4)), 'without the secret')
  const stored = await app.db.selectFrom('webhooks').select('previous_secret_expires_at').where('id', '=', old.webhook.id).executeTakeFirstOrThrow()
  const overlap = stored.previous_secret_expires_at!.getTime() - Date.now()
  t.ok(overlap > 24 * 3600_000 - 60_000 && overlap <= 24 * 3600_000, 'the old secret lives 24 h')

  await causeEvent(app, admin)
  const [received] = await receiver.waitFor(1)
  t.equal(received.headers['x-webhook-signature'], hmacHex(rotated.secret, received.body), 'AuthWorx: the new secret')
  t.equal(String(received.headers['webhook-signature']).split(' ').length, 2, 'two entries')
  t.ok(new StandardWebhook(rotated.standardWebhooksSecret).verify(received.body, standardHeaders(received)), 'verifies with the new secret')
  t.ok(new StandardWebhook(old.standardWebhooksSecret).verify(received.body, standardHeaders(received)), 'and with the old one')

  await app.db.updateTable('webhooks').set({ previous_secret_expires_at: new Date(Date.now() - 1000) }).where('id', '=', old.webhook.id).execute()
  await causeEvent(app, admin)
  const [, later] = await receiver.waitFor(2)
  t.equal(String(later.headers['webhook-signature']).split(' ').length, 1, 'one entry after the 24 h')
  t.ok(new StandardWebhook(rotated.standardWebhooksSecret).verify(later.body, standardHeaders(later)))
  t.throws(() => new StandardWebhook(old.standardWebhooksSecret).verify(later.body, standardHeaders(later)), 'the old secret no longer verifies')
})

t.test('PATCH and DELETE: recorded; a deleted webhook gets nothing more', async t => {
  const app = await build(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['member.removed'], description: 'x' })
  const patched = await call(app, admin, 'PATCH', `/${webhook.id}`, { events: ['api_key.created'], description: null, url: `${receiver.url}/v2` })
  t.equal(patched.statusCode, 200, patched.body)
  t.match(patched.json().data.webhook, { events: ['api_key.created'], description: null, url: `${receiver.url}/v2` })
  await causeEvent(app, admin)
  const [received] = await receiver.waitFor(1)
  t.equal(received.headers['x-webhook-event'], 'api_key.created', 'the new subscription and URL apply at once')
  const deleted = await call(app, admin, 'DELETE', `/${webhook.id}`)
  t.equal(deleted.statusCode, 200)
  t.same(deleted.json().data, { message: 'Webhook deleted' })
  t.equal((await call(app, admin, 'GET', `/${webhook.id}`)).statusCode, 404)
  await causeEvent(app, admin)
  await sleep(500)
  t.equal(receiver.received.length, 1)
  const types = (await app.db.selectFrom('audit_events').select('type').where('target_id', '=', webhook.id).orderBy('id').execute()).map(e => e.type)
  t.same(types, ['webhook.created', 'webhook.updated', 'webhook.deleted'])
})

t.test('the delivery log: newest first, paged by cursor without skips or repeats while deliveries are added', async t => {
  const app = await build(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  for (let i = 0; i < 5; i++) await call(app, admin, 'POST', `/${webhook.id}/test`)
  await receiver.waitFor(5)
  const all = await deliveriesOf(app, admin, webhook.id)
  t.equal(all.length, 5)
  t.same(all.map(d => d.id), all.map(d => d.id).sort().reverse(), 'newest first')
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await call(app, admin, 'GET', `/${webhook.id}/deliveries?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`)
    t.equal(res.statusCode, 200)
    const data: { deliveries: Array<{ id: string }>, nextCursor: string | null } = res.json().data
    seen.push(...data.deliveries.map(d => d.id))
    cursor = data.nextCursor
    if (pages++ === 0) await call(app, admin, 'POST', `/${webhook.id}/test`)
  } while (cursor !== null)
  t.same(seen, all.map(d => d.id), 'each of the first five once, in order; the new one is not on a later page')
})

t.test('/metrics: attempts by outcome, finished deliveries, attempt latency, queue depth', async t => {
  const app = await build(t)
  const receiver = await startReceiver(n => n === 0 ? 500 : 200)
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: receiver.url, events: ['api_key.created'] })
  await call(app, admin, 'POST', `/${webhook.id}/test`)
  await call(app, admin, 'POST', `/${webhook.id}/test`)
  await receiver.waitFor(2)
  await until(async () => (await deliveriesOf(app, admin, webhook.id, '?status=succeeded')).length === 1)
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.body, /tenantkey_webhook_attempts_total\{outcome="succeeded"\} [1-9]/)
  t.match(res.body, /tenantkey_webhook_attempts_total\{outcome="http_error"\} [1-9]/)
  t.match(res.body, /tenantkey_webhook_attempts_total\{outcome="refused_address"\} 0/)
  t.match(res.body, /tenantkey_webhook_deliveries_total\{status="succeeded"\} [1-9]/)
  t.match(res.body, /tenantkey_webhook_attempt_duration_seconds_count [1-9]/)
  t.match(res.body, /tenantkey_webhook_queue_depth\{state="due"\} \d+/)
  t.match(res.body, /tenantkey_webhook_queue_depth\{state="overdue"\} \d+/)
  // An overdue delivery: pending, due two minutes ago, for a webhook of an org with no worker able to send it now.
  await app.db.updateTable('webhook_deliveries').set({ status: 'pending', next_attempt_at: new Date(Date.now() - 120_000), lease_id: 'held', leased_until: new Date(Date.now() + 60_000) })
    .where('webhook_id', '=', webhook.id).where('status', '=', 'pending').execute()
  const pending = (await deliveriesOf(app, admin, webhook.id, '?status=pending')).length
  const again = await app.inject({ method: 'GET', url: '/metrics' })
  const overdue = Number(/tenantkey_webhook_queue_depth\{state="overdue"\} (\d+)/.exec(again.body)?.[1])
  t.ok(overdue >= pending, `overdue ${overdue} counts the ${pending} held one(s)`)
})

t.test('retention: deliveries older than 30 days are deleted by the hourly job; newer ones stay', async t => {
  const app = await build(t)
  const admin = await orgAdmin(app)
  const { webhook } = await createWebhook(app, admin, { url: 'https://hooks.example.com/kept', events: ['member.removed'] })
  const row = (id: string, createdAt: Date) => ({
    id,
    webhook_id: webhook.id,
    org_id: admin.org.id,
    event_id: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D93',
    event_type: 'member.removed' as const,
    payload: '{}',
    status: 'succeeded' as const,
    next_attempt_at: createdAt,
    created_at: createdAt
  })
  const old = new Date(Date.now() - 31 * 86400_000)
  const recent = new Date(Date.now() - 29 * 86400_000)
  const oldId = `del_${encodeTime(old.getTime(), 10)}0000000000000001`
  const recentId = `del_${encodeTime(recent.getTime(), 10)}0000000000000002`
  await app.db.insertInto('webhook_deliveries').values([row(oldId, old), row(recentId, recent)]).execute()
  const job = startPeriodicJob(app.db, app.log, deliveryRetention)
  t.teardown(() => job.stop())
  t.ok(await job.runNow() >= 1, 'deleted at least the old one')
  t.same((await deliveriesOf(app, admin, webhook.id)).map(d => d.id), [recentId], 'only the one within 30 days is left')
})

t.test('WEBHOOK_TIMEOUT bounds an attempt; a redirect is not followed (a failed attempt)', async t => {
  const app = await build(t, { webhookTimeoutMs: 300, webhookRetryScheduleMs: [0, 60_000] })
  const slow = await startReceiver(() => ({ status: 200, delayMs: 5000 }))
  t.teardown(() => slow.close())
  const target = await startReceiver()
  t.teardown(() => target.close())
  const redirecting = await startReceiver(() => 200)
  t.teardown(() => redirecting.close())
  const admin = await orgAdmin(app)
  const timed = await createWebhook(app, admin, { url: slow.url, events: ['member.removed'] })
  const started = Date.now()
  await call(app, admin, 'POST', `/${timed.webhook.id}/test`)
  await until(async () => (await deliveriesOf(app, admin, timed.webhook.id))[0]?.attempts === 1)
  t.ok(Date.now() - started < 3000, 'the attempt ended long before the receiver would answer')
  t.match((await deliveriesOf(app, admin, timed.webhook.id))[0], { status: 'pending', lastResponseStatus: null, lastError: 'no answer within WEBHOOK_TIMEOUT (300 ms)' })

  // A 302 to another receiver: recorded as a failed attempt with its status; the other receiver gets nothing.
  redirecting.answer = () => ({ status: 302, body: 'moved' })
  redirecting.redirectTo = target.url
  const moved = await createWebhook(app, admin, { url: redirecting.url, events: ['member.removed'] })
  await call(app, admin, 'POST', `/${moved.webhook.id}/test`)
  await until(async () => (await deliveriesOf(app, admin, moved.webhook.id))[0]?.attempts === 1)
  t.match((await deliveriesOf(app, admin, moved.webhook.id))[0], { status: 'pending', lastResponseStatus: 302, lastError: 'HTTP 302: moved' })
  t.equal(target.received.length, 0, 'nothing followed the redirect')
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tenantkey_webhook_attempts_total\{outcome="timeout"\} [1-9]/)
})
