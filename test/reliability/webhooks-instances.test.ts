import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { freshDatabase, freshRedisPrefix, needs, withClient } from './support/stores.ts'
import { startInstances, type Instance } from './support/instances.ts'
import { pool, request } from './support/http.ts'
import { createApiKey, provisionTenant, type Tenant } from './support/provision.ts'
import { startReceiver, type Receiver } from '../support/webhooks.ts'
import { noteSecret } from '../log-secrets.ts'

// §11 with several real server processes on one PostgreSQL database (and one Redis): each
// attempt is made by exactly one instance, a delivery answered 2xx is never sent again, and a
// delivery whose instance dies mid-attempt is delivered by another once its lease ends.

const EVENTS = 100
const TIMEOUT_S = 5
const LEASE_MS = 2 * TIMEOUT_S * 1000 + 5000

async function subscribe (base: string, tenant: Tenant, receiver: Receiver): Promise<string> {
  const res = await request(base, {
    method: 'POST',
    path: '/api/v1/org/webhooks',
    headers: { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug },
    body: { url: receiver.url, events: ['api_key.created'] }
  })
  if (res.status !== 201) throw new Error(`subscribe: ${res.status} ${res.body}`)
  noteSecret(res.json().data.secret)
  noteSecret(res.json().data.standardWebhooksSecret)
  return res.json().data.webhook.id
}

function attemptsLogged (instance: Instance, deliveryId?: string): number {
  return instance.lines.filter(line => line.includes('"msg":"webhook attempt"') && (deliveryId === undefined || line.includes(deliveryId))).length
}

t.test('two instances, 100 events: each delivered exactly once', { skip: needs('postgres') }, async t => {
  const { url } = await freshDatabase(t)
  const env = { DATABASE_URL: url, REDIS_URL: process.env.REDIS_URL, REDIS_PREFIX: freshRedisPrefix(t), WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: `${TIMEOUT_S}s` }
  const [a, b] = await startInstances(t, 2, env)
  // A little time per answer, so both instances have deliveries in flight at once.
  const receiver = await startReceiver(() => ({ status: 200, delayMs: 20 }))
  t.teardown(() => receiver.close())
  const tenant = await provisionTenant(a.url)
  const webhookId = await subscribe(a.url, tenant, receiver)

  await pool(EVENTS, 10, async i => await createApiKey(i % 2 === 0 ? a.url : b.url, tenant, `event-${i}`))
  await receiver.waitFor(EVENTS, 30_000)
  await sleep(2000)
  const ids = receiver.received.map(r => String(r.headers['webhook-id']))
  t.equal(receiver.received.length, EVENTS, `${EVENTS} requests, no more`)
  t.equal(new Set(ids).size, EVENTS, 'each delivery once')
  const rows = await withClient(url, async client => (await client.query('select status, attempts from webhook_deliveries where webhook_id = $1', [webhookId])).rows)
  t.equal(rows.length, EVENTS)
  t.ok(rows.every(row => row.status === 'succeeded' && row.attempts === 1), 'every delivery succeeded at its first attempt')
  const byA = attemptsLogged(a)
  const byB = attemptsLogged(b)
  t.equal(byA + byB, EVENTS, 'one attempt each, over both instances')
  t.comment(`attempts: A ${byA}, B ${byB}`)
})

t.test('an instance killed mid-attempt: the other delivers the delivery after the lease, the lost attempt not counted', { skip: needs('postgres') }, async t => {
  const { url } = await freshDatabase(t)
  const env = { DATABASE_URL: url, REDIS_URL: process.env.REDIS_URL, REDIS_PREFIX: freshRedisPrefix(t), WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: `${TIMEOUT_S}s` }
  const instances = await startInstances(t, 2, env)
  // The first request is never answered (its instance dies holding it); later ones get 200.
  const receiver = await startReceiver(n => n === 0 ? { status: 200, delayMs: 600_000 } : 200)
  t.teardown(() => receiver.close())
  const tenant = await provisionTenant(instances[0].url)
  const webhookId = await subscribe(instances[0].url, tenant, receiver)
  await createApiKey(instances[0].url, tenant, 'doomed attempt')
  const [first] = await receiver.waitFor(1, 10_000)
  const deliveryId = String(first.headers['webhook-id'])

  let holder: Instance | undefined
  const deadline = Date.now() + 1000
  while (holder === undefined && Date.now() < deadline) {
    holder = instances.find(instance => attemptsLogged(instance, deliveryId) > 0)
    if (holder === undefined) await sleep(10)
  }
  if (holder === undefined) throw new Error('no instance logged the attempt')
  const other = instances.find(instance => instance !== holder)!
  holder.child.kill('SIGKILL')
  const killedAt = Date.now()
  await holder.exited
  t.comment(`${holder.name} held ${deliveryId} and was killed; ${other.name} remains`)

  const [, second] = await receiver.waitFor(2, LEASE_MS + 15_000)
  t.equal(second.headers['webhook-id'], deliveryId, 'the same delivery, by the other instance')
  t.ok(second.at - killedAt >= LEASE_MS - 1500, `not before the lease ended (${second.at - killedAt} ms after the kill; lease ${LEASE_MS} ms)`)
  t.ok(second.at - killedAt < 60_000, 'within a minute')
  await sleep(500)
  t.equal(attemptsLogged(other, deliveryId), 1, `${other.name} made the attempt`)
  const row = await withClient(url, async client => (await client.query('select status, attempts from webhook_deliveries where id = $1', [deliveryId])).rows[0])
  t.same(row, { status: 'succeeded', attempts: 1 }, 'succeeded; the lost attempt used none of the schedule')
  t.equal(receiver.received.length, 2)
  t.ok(webhookId)
})
