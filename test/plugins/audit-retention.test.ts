import t from 'tap'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, sharedDatabase } from '../helper.ts'
import { seedEvents } from '../support/audit-events.ts'
import { AUDIT_RETENTION_BATCH } from '../../plugins/events/retention.ts'

// AUDIT_RETENTION_DAYS: a periodic job deletes older events in batches, under a PostgreSQL
// advisory lock so that one instance at a time does it.

async function countSeeded (app: FastifyInstance, prefix: string): Promise<number> {
  const row = await app.db.selectFrom('audit_events').select(eb => eb.fn.countAll<string>().as('n')).where('id', 'like', `${prefix}%`).executeTakeFirstOrThrow()
  return Number(row.n)
}

t.test('events older than AUDIT_RETENTION_DAYS are deleted, in batches; younger ones stay', async t => {
  const app = await build(t, { auditRetentionDays: 30 })
  const { org } = await createOrgWithMember(app)
  // More than two batches past the limit, and events just inside it.
  const old = await seedEvents(app.db, org.id, 2 * AUDIT_RETENTION_BATCH + 500, { age: '31 days', step: '1 second' })
  const recent = await seedEvents(app.db, org.id, 50, { age: '29 days', step: '1 second' })
  const deleted = await app.auditRetention.prune()
  t.equal(deleted, 2 * AUDIT_RETENTION_BATCH + 500, 'what prune deleted, over three batches')
  t.equal(await countSeeded(app, old), 0, 'every event past 30 days is gone')
  t.equal(await countSeeded(app, recent), 50, 'events within 30 days stay')
  const live = await app.inject({ method: 'GET', url: `/api/v1/admin/audit-events?org=${org.slug}&limit=200`, headers: { authorization: 'Bearer test-admin-token-0123456789abcdef' } })
  t.equal(live.json().data.events.length, 52, 'the set-up\'s two events and the recent ones are still listed')
  t.equal(await app.auditRetention.prune(), 0, 'nothing more to delete')
})

t.test('one instance at a time: while another holds the job\'s advisory lock, prune does nothing', {
  skip: (await sharedDatabase()).url === null ? 'PostgreSQL only: the embedded database is one process, whose session holds the lock itself' : false
}, async t => {
  const app = await build(t, { auditRetentionDays: 30 })
  const { org } = await createOrgWithMember(app)
  const old = await seedEvents(app.db, org.id, 30, { age: '40 days' })
  const other = new pg.Client({ connectionString: (await sharedDatabase()).url as string })
  await other.connect()
  t.teardown(() => other.end())
  await other.query('begin')
  await other.query("select pg_advisory_xact_lock(hashtext('tenantkey:audit-retention'))")
  t.equal(await app.auditRetention.prune(), 0, 'the other instance holds the lock: this one skips the round')
  t.equal(await countSeeded(app, old), 30)
  await other.query('commit')
  t.equal(await app.auditRetention.prune(), 30, 'the lock released: this one deletes')

  // Two instances at once: the rows are deleted once, by whichever held the lock.
  const second = await build(t, { auditRetentionDays: 30 })
  const again = await seedEvents(app.db, org.id, 3 * AUDIT_RETENTION_BATCH, { age: '40 days' })
  const [a, b] = await Promise.all([app.auditRetention.prune(), second.auditRetention.prune()])
  t.equal(a + b, 3 * AUDIT_RETENTION_BATCH, `${a} + ${b}: every old event deleted once`)
  t.equal(await countSeeded(app, again), 0)
})
