import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { preparing, preparingPool } from '../../db/prepared.ts'

// db/prepared.ts: statements marked by `preparing` run as named prepared statements on PostgreSQL
// (the embedded database runs them as plain ones: every other test covers that).
const databaseUrl = process.env.DATABASE_URL
if (databaseUrl === undefined || databaseUrl === '') {
  t.pass('PostgreSQL only: set DATABASE_URL')
} else {
  t.test('a marked statement is prepared once per connection, and prepared again after a migration changes its result', async t => {
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 })
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: preparingPool(pool) }) })
    const table = `prepared_test_${randomBytes(4).toString('hex')}`
    t.teardown(async () => {
      await sql`drop table if exists ${sql.table(table)}`.execute(db)
      await db.destroy()
    })
    await sql`create table ${sql.table(table)} (id int primary key, a text)`.execute(db)
    await sql`insert into ${sql.table(table)} values (1, 'one')`.execute(db)
    const update = async (a: string): Promise<unknown[]> =>
      (await db.executeQuery(preparing(sql`update ${sql.table(table)} set a = ${a} where id = 1 returning *`.compile(db)))).rows
    const prepared = async (): Promise<number> => {
      const { rows } = await sql<{ n: string }>`select count(*) as n from pg_prepared_statements where statement like ${'%' + table + '%'}`.execute(db)
      return Number(rows[0].n)
    }

    t.same(await update('two'), [{ id: 1, a: 'two' }])
    t.same(await update('three'), [{ id: 1, a: 'three' }])
    t.equal(await prepared(), 1, 'one prepared statement for both runs')

    await sql`alter table ${sql.table(table)} add column b int`.execute(db)
    await t.rejects(update('four'), { code: '0A000' }, 'PostgreSQL refuses the statement prepared before the change of its result')
    t.same(await update('five'), [{ id: 1, a: 'five', b: null }], 'the next run prepares it again')
    t.same(await update('six'), [{ id: 1, a: 'six', b: null }])
  })
}
