import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { sql } from 'kysely'
import { migrateToLatest, openDatabase } from '../../db/connect.ts'

// The server opens the embedded database with openDatabase: a database that does not exist yet
// is made (initdb) in a child process, so this process never holds initdb's WebAssembly memory.
// Made here, PGlite keeps ~620 MB of external memory for good; opened after, ~140 MB.
const MIB = 1024 * 1024
const MOST_EXTERNAL_MEMORY = 400 * MIB

t.test('a fresh data directory is made by a child process, then opened, migrated and reopened here', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tenantkey-open-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))

  const first = await openDatabase({ databaseUrl: null, dataDir })
  t.ok((await migrateToLatest(first.db)).length > 0, 'migrations applied')
  t.ok(existsSync(join(dataDir, 'PG_VERSION')), 'the database is in DATA_DIR')
  t.ok(process.memoryUsage().external < MOST_EXTERNAL_MEMORY, `external memory ${Math.round(process.memoryUsage().external / MIB)} MiB: initdb ran elsewhere`)
  await first.db.insertInto('organizations').values({ id: 'org_open', slug: 'open-org', name: 'Open', app_url: null, rate_limit_max: null, rate_limit_window_seconds: null }).execute()
  const { rows } = await sql<{ shared_buffers: string }>`show shared_buffers`.execute(first.db)
  t.equal(rows[0].shared_buffers, '16MB', 'a small buffer pool for a one-connection database')
  await first.close()

  const again = await openDatabase({ databaseUrl: null, dataDir })
  t.teardown(() => again.close())
  t.same(await migrateToLatest(again.db), [], 'already migrated')
  const org = await again.db.selectFrom('organizations').select('slug').where('id', '=', 'org_open').executeTakeFirst()
  t.equal(org?.slug, 'open-org', 'the data survived the restart')
})

t.test('memory:// starts from a dump made by a child process', async t => {
  const handle = await openDatabase({ databaseUrl: null, dataDir: 'memory://' })
  t.teardown(() => handle.close())
  t.ok((await migrateToLatest(handle.db)).length > 0, 'an empty database, migrated')
  t.ok(process.memoryUsage().external < MOST_EXTERNAL_MEMORY, `external memory ${Math.round(process.memoryUsage().external / MIB)} MiB: initdb ran elsewhere`)
  const { rows } = await sql<{ one: number }>`select 1 as one`.execute(handle.db)
  t.equal(rows[0].one, 1)
})

t.test('a data directory that cannot be made fails the start with the reason', async t => {
  const blocker = mkdtempSync(join(tmpdir(), 'tenantkey-open-'))
  t.teardown(() => rmSync(blocker, { recursive: true, force: true }))
  await t.rejects(openDatabase({ databaseUrl: null, dataDir: join(blocker, 'missing-parent', 'data') }), /could not create the embedded database in .*missing-parent/)
})
