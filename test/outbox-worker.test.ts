import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql, type Kysely } from 'kysely'
import { pino } from 'pino'
import { sharedDatabase } from './helper.ts'
import { firstAttemptAt, startOutboxWorker, type AttemptOutcome, type OutboxWorker, type OutboxWorkerOptions } from '../src/outbox-worker.ts'

// The generic outbox worker against a real database (PGlite, or PostgreSQL with DATABASE_URL):
// a scratch table with the worker's columns, in this test process's own database.

interface Row { id: string, status: string, attempts: number, secret: string | null, last_error: string | null, lease_id: string | null }

const silentLog = pino({ level: 'silent' })

let db: Kysely<any>
let tableCounter = 0

async function scratchTable (): Promise<string> {
  tableCounter++
  const table = `outbox_worker_test_${tableCounter}`
  await sql`create table ${sql.table(table)} (
    id text primary key, status text not null default 'pending', attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(), lease_id text, leased_until timestamptz,
    last_attempt_at timestamptz, last_error text, secret text)`.execute(db)
  return table
}

async function insertRows (table: string, count: number, schedule: number[] = [0]): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `row_${String(i).padStart(3, '0')}`)
  await db.insertInto(table).values(ids.map(id => ({ id, secret: `secret-of-${id}`, next_attempt_at: firstAttemptAt(schedule) }))).execute()
  return ids
}

async function rows (table: string): Promise<Row[]> {
  return await db.selectFrom(table).selectAll().orderBy('id').execute() as Row[]
}

function worker (t: Test, table: string, attempt: (row: Row, signal: AbortSignal) => Promise<AttemptOutcome>, overrides: Partial<OutboxWorkerOptions<Row>> = {}): OutboxWorker {
  const options: OutboxWorkerOptions<Row> = { name: 'test', table, db, log: silentLog, retryScheduleMs: [0, 50, 50], leaseMs: 30_000, pollIntervalMs: 60_000, attempt }
  const started = startOutboxWorker<Row>({ ...options, whenFinished: { secret: null }, ...overrides })
  t.teardown(() => started.stop())
  return started
}

async function until (condition: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(20)
  }
}

t.before(async () => {
  db = (await sharedDatabase()).handle.db
})

t.test('a due row is attempted once; success finishes it and erases what whenFinished names', async t => {
  const table = await scratchTable()
  await insertRows(table, 3)
  const seen: string[] = []
  const w = worker(t, table, async row => { seen.push(row.id); return { done: true } })
  await w.runNow()
  await w.runNow()
  t.same(seen.sort(), ['row_000', 'row_001', 'row_002'])
  for (const row of await rows(table)) {
    t.equal(row.status, 'succeeded')
    t.equal(row.attempts, 1)
    t.equal(row.secret, null)
    t.equal(row.lease_id, null)
  }
})

t.test('a failed attempt is retried on the schedule; after the last one the row is failed', async t => {
  const table = await scratchTable()
  await insertRows(table, 2)
  const calls = new Map<string, number>()
  const w = worker(t, table, async row => {
    const n = (calls.get(row.id) ?? 0) + 1
    calls.set(row.id, n)
    if (row.id === 'row_000' && n === 3) return { done: true }
    throw new Error(`refused #${n}`)
  }, { retryScheduleMs: [0, 400, 50] }) // long enough a first retry to look at the rows before it
  await w.runNow()
  let [first, second] = await rows(table)
  t.equal(first.status, 'pending', 'retried later, not at once')
  t.equal(first.attempts, 1)
  t.equal(first.last_error, 'refused #1')
  t.equal(first.secret, 'secret-of-row_000', 'kept while the row is pending')
  await until(async () => (await rows(table)).every(row => row.status !== 'pending'))
  ;[first, second] = await rows(table)
  t.equal(first.status, 'succeeded')
  t.equal(first.attempts, 3)
  t.equal(first.last_error, null)
  t.equal(second.status, 'failed', 'three entries in the schedule: three attempts')
  t.equal(second.attempts, 3)
  t.equal(second.last_error, 'refused #3')
  t.equal(second.secret, null, 'erased when it fails for good too')
  t.equal(calls.get('row_001'), 3)
})

t.test('a final failure is not retried; `set` columns go with the outcome', async t => {
  const table = await scratchTable()
  await insertRows(table, 1)
  const w = worker(t, table, async () => ({ done: false, error: 'gone', final: true }))
  await w.runNow()
  const [row] = await rows(table)
  t.equal(row.status, 'failed')
  t.equal(row.attempts, 1)

  const other = await scratchTable()
  await insertRows(other, 1)
  const w2 = worker(t, other, async () => ({ done: true, set: { status: 'cancelled' } }))
  await w2.runNow()
  t.equal((await rows(other))[0].status, 'cancelled')
})

t.test('two workers on one table attempt each row exactly once', async t => {
  const table = await scratchTable()
  const ids = await insertRows(table, 40)
  const calls = new Map<string, number>()
  const attempt = async (row: Row): Promise<AttemptOutcome> => {
    calls.set(row.id, (calls.get(row.id) ?? 0) + 1)
    await sleep(5)
    return { done: true }
  }
  const a = worker(t, table, attempt, { batchSize: 3 })
  const b = worker(t, table, attempt, { batchSize: 3 })
  await Promise.all([a.runNow(), b.runNow(), a.runNow(), b.runNow()])
  t.same([...calls.keys()].sort(), ids)
  t.ok([...calls.values()].every(n => n === 1), 'no row attempted twice')
  t.ok((await rows(table)).every(row => row.status === 'succeeded' && row.attempts === 1))
})

t.test('a row leased by a dead instance is taken over when the lease ends, and the lost attempt is not counted', async t => {
  const table = await scratchTable()
  await insertRows(table, 1)
  await db.updateTable(table).set({ lease_id: 'dead-instance', leased_until: sql`now() + interval '1 hour'` }).execute()
  const seen: string[] = []
  const w = worker(t, table, async row => { seen.push(row.id); return { done: true } })
  await w.runNow()
  t.same(seen, [], 'not while another worker holds the lease')
  await db.updateTable(table).set({ leased_until: sql`now() - interval '1 second'` }).execute()
  await w.runNow()
  t.same(seen, ['row_000'])
  const [row] = await rows(table)
  t.equal(row.status, 'succeeded')
  t.equal(row.attempts, 1)
})

t.test('stopping aborts an attempt in flight and releases its row without counting it', async t => {
  const table = await scratchTable()
  await insertRows(table, 1)
  let started!: () => void
  const inFlight = new Promise<void>(resolve => { started = resolve })
  const w = worker(t, table, async (_row, signal) => {
    started()
    await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))))
    return { done: true }
  })
  const run = w.runNow()
  await inFlight
  await w.stop()
  await run
  const [row] = await rows(table)
  t.equal(row.status, 'pending')
  t.equal(row.attempts, 0)
  t.equal(row.lease_id, null, 'released at once, not after the lease')
  t.equal(row.secret, 'secret-of-row_000')

  const next = worker(t, table, async () => ({ done: true }))
  await next.runNow()
  t.equal((await rows(table))[0].status, 'succeeded', 'another worker finishes it')
})

t.test('a row cancelled during its attempt stays cancelled', async t => {
  const table = await scratchTable()
  await insertRows(table, 1)
  const w = worker(t, table, async row => {
    await db.updateTable(table).set({ status: 'cancelled', secret: null }).where('id', '=', row.id).execute()
    return { done: true }
  })
  await w.runNow()
  const [row] = await rows(table)
  t.equal(row.status, 'cancelled')
  t.equal(row.attempts, 0)
})

t.test('wake() works off a row written after the worker started, without waiting for the poll', async t => {
  const table = await scratchTable()
  const seen: string[] = []
  const w = worker(t, table, async row => { seen.push(row.id); return { done: true } })
  await sleep(50)
  await insertRows(table, 1)
  w.wake()
  await until(async () => seen.length === 1, 5000)
  t.same(seen, ['row_000'])
})

t.test('notBefore puts a claimed row back until then without counting an attempt', async t => {
  const table = await scratchTable()
  await insertRows(table, 1)
  const notBefore = new Date(Date.now() + 300)
  const attemptedAt: number[] = []
  const w = worker(t, table, async () => { attemptedAt.push(Date.now()); return { done: true } }, { notBefore: () => notBefore })
  await w.runNow()
  t.same(attemptedAt, [], 'not attempted before notBefore')
  const [row] = await rows(table)
  t.equal(row.status, 'pending')
  t.equal(row.attempts, 0)
  t.equal(row.lease_id, null, 'put back at once, not after the lease')
  await until(async () => (await rows(table))[0].status === 'succeeded', 5000)
  t.equal(attemptedAt.length, 1)
  t.ok(attemptedAt[0] >= notBefore.getTime(), 'attempted once notBefore has passed')
  t.equal((await rows(table))[0].attempts, 1)
})
