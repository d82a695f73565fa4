import { randomUUID } from 'node:crypto'
import { sql, type Kysely, type RawBuilder } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import { backgroundDb } from '../db/connect.ts'

/**
 * Works off an outbox table: rows written in the transaction of a change (an invitation mail,
 * a webhook delivery), sent after it commits, retried on failure, by exactly one instance per
 * attempt. Every instance runs a worker; each claims due rows with FOR UPDATE SKIP LOCKED and
 * holds them under a lease, so two instances never attempt the same row at once and the rows
 * of an instance that dies mid-attempt are taken over when its lease ends.
 *
 * The table has these columns (plus its own):
 *   id               text primary key
 *   status           text: 'pending' while work remains; the worker writes 'succeeded' or 'failed'
 *   attempts         integer not null default 0: finished attempts (a lost one is not counted)
 *   next_attempt_at  timestamptz not null: when the next attempt is due (see firstAttemptAt)
 *   lease_id         text null, leased_until timestamptz null: the claim of the worker at it
 *   last_attempt_at  timestamptz null, last_error text null
 * and an index on (next_attempt_at) where status = 'pending'.
 *
 * A writer that cancels a pending row (status 'cancelled', say) wins over an attempt in flight:
 * the worker completes only rows that are still pending under its own lease.
 */

/** Column values the worker writes along with its own, in the same UPDATE. */
export type Columns = Record<string, unknown>

export type AttemptOutcome =
  /** done: status 'succeeded' unless `set` says otherwise (e.g. 'cancelled') */
  | { done: true, set?: Columns }
  /** the attempt failed: retried on the schedule, or 'failed' after the last attempt or when `final` */
  | { done: false, error: string, final?: boolean, set?: Columns }

export interface OutboxWorkerOptions<Row> {
  /** for log lines */
  name: string
  table: string
  db: Kysely<any>
  log: FastifyBaseLogger
  /**
   * The delay before each attempt: entry 0 before the first (the writer's, see firstAttemptAt),
   * entry n after the n-th failure. After as many failures as entries, the row is 'failed'.
   */
  retryScheduleMs: readonly number[]
  /** how long a claim lasts: longer than an attempt can take; an aborted or lost attempt is retried after it */
  leaseMs: number
  /** how often an idle worker looks for due rows written by other instances or retried later */
  pollIntervalMs: number
  /** rows claimed at once */
  batchSize?: number
  /**
   * attempts in flight at most (default batchSize). Rows are claimed as room frees up, so a slow
   * attempt (a receiver that answers only at its timeout) holds up one slot, not the next batch.
   */
  concurrency?: number
  /** one attempt; the signal aborts it when the worker stops. A throw counts as a failed attempt. */
  attempt: (row: Row, signal: AbortSignal) => Promise<AttemptOutcome>
  /** columns written when a row leaves 'pending' for good (e.g. erase a secret it held) */
  whenFinished?: Columns
  /**
   * The earliest a claimed row may be attempted, when later than its next_attempt_at (rows written
   * by a writer that does not know the schedule's first delay, such as recordEvent's webhook
   * deliveries); such a row is put back until then without counting an attempt.
   */
  notBefore?: (row: Row) => Date | null
}

export interface OutboxWorker {
  /** look for due rows now (call after committing a transaction that wrote one) */
  wake: () => void
  /** work until no row is due; resolves with how many attempts were made (tests, scripts) */
  runNow: () => Promise<number>
  /** stop polling, abort attempts in flight (their rows are released, the attempt not counted) and wait for them */
  stop: () => Promise<void>
}

/** The next_attempt_at of a new row: now, plus the schedule's first delay. */
export function firstAttemptAt (retryScheduleMs: readonly number[]): RawBuilder<Date> {
  return sql<Date>`now() + ${retryScheduleMs[0] ?? 0} * interval '1 millisecond'`
}

/** Column values that are plain (no SQL expression, no Date): rows finished with equal ones can share an UPDATE. */
function isPlain (values: Columns): boolean {
  return Object.values(values).every(value => value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
}

export function startOutboxWorker<Row extends { id: string }> (options: OutboxWorkerOptions<Row>): OutboxWorker {
  const { log, table, retryScheduleMs, leaseMs } = options
  const db = backgroundDb(options.db)
  const batchSize = options.batchSize ?? 10
  const concurrency = Math.max(1, options.concurrency ?? batchSize)
  const inFlight = new Set<Promise<void>>()
  const whenFinished = options.whenFinished ?? {}
  const stopping = new AbortController()
  let running: Promise<number> | null = null
  let again = false
  let retryTimer: NodeJS.Timeout | null = null
  let retryTimerAt = Infinity

  async function claim (limit: number): Promise<{ leaseId: string, rows: Row[] }> {
    const leaseId = randomUUID()
    // A CTE with FOR UPDATE runs once: exactly the rows it locked are leased.
    const { rows } = await sql<Row>`
      with due as (
        select id from ${sql.table(table)}
        where status = 'pending' and next_attempt_at <= now() and (leased_until is null or leased_until <= now())
        order by next_attempt_at
        limit ${limit}
        for update skip locked
      )
      update ${sql.table(table)} as t
      set lease_id = ${leaseId}, leased_until = now() + ${leaseMs} * interval '1 millisecond'
      from due where t.id = due.id
      returning t.*`.execute(db)
    return { leaseId, rows }
  }

  /** Completes an attempt; false when the row was no longer ours (lease lost, or cancelled meanwhile). */
  async function complete (row: Row & { attempts?: number }, leaseId: string, outcome: AttemptOutcome): Promise<boolean> {
    const attempts = Number(row.attempts ?? 0) + 1
    let retryAfter: number | null = null
    let values: Columns
    if (outcome.done) {
      values = { status: 'succeeded', last_error: null, ...whenFinished, ...outcome.set }
    } else {
      const delay = retryScheduleMs[attempts]
      const final = outcome.final === true || delay === undefined
      values = final
        ? { status: 'failed', last_error: outcome.error.slice(0, 1000), ...whenFinished, ...outcome.set }
        : { last_error: outcome.error.slice(0, 1000), next_attempt_at: sql`now() + ${delay} * interval '1 millisecond'`, ...outcome.set }
      if (!final) retryAfter = delay
    }
    let completed: boolean
    if (retryAfter === null && isPlain(values)) {
      completed = await completeInBatch(row.id, leaseId, values)
    } else {
      const result = await db.updateTable(table)
        .set({ ...values, attempts, last_attempt_at: sql`now()`, lease_id: null, leased_until: null })
        .where('id', '=', row.id).where('lease_id', '=', leaseId).where('status', '=', 'pending')
        .executeTakeFirst()
      completed = result.numUpdatedRows > 0n
    }
    // Timed from the commit, not before it: a timer started earlier could fire before the row is
    // due (the UPDATE's now() comes later), find nothing, and leave the retry to the next poll.
    if (completed && retryAfter !== null) retryIn(retryAfter)
    return completed
  }

  // Finished rows (sent, or failed for good) whose columns are plain values are completed together:
  // one UPDATE for every such row finished while the previous one ran, instead of one each. On
  // the embedded database, whose one connection the requests share, that is most of a delivery's
  // cost. Rows with the same values share a statement; each is still matched by its own lease.
  interface Finished { id: string, leaseId: string, resolve: (completed: boolean) => void, reject: (error: Error) => void }
  const finishedByValues = new Map<string, { values: Columns, rows: Finished[] }>()
  let flushQueued = false
  let flushing: Promise<void> = Promise.resolve()

  function completeInBatch (id: string, leaseId: string, values: Columns): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const key = JSON.stringify(values)
      let group = finishedByValues.get(key)
      if (group === undefined) {
        group = { values, rows: [] }
        finishedByValues.set(key, group)
      }
      group.rows.push({ id, leaseId, resolve, reject })
      if (flushQueued) return
      flushQueued = true
      const previous = flushing
      setImmediate(() => {
        flushing = previous.then(async () => {
          flushQueued = false
          const groups = [...finishedByValues.values()]
          finishedByValues.clear()
          for (const { values, rows } of groups) await completeGroup(values, rows)
        })
      })
    })
  }

  async function completeGroup (values: Columns, rows: Finished[]): Promise<void> {
    try {
      const claims = sql.join(rows.map(row => sql`(${row.id}, ${row.leaseId})`))
      const updated = await db.updateTable(table)
        .set({ ...values, attempts: sql`attempts + 1`, last_attempt_at: sql`now()`, lease_id: null, leased_until: null })
        .where(sql<boolean>`(id, lease_id) in (${claims})`).where('status', '=', 'pending')
        .returning('id').execute()
      const completed = new Set(updated.map(row => row.id as string))
      for (const row of rows) row.resolve(completed.has(row.id))
    } catch (error) {
      for (const row of rows) row.reject(error as Error)
    }
  }

  /** Gives a claimed row back without counting the attempt (the worker is stopping). */
  async function release (row: Row, leaseId: string): Promise<void> {
    await db.updateTable(table).set({ lease_id: null, leased_until: null })
      .where('id', '=', row.id).where('lease_id', '=', leaseId).execute()
  }

  async function postpone (row: Row, leaseId: string, until: Date): Promise<void> {
    await db.updateTable(table).set({ next_attempt_at: until, lease_id: null, leased_until: null })
      .where('id', '=', row.id).where('lease_id', '=', leaseId).execute()
    retryIn(until.getTime() - Date.now())
  }

  async function attemptOne (row: Row, leaseId: string): Promise<void> {
    const notBefore = options.notBefore?.(row) ?? null
    if (notBefore !== null && notBefore.getTime() > Date.now()) return await postpone(row, leaseId, notBefore)
    let outcome: AttemptOutcome
    try {
      outcome = await options.attempt(row, stopping.signal)
    } catch (error) {
      if (stopping.signal.aborted) return await release(row, leaseId)
      outcome = { done: false, error: (error as Error).message ?? String(error) }
    }
    const completed = await complete(row, leaseId, outcome)
    if (!completed) log.warn({ outbox: options.name, id: row.id }, 'outbox: row changed during its attempt (lease expired or cancelled); result not recorded')
    else if (!outcome.done) log.warn({ outbox: options.name, id: row.id, attempt: Number((row as { attempts?: number }).attempts ?? 0) + 1, error: outcome.error }, 'outbox: attempt failed')
  }

  /** Claims due rows while there is room, and starts their attempts; returns without waiting for them. */
  async function runBatches (): Promise<number> {
    let total = 0
    do {
      again = false
      while (!stopping.signal.aborted) {
        const room = concurrency - inFlight.size
        if (room <= 0) {
          await Promise.race(inFlight)
          continue
        }
        const wanted = Math.min(batchSize, room)
        const { leaseId, rows } = await claim(wanted)
        for (const row of rows) {
          const attempt: Promise<void> = attemptOne(row, leaseId)
            .catch(error => log.warn({ err: error, outbox: options.name, id: row.id }, 'outbox: could not record an attempt; the row is retried when its lease ends'))
            .finally(() => inFlight.delete(attempt))
          inFlight.add(attempt)
        }
        total += rows.length
        if (rows.length < wanted) break
      }
    } while (again && !stopping.signal.aborted)
    return total
  }

  function claimLoop (): Promise<number> {
    if (running !== null) {
      again = true
      return running
    }
    running = runBatches().finally(() => { running = null })
    return running
  }

  /** Claims what is due and waits for those attempts (and any already in flight). */
  async function runNow (): Promise<number> {
    const attempted = await claimLoop()
    await Promise.allSettled([...inFlight])
    return attempted
  }

  function runInBackground (): void {
    if (stopping.signal.aborted) return
    claimLoop().catch(error => log.warn({ err: error, outbox: options.name }, 'outbox: could not work off due rows; trying again at the next poll'))
  }

  // A retry due before the next poll gets a timer, so short schedules are kept. Every such time
  // is remembered (to 10 ms): one timer for the earliest, re-armed for the next when it fires, so a
  // row due a little later than another is not left to the poll.
  const retryTimes = new Set<number>()
  function retryIn (delayMs: number): void {
    if (delayMs >= options.pollIntervalMs || stopping.signal.aborted) return
    retryTimes.add(Math.ceil((Date.now() + Math.max(0, delayMs) + 10) / 10) * 10)
    armRetryTimer()
  }

  function armRetryTimer (): void {
    if (retryTimes.size === 0 || stopping.signal.aborted) return
    const at = Math.min(...retryTimes)
    if (retryTimer !== null && retryTimerAt <= at) return
    if (retryTimer !== null) clearTimeout(retryTimer)
    retryTimerAt = at
    retryTimer = setTimeout(() => {
      retryTimer = null
      retryTimerAt = Infinity
      const now = Date.now()
      for (const time of retryTimes) if (time <= now) retryTimes.delete(time)
      runInBackground()
      armRetryTimer()
    }, Math.max(0, at - Date.now()))
    retryTimer.unref()
  }

  const poll = setInterval(runInBackground, options.pollIntervalMs)
  poll.unref()
  setImmediate(runInBackground)

  return {
    wake: () => setImmediate(runInBackground),
    runNow,
    async stop () {
      clearInterval(poll)
      if (retryTimer !== null) clearTimeout(retryTimer)
      stopping.abort()
      await running?.catch(() => {})
      await Promise.allSettled([...inFlight])
    }
  }
}
