import t from 'tap'
import pg from 'pg'
import { createDatabase, migrateDown, migrateToLatest } from '../../db/connect.ts'
import { migrations } from '../../db/migrations/index.ts'
import { DATABASE_URL, runId } from '../helper.ts'

// Every migration goes down and up again on a database of its own, and the arrays of §9 read back
// as arrays on both drivers (PGlite and pg parse text[] differently).
t.test('every migration has a working down, and up again keeps api-key settings as arrays', async t => {
  let url: string | null = null
  if (DATABASE_URL !== null) {
    const name = `tk_migrations_${runId}`
    const admin = new pg.Client({ connectionString: DATABASE_URL })
    await admin.connect()
    await admin.query(`create database "${name}"`)
    await admin.end()
    const parsed = new URL(DATABASE_URL)
    parsed.pathname = `/${name}`
    url = parsed.toString()
    t.teardown(async () => {
      const dropper = new pg.Client({ connectionString: DATABASE_URL as string })
      await dropper.connect()
      await dropper.query(`drop database if exists "${name}" with (force)`)
      await dropper.end()
    })
  }
  const handle = createDatabase({ databaseUrl: url, dataDir: 'memory://' })
  t.teardown(() => handle.close())
  const names = Object.keys(migrations)
  t.same(await migrateToLatest(handle.db), names)
  for (const name of [...names].reverse()) t.same(await migrateDown(handle.db), [name])
  t.same(await migrateToLatest(handle.db), names)

  await handle.db.insertInto('organizations').values({ id: 'org_1', slug: 'mig-org', name: 'M', app_url: null, rate_limit_max: null, rate_limit_window_seconds: null }).execute()
  await handle.db.insertInto('api_keys').values({ id: 'key_1', org_id: 'org_1', name: 'k', prefix: 'pk_live_00', key_hash: 'h', created_by: null, allowed_ips: ['10.0.0.0/8', '::1/128'] }).execute()
  const row = await handle.db.selectFrom('api_keys').selectAll().executeTakeFirstOrThrow()
  t.same(row.scopes, ['tokens:verify', 'users:read', 'org:read'], 'default scopes: all three')
  t.same(row.allowed_ips, ['10.0.0.0/8', '::1/128'])
  t.equal(row.created_by_type, 'user')
  await t.rejects(handle.db.updateTable('api_keys').set({ rate_limit_max: 5 }).execute(), 'a budget is both numbers or neither')
})
