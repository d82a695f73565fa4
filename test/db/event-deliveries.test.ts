import t from 'tap'
import { adminHeaders, build, createOrgWithMember } from '../helper.ts'
import { changeWithEvent, SYSTEM_ACTOR, type NewEvent } from '../../db/queries/events.ts'

// recordEvent writes an event and its webhook deliveries (§11 outbox) in its transaction: one row per
// active webhook of the event's org subscribed to its type, with the event's JSON as the payload
// (a second statement, run only when the event's statement found such a webhook).

t.test('an org event writes one delivery per subscribed, active webhook of its org, with the event as payload', async t => {
  const app = await build(t)
  const { org } = await createOrgWithMember(app)
  const other = await createOrgWithMember(app)
  const webhook = (orgId: string, id: string, events: string[], active = true) => app.db.insertInto('webhooks')
    .values({ id, org_id: orgId, url: 'https://hooks.example.test/in', events, description: null, secret_ciphertext: 'unused', is_active: active }).execute()
  await webhook(org.id, 'wh_01JAAAAAAAAAAAAAAAAAAAAAA1', ['org.updated'])
  await webhook(org.id, 'wh_01JAAAAAAAAAAAAAAAAAAAAAA2', ['*'])
  await webhook(org.id, 'wh_01JAAAAAAAAAAAAAAAAAAAAAA3', ['member.removed'])
  await webhook(org.id, 'wh_01JAAAAAAAAAAAAAAAAAAAAAA4', ['org.updated'], false)
  await webhook(other.org.id, 'wh_01JAAAAAAAAAAAAAAAAAAAAAA5', ['*'])

  const res = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${org.slug}`, headers: adminHeaders, payload: { name: 'Renamed' } })
  t.equal(res.statusCode, 200)
  const [event] = await app.db.selectFrom('audit_events').selectAll().where('org_id', '=', org.id).where('type', '=', 'org.updated').execute()
  t.ok(event, 'the event is recorded')
  const deliveries = await app.db.selectFrom('webhook_deliveries').selectAll().where('event_id', '=', event.id).orderBy('webhook_id').execute()
  t.same(deliveries.map(d => d.webhook_id), ['wh_01JAAAAAAAAAAAAAAAAAAAAAA1', 'wh_01JAAAAAAAAAAAAAAAAAAAAAA2'],
    'the subscribed and the wildcard webhook, not the unsubscribed, inactive or other org\'s')
  for (const delivery of deliveries) {
    t.match(delivery.id, /^del_[0-9A-HJKMNP-TV-Z]{26}$/)
    t.same(JSON.parse(String(delivery.payload)), {
      id: event.id,
      event: 'org.updated',
      orgId: org.id,
      orgSlug: org.slug,
      timestamp: event.created_at.toISOString(),
      actor: { type: 'admin', id: null, email: null },
      data: event.data
    })
  }

  // An internal type (never delivered) and an event of an org without webhooks write no delivery.
  const before = await app.db.selectFrom('webhook_deliveries').select(eb => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  const created = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug: `x-${Date.now()}`, name: 'X', plan: 'free' } })
  t.equal(created.statusCode, 201)
  const after = await app.db.selectFrom('webhook_deliveries').select(eb => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  t.equal(after.n, before.n, 'org.created is not delivered')
})

t.test('changeWithEvent: the change and its event in one statement; a change that touches no row records nothing', async t => {
  const app = await build(t)
  const { org } = await createOrgWithMember(app)
  await app.db.insertInto('webhooks')
    .values({ id: 'wh_01JBBBBBBBBBBBBBBBBBBBBBB1', org_id: org.id, url: 'https://hooks.example.test/in', events: ['*'], description: null, secret_ciphertext: 'unused' }).execute()
  const event = (name: string): NewEvent => ({ type: 'org.updated', orgId: org.id, actor: SYSTEM_ACTOR, target: { type: 'org', id: org.id }, data: { name }, ip: null })
  const count = async (table: 'audit_events' | 'webhook_deliveries') => Number((await app.db.selectFrom(table)
    .select(eb => eb.fn.countAll<string>().as('n')).where('org_id', '=', org.id).executeTakeFirstOrThrow()).n)
  const [events, deliveries] = [await count('audit_events'), await count('webhook_deliveries')]

  const rows = await app.db.transaction().execute(trx => changeWithEvent(trx,
    trx.updateTable('organizations').set({ name: 'Changed' }).where('id', '=', org.id).returning(['id', 'name']), event('Changed')))
  t.same(rows, [{ id: org.id, name: 'Changed' }], 'the change\'s rows are answered')
  t.equal(await count('audit_events'), events + 1, 'one event')
  t.equal(await count('webhook_deliveries'), deliveries + 1, 'one delivery')

  const none = await app.db.transaction().execute(trx => changeWithEvent(trx,
    trx.updateTable('organizations').set({ name: 'Nobody' }).where('id', '=', 'org_01JZZZZZZZZZZZZZZZZZZZZZZZ').returning(['id']), event('Nobody')))
  t.same(none, [])
  t.equal(await count('audit_events'), events + 1, 'no event for a change that touched nothing')
  t.equal(await count('webhook_deliveries'), deliveries + 1, 'and no delivery')

  await t.rejects(app.db.transaction().execute(async trx => {
    await changeWithEvent(trx, trx.updateTable('organizations').set({ name: 'Rolled back' }).where('id', '=', org.id).returning(['id']), event('Rolled back'))
    throw new Error('refused after the change')
  }), /refused after the change/)
  t.equal(await count('audit_events'), events + 1, 'a rolled-back change leaves no event')
  t.equal(await count('webhook_deliveries'), deliveries + 1, 'and no delivery')

  // An org without a subscribed webhook: the event, no delivery, and the change's rows as they are.
  const bare = await createOrgWithMember(app)
  const bareRows = await app.db.transaction().execute(trx => changeWithEvent(trx,
    trx.updateTable('organizations').set({ name: 'Bare' }).where('id', '=', bare.org.id).returning(['id', 'name']), { ...event('Bare'), orgId: bare.org.id, target: { type: 'org', id: bare.org.id } }))
  t.same(bareRows, [{ id: bare.org.id, name: 'Bare' }], 'only the change\'s columns')
  const bareEvents = await app.db.selectFrom('audit_events').select('id').where('org_id', '=', bare.org.id).where('type', '=', 'org.updated').execute()
  t.equal(bareEvents.length, 1, 'its event is recorded')
  t.equal((await app.db.selectFrom('webhook_deliveries').select('id').where('org_id', '=', bare.org.id).execute()).length, 0, 'no delivery')

  // A webhook created earlier in the change's own transaction is a subscriber already.
  const [, late] = await app.db.transaction().execute(async trx => {
    await trx.insertInto('webhooks').values({ id: 'wh_01JBBBBBBBBBBBBBBBBBBBBBB2', org_id: bare.org.id, url: 'https://hooks.example.test/in', events: ['org.updated'], description: null, secret_ciphertext: 'unused' }).execute()
    const changed = await changeWithEvent(trx, trx.updateTable('organizations').set({ name: 'Bare 2' }).where('id', '=', bare.org.id).returning(['id']), { ...event('Bare 2'), orgId: bare.org.id, target: { type: 'org', id: bare.org.id } })
    return [changed, await trx.selectFrom('webhook_deliveries').select('webhook_id').where('org_id', '=', bare.org.id).execute()]
  })
  t.same(late, [{ webhook_id: 'wh_01JBBBBBBBBBBBBBBBBBBBBBB2' }], 'delivered to the webhook of the same transaction')

  await t.rejects(changeWithEvent(app.db, app.db.updateTable('organizations').set({ name: 'x' }).where('id', '=', org.id).returning(['id']), event('x')),
    /outside a transaction/, 'refused outside a transaction')
})
