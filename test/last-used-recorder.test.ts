import t from 'tap'
import { build, createOrgWithMember, createApiKey } from './helper.ts'
import { createLastUsedRecorder } from '../plugins/public-api/last-used.ts'

t.test('later uses wait 60 s after the last write and go out together in one UPDATE', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const a = await createApiKey(app, fixture, { name: 'A' })
  const b = await createApiKey(app, fixture, { name: 'B' })
  let clock = Date.parse('2030-01-01T00:00:00.000Z')
  const recorder = createLastUsedRecorder({ db: app.db, log: app.log, now: () => clock })
  const stored = async (id: string) => (await app.db.selectFrom('api_keys').select('last_used_at').where('id', '=', id).executeTakeFirstOrThrow()).last_used_at?.toISOString() ?? null

  let before = app.database.stats.queries
  await recorder.recordUse(a.id, null)
  await recorder.recordUse(b.id, null)
  t.equal(app.database.stats.queries - before, 2, 'each first use is written at once')
  t.equal(await stored(a.id), '2030-01-01T00:00:00.000Z')

  before = app.database.stats.queries
  for (let i = 1; i <= 5; i++) {
    clock += 1000
    await recorder.recordUse(a.id, new Date('2030-01-01T00:00:00.000Z'))
    await recorder.recordUse(b.id, new Date('2030-01-01T00:00:00.000Z'))
  }
  t.equal(app.database.stats.queries - before, 0, 'no write for later uses within 60 s')
  t.equal(await stored(a.id), '2030-01-01T00:00:00.000Z')

  before = app.database.stats.queries
  await recorder.flush()
  t.equal(app.database.stats.queries - before, 1, 'both keys in one statement')
  t.equal(await stored(a.id), '2030-01-01T00:00:05.000Z')
  t.equal(await stored(b.id), '2030-01-01T00:00:05.000Z')

  before = app.database.stats.queries
  await recorder.flush()
  t.equal(app.database.stats.queries - before, 0, 'nothing pending, nothing written')

  // A stored time older than the pending one is never written over a newer one.
  await app.db.updateTable('api_keys').set({ last_used_at: new Date('2031-01-01T00:00:00.000Z') }).where('id', '=', a.id).execute()
  clock += 61_000
  await recorder.recordUse(a.id, new Date('2030-01-01T00:00:05.000Z'))
  await recorder.flush()
  t.equal(await stored(a.id), '2031-01-01T00:00:00.000Z', 'last_used_at never moves backwards')
})

t.test('a use due at once is written by the timer, without a request', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const key = await createApiKey(app, fixture)
  const recorder = createLastUsedRecorder({ db: app.db, log: app.log })
  const longAgo = new Date(Date.now() - 3600_000)
  await app.db.updateTable('api_keys').set({ last_used_at: longAgo }).where('id', '=', key.id).execute()
  await recorder.recordUse(key.id, longAgo)
  let written: Date | null = longAgo
  for (let i = 0; i < 200 && written !== null && written <= longAgo; i++) {
    await new Promise(resolve => setTimeout(resolve, 10))
    written = (await app.db.selectFrom('api_keys').select('last_used_at').where('id', '=', key.id).executeTakeFirstOrThrow()).last_used_at
  }
  t.ok(written !== null && written > longAgo, 'written by the timer, with no flush and no request')
})
