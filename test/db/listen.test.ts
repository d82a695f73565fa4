import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { sharedDatabase } from '../helper.ts'

// DatabaseHandle.listen: what the outbox workers wake on. PGlite in memory, or PostgreSQL with
// DATABASE_URL (a dedicated listening connection, re-opened when it is lost).

async function until (condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(10)
  }
}

t.test('a NOTIFY arrives when its transaction commits, never when it rolls back', async t => {
  const { handle } = await sharedDatabase()
  let notified = 0
  const unlisten = await handle.listen('tk_listen_test', () => { notified++ })
  t.teardown(unlisten)

  await t.rejects(handle.db.transaction().execute(async trx => {
    await sql`select pg_notify('tk_listen_test', '')`.execute(trx)
    throw new Error('rolled back')
  }))
  await handle.db.transaction().execute(async trx => {
    await sql`select pg_notify('tk_listen_test', '')`.execute(trx)
    await sleep(100)
    t.equal(notified, 0, 'not before the commit')
  })
  await until(() => notified === 1)
  await sleep(100)
  t.equal(notified, 1, 'the rolled-back one never came')

  await sql`select pg_notify('tk_listen_other', '')`.execute(handle.db)
  await unlisten()
  await sql`select pg_notify('tk_listen_test', '')`.execute(handle.db)
  await sleep(100)
  t.equal(notified, 1, 'nothing from another channel, nor after unlisten')
})

t.test('PostgreSQL: a lost listening connection is re-opened, and listeners are told to look', { skip: process.env.DATABASE_URL === undefined && 'needs DATABASE_URL' }, async t => {
  const { handle } = await sharedDatabase()
  let notified = 0
  const unlisten = await handle.listen('tk_listen_reopen', () => { notified++ })
  t.teardown(unlisten)
  const { rows } = await sql<{ pid: number }>`
    select pid from pg_stat_activity where datname = current_database() and query ilike 'listen tk_listen_reopen%'`.execute(handle.db)
  t.equal(rows.length, 1, 'one listening connection')
  await sql`select pg_terminate_backend(${rows[0].pid})`.execute(handle.db)
  await until(() => notified === 1, 10_000)
  t.pass('told once after the re-open (what was sent meanwhile is lost)')
  await sql`select pg_notify('tk_listen_reopen', '')`.execute(handle.db)
  await until(() => notified === 2)
  t.pass('notifications arrive again')
})
