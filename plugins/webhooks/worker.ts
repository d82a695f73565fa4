import type { Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../../src/config.ts'
import type { Database, WebhookDeliveryRow } from '../../db/database.ts'
import { backgroundDb, type DatabaseHandle } from '../../db/connect.ts'
import type { Metrics } from '../metrics.ts'
import { startOutboxWorker, type AttemptOutcome, type OutboxWorker } from '../../src/outbox-worker.ts'
import type { PeriodicJob } from '../../src/periodic-job.ts'
import { deleteDeliveriesBefore, failPendingDeliveries, findWebhookTargets, toWebhook, WEBHOOK_DELIVERIES_CHANNEL, type WebhookTarget } from '../../db/queries/webhooks.ts'
import { recordEvent, SYSTEM_ACTOR } from '../../db/queries/events.ts'
import { authworxSignature, standardSignature, webhookSealer } from './secrets.ts'
import { createSender, type WebhookNetwork } from './sender.ts'

export const DELIVERY_RETENTION_DAYS = 30
/** An idle worker looks for due deliveries this often; new ones wake it at once (LISTEN/NOTIFY). */
export const POLL_INTERVAL_MS = 5_000
export const BATCH_SIZE = 50
/** How long notifications are gathered before a claim (a few ms of lag for far fewer claims under load). */
const WAKE_GATHER_MS = 20
/** Attempts in flight per instance: a receiver that hangs until WEBHOOK_TIMEOUT holds one of these, not the queue. */
export const CONCURRENCY = 100
const USER_AGENT = 'tenantkey-webhooks/0.1 (+https://github.com/tenantkey/tenantkey)'

/**
 * The claim outlives any attempt (WEBHOOK_TIMEOUT bounds connect, answer and body) with room to
 * record it, so two instances never send one delivery at once; a dead instance's claims are
 * taken over when it ends (with the default 10 s timeout: 25 s, then at the next poll).
 */
export function leaseMs (timeoutMs: number): number {
  return 2 * timeoutMs + 5_000
}

/** Daily, in one instance at a time: deliveries older than 30 days go (the log keeps 30 days, §11). */
export const deliveryRetention: PeriodicJob = {
  name: 'webhook-delivery-retention',
  intervalMs: 3600_000,
  batchSize: 1000,
  async runBatch (trx) {
    return await deleteDeliveriesBefore(trx, new Date(Date.now() - DELIVERY_RETENTION_DAYS * 86400_000), 1000)
  }
}

export interface DeliveryWorker {
  start: () => Promise<void>
  stop: () => Promise<void>
  wake: () => void
  /** attempts what is due now (tests) */
  runNow: () => Promise<number>
}

/**
 * Loads the webhooks of the attempts started in one tick with one query: the outbox worker starts
 * a claimed batch's attempts together.
 */
function targetLoader (db: Kysely<Database>): (webhookId: string) => Promise<WebhookTarget | undefined> {
  type Waiter = { id: string, resolve: (target: WebhookTarget | undefined) => void, reject: (error: Error) => void }
  let queue: Waiter[] | null = null
  return id => new Promise((resolve, reject) => {
    if (queue === null) {
      const batch: Waiter[] = queue = []
      setImmediate(() => {
        queue = null
        findWebhookTargets(db, batch.map(waiter => waiter.id)).then(
          found => { for (const waiter of batch) waiter.resolve(found.get(waiter.id)) },
          error => { for (const waiter of batch) waiter.reject(error) })
      })
    }
    queue.push({ id, resolve, reject })
  })
}

export function createDeliveryWorker (input: {
  db: Kysely<Database>
  database: DatabaseHandle
  log: FastifyBaseLogger
  config: Config
  metrics: Metrics
  network?: WebhookNetwork
}): DeliveryWorker {
  const { database, log, config, metrics } = input
  const db = backgroundDb(input.db)
  const schedule = config.webhookRetryScheduleMs
  const sealer = webhookSealer(config.apiKeyPepper)
  const sender = createSender({ timeoutMs: config.webhookTimeoutMs, allowPrivate: config.webhookAllowPrivate, network: input.network })
  const loadTarget = targetLoader(db)
  let worker: OutboxWorker | null = null
  let unlisten: (() => Promise<void>) | null = null

  /** 410 Gone: the webhook is deactivated and its other pending deliveries fail, with its audit event. */
  async function deactivate (target: WebhookTarget, deliveryId: string): Promise<void> {
    await db.transaction().execute(async trx => {
      const row = await trx.updateTable('webhooks').set({ is_active: false }).where('id', '=', target.id).where('is_active', '=', true)
        .returningAll().executeTakeFirst()
      if (row === undefined) return
      await failPendingDeliveries(trx, target.id, 'the webhook was deactivated: its endpoint answered 410 Gone', deliveryId)
      await recordEvent(trx, { type: 'webhook.updated', orgId: row.org_id, actor: SYSTEM_ACTOR, target: { type: 'webhook', id: row.id }, data: { webhook: toWebhook(row) }, ip: null })
    })
    log.warn({ webhookId: target.id, deliveryId }, 'webhook deactivated: its endpoint answered 410 Gone')
  }

  async function attempt (row: WebhookDeliveryRow, signal: AbortSignal): Promise<AttemptOutcome> {
    const target = await loadTarget(row.webhook_id)
    if (target === undefined) return { done: false, final: true, error: 'the webhook was deleted' }
    if (!target.is_active) return { done: false, final: true, error: 'the webhook is inactive' }
    const lastAllowed = row.attempt_limit !== null && row.attempts + 1 >= row.attempt_limit
    const final = lastAllowed || schedule[row.attempts + 1] === undefined

    let secrets: string[]
    try {
      secrets = [sealer.open(target.id, target.secret_ciphertext)]
      if (target.previous_secret_ciphertext !== null && target.previous_secret_expires_at !== null && target.previous_secret_expires_at.getTime() > Date.now()) {
        secrets.push(sealer.open(target.id, target.previous_secret_ciphertext))
      }
    } catch {
      return { done: false, final: true, error: 'the signing secret does not open (API_KEY_PEPPER changed since it was made): rotate the secret' }
    }
    const timestamp = Math.floor(Date.now() / 1000)
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'x-webhook-signature': authworxSignature(secrets[0], row.payload),
      'x-webhook-event': row.event_type,
      'x-delivery-id': row.id,
      'webhook-id': row.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': standardSignature(secrets, row.id, timestamp, row.payload)
    }
    log.debug({ deliveryId: row.id, webhookId: target.id, attempt: row.attempts + 1 }, 'webhook attempt')
    const started = performance.now()
    const result = await sender.send({ url: target.url, headers, body: row.payload, signal })
    metrics.webhookAttempt(result.outcome, (performance.now() - started) / 1000)

    let outcome: AttemptOutcome
    switch (result.outcome) {
      case 'succeeded':
        outcome = { done: true, set: { last_response_status: result.status } }
        break
      case 'gone':
        await deactivate(target, row.id)
        outcome = { done: false, final: true, error: 'HTTP 410 Gone: the webhook was deactivated', set: { last_response_status: 410 } }
        break
      case 'http_error':
        outcome = { done: false, final, error: `HTTP ${result.status}${result.excerpt === '' ? '' : `: ${result.excerpt}`}`, set: { last_response_status: result.status } }
        break
      default:
        outcome = { done: false, final, error: result.error, set: { last_response_status: null } }
    }
    log.debug({ deliveryId: row.id, webhookId: target.id, outcome: result.outcome }, 'webhook attempt ended')
    if (outcome.done) metrics.webhookDelivery('succeeded')
    else if (outcome.final === true) metrics.webhookDelivery('failed')
    return outcome
  }

  return {
    async start () {
      worker ??= startOutboxWorker<WebhookDeliveryRow>({
        name: 'webhook deliveries',
        table: 'webhook_deliveries',
        db,
        log,
        retryScheduleMs: schedule,
        leaseMs: leaseMs(config.webhookTimeoutMs),
        pollIntervalMs: POLL_INTERVAL_MS,
        batchSize: BATCH_SIZE,
        concurrency: CONCURRENCY,
        attempt,
        // recordEvent writes deliveries due at once; the schedule's first delay counts from then.
        notBefore: row => row.attempts === 0 && (schedule[0] ?? 0) > 0 ? new Date(row.created_at.getTime() + (schedule[0] ?? 0)) : null
      })
      const running = worker
      try {
        // A burst of commits notifies once each: gathered for a moment, they are claimed together,
        // which matters on the embedded database, whose one connection the writers share.
        let gathering: NodeJS.Timeout | null = null
        unlisten = await database.listen(WEBHOOK_DELIVERIES_CHANNEL, () => {
          gathering ??= setTimeout(() => {
            gathering = null
            running.wake()
          }, WAKE_GATHER_MS)
        })
      } catch (error) {
        log.warn({ err: error }, 'webhook deliveries: cannot LISTEN; new deliveries wait for the next poll')
      }
    },
    async stop () {
      await unlisten?.().catch(() => {})
      unlisten = null
      await worker?.stop()
      worker = null
      await sender.close()
    },
    wake: () => worker?.wake(),
    runNow: async () => await worker?.runNow() ?? 0
  }
}
