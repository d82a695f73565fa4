import { sql, type Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../db/database.ts'
import { backgroundDb } from '../db/connect.ts'

export interface PeriodicJob {
  /** a stable name: its hash is the advisory lock every instance competes for */
  name: string
  intervalMs: number
  /**
   * One small batch of work inside the lock's transaction; returns how many rows it handled.
   * Keep batches small (≤ 1,000 rows): the transaction holds its locks until the batch commits.
   */
  runBatch: (trx: Kysely<Database>) => Promise<number>
  /** a batch that handled this many rows or more is followed at once by another (default 1,000) */
  batchSize?: number
}

export interface PeriodicJobHandle {
  /** runs the job now until a batch handles fewer than batchSize rows (tests, shutdown) */
  runNow: () => Promise<number>
  stop: () => void
}

/**
 * Runs in every instance; the work happens under a transaction-scoped PostgreSQL advisory lock,
 * so one instance at a time does it and a crashed instance's lock goes with its connection.
 * An instance that does not get the lock skips the round. Requests never wait for it: the timer
 * is unref'd and the work is batched.
 */
export function startPeriodicJob (requestDb: Kysely<Database>, log: FastifyBaseLogger, job: PeriodicJob): PeriodicJobHandle {
  const db = backgroundDb(requestDb)
  const batchSize = job.batchSize ?? 1000
  let running: Promise<number> | null = null

  async function runBatches (): Promise<number> {
    let total = 0
    for (;;) {
      const handled = await db.transaction().execute(async trx => {
        const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtext(${`tenantkey:${job.name}`})) as locked`.execute(trx)
        if (rows[0]?.locked !== true) return null
        return await job.runBatch(trx)
      })
      if (handled === null) return total
      total += handled
      if (handled < batchSize) return total
    }
  }

  function runNow (): Promise<number> {
    running ??= runBatches().finally(() => { running = null })
    return running
  }

  const timer = setInterval(() => {
    runNow().catch(error => log.warn({ err: error, job: job.name }, 'periodic job failed; it runs again next interval'))
  }, job.intervalMs)
  timer.unref()
  return { runNow, stop: () => clearInterval(timer) }
}
