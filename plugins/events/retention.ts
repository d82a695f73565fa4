import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../../src/config.ts'
import { startPeriodicJob } from '../../src/periodic-job.ts'
import { deleteEventsBefore } from '../../db/queries/events.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** AUDIT_RETENTION_DAYS: prune deletes the events past it now (the job does it every hour) */
    auditRetention: { prune: () => Promise<number> }
  }
}

const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS
/** Small batches: each is one short transaction, so requests recording events never wait long behind it. */
export const AUDIT_RETENTION_BATCH = 1000

/** Deletes events older than AUDIT_RETENTION_DAYS, every hour, on one instance at a time (advisory lock). */
async function auditRetention (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const job = startPeriodicJob(app.db, app.log, {
    name: 'audit-retention',
    intervalMs: HOUR_MS,
    batchSize: AUDIT_RETENTION_BATCH,
    runBatch: trx => deleteEventsBefore(trx, new Date(Date.now() - config.auditRetentionDays * DAY_MS), AUDIT_RETENTION_BATCH)
  })
  app.decorate('auditRetention', { prune: job.runNow })
  app.addHook('onClose', async () => { job.stop() })
}

export default fp(auditRetention, { name: 'audit-retention', fastify: '5.x', dependencies: ['db'] })
