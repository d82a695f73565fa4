import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from '../../src/config.ts'
import * as schemas from '../../schemas/webhooks.ts'
import {
  countWebhooksLocked, deleteWebhook, failPendingDeliveries, findWebhook, insertDelivery, insertWebhook, listDeliveries,
  listWebhooks, MAX_WEBHOOKS_PER_ORG, retryDelivery, rotateWebhookSecret, updateWebhook, type Webhook
} from '../../db/queries/webhooks.ts'
import { EVENT_TYPES, recordEvent, userActor } from '../../db/queries/events.ts'
import { guardOrgAdminRoutes, guardedAuth } from '../auth-jwt.ts'
import { guardedOrg } from '../org-slug.ts'
import { startPeriodicJob, type PeriodicJobHandle } from '../../src/periodic-job.ts'
import { newId } from '../../src/ids.ts'
import { Conflict, NotFound, ValidationFailed } from '../../src/errors.ts'
import { checkWebhookUrl, RefusedUrl, systemResolver } from './ssrf.ts'
import { newWebhookSecret, standardWebhooksSecret, webhookSealer } from './secrets.ts'
import { createDeliveryWorker, deliveryRetention } from './worker.ts'
import type { WebhookNetwork } from './sender.ts'

export const SECRET_OVERLAP_MS = 24 * 3600_000
export const TEST_MESSAGE = 'This is a test event from tenantkey: your endpoint receives and verifies webhooks.'

const CATALOGUE = new Set<string>(EVENT_TYPES)

/** A non-empty list of catalogue types without repeats, or ["*"]. */
function checkEvents (events: string[]): string[] {
  const unique = [...new Set(events)]
  if (unique.includes('*')) {
    if (unique.length > 1) throw new ValidationFailed('body.events: "*" (every event) must be alone')
    return unique
  }
  const unknown = unique.find(type => !CATALOGUE.has(type))
  if (unknown !== undefined) throw new ValidationFailed(`body.events: unknown event type "${unknown.slice(0, 64)}"`)
  return unique
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

function checkDescription (description: string | null | undefined): void {
  // PostgreSQL text and jsonb (the audit event) hold neither U+0000 nor a lone surrogate.
  if (typeof description === 'string' && (LONE_SURROGATE.test(description) || description.includes('\u0000'))) {
    throw new ValidationFailed('body.description must be well-formed Unicode without U+0000')
  }
}

// The delivery log's cursor: the last delivery id of the previous page, made opaque. Ids are
// unique and time-sortable, so "ids below it" never skips nor repeats one.
const CURSOR = /^d\|(del_[0-9A-HJKMNP-TV-Z]{26})$/
function encodeDeliveryCursor (id: string): string {
  return Buffer.from(`d|${id}`).toString('base64url')
}
function decodeDeliveryCursor (cursor: string): string {
  const match = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('latin1'))
  if (match === null) throw new ValidationFailed('querystring.cursor is not a cursor this API returned: pass nextCursor of the previous page')
  return match[1]
}

/**
 * §11 webhooks: the routes under /org/webhooks (org_admin), and the delivery worker every
 * instance runs (also on the embedded database), woken by NOTIFY when deliveries commit.
 */
const webhooks: FastifyPluginAsyncTypebox<{ config: Config, network?: WebhookNetwork }> = async (app, { config, network }) => {
  const sealer = webhookSealer(config.apiKeyPepper)
  const resolve = network?.resolve ?? systemResolver
  const worker = createDeliveryWorker({ db: app.db, database: app.database, log: app.log.child({ component: 'webhook-deliveries' }), config, metrics: app.metrics, network })
  let retention: PeriodicJobHandle | null = null
  app.addHook('onReady', async () => {
    await worker.start()
    retention = startPeriodicJob(app.db, app.log, deliveryRetention)
  })
  app.addHook('onClose', async () => {
    retention?.stop()
    await worker.stop()
  })

  async function checkUrl (url: string): Promise<void> {
    try {
      await checkWebhookUrl(url, { allowPrivate: config.webhookAllowPrivate, resolve })
    } catch (error) {
      if (error instanceof RefusedUrl) throw new ValidationFailed(`body.url ${error.message}`)
      throw error
    }
  }

  function recordWebhook (trx: Parameters<typeof recordEvent>[0], type: 'webhook.created' | 'webhook.updated' | 'webhook.deleted', webhook: Webhook, request: FastifyRequest) {
    return recordEvent(trx, {
      type,
      orgId: guardedOrg(request).id,
      actor: userActor(guardedAuth(request).user),
      target: { type: 'webhook', id: webhook.id },
      data: { webhook },
      ip: request.ip
    })
  }

  const secrets = (secret: string) => ({ secret, standardWebhooksSecret: standardWebhooksSecret(secret) })

  await app.register(async function orgAdminRoutes (scope) {
    const admin = scope.withTypeProvider<TypeBoxTypeProvider>()
    guardOrgAdminRoutes(admin)

    admin.post('/webhooks', { schema: schemas.createWebhook }, async (request, reply) => {
      const org = guardedOrg(request)
      const events = checkEvents(request.body.events)
      checkDescription(request.body.description)
      await checkUrl(request.body.url)
      const id = newId('wh')
      const secret = newWebhookSecret()
      const webhook = await app.db.transaction().execute(async trx => {
        if (await countWebhooksLocked(trx, org.id) >= MAX_WEBHOOKS_PER_ORG) throw new Conflict(`At most ${MAX_WEBHOOKS_PER_ORG} webhooks per organization: delete one first`)
        const webhook = await insertWebhook(trx, { id, orgId: org.id, url: request.body.url, events, description: request.body.description ?? null, secretCiphertext: sealer.seal(id, secret) })
        await recordWebhook(trx, 'webhook.created', webhook, request)
        return webhook
      })
      request.log.info({ orgId: org.id, webhookId: id }, 'webhook created')
      return await reply.code(201).send({ ...secrets(secret), webhook })
    })

    admin.get('/webhooks', { schema: schemas.listWebhooks }, async (request) => {
      return { webhooks: await listWebhooks(app.db, guardedOrg(request).id) }
    })

    admin.get('/webhooks/:webhookId', { schema: schemas.getWebhook }, async (request) => {
      const webhook = await findWebhook(app.db, guardedOrg(request).id, request.params.webhookId)
      if (webhook === undefined) throw new NotFound('Webhook not found')
      return { webhook }
    })

    admin.patch('/webhooks/:webhookId', { schema: schemas.updateWebhook }, async (request) => {
      const org = guardedOrg(request)
      const { webhookId } = request.params
      const body = request.body
      const events = body.events === undefined ? undefined : checkEvents(body.events)
      checkDescription(body.description)
      if (body.url !== undefined) await checkUrl(body.url)
      const webhook = await app.db.transaction().execute(async trx => {
        const webhook = await updateWebhook(trx, org.id, webhookId, { url: body.url, events, description: body.description, isActive: body.isActive })
        if (webhook === undefined) throw new NotFound('Webhook not found')
        // Nothing more reaches an inactive endpoint, not even what was queued for it.
        if (body.isActive === false) await failPendingDeliveries(trx, webhookId, 'the webhook was deactivated')
        await recordWebhook(trx, 'webhook.updated', webhook, request)
        return webhook
      })
      request.log.info({ orgId: org.id, webhookId, changes: Object.keys(body) }, 'webhook updated')
      return { webhook }
    })

    admin.delete('/webhooks/:webhookId', { schema: schemas.deleteWebhook }, async (request) => {
      const org = guardedOrg(request)
      const { webhookId } = request.params
      await app.db.transaction().execute(async trx => {
        // Its deliveries go with it; the event is recorded after, so it is not delivered to it.
        const webhook = await deleteWebhook(trx, org.id, webhookId)
        if (webhook === undefined) throw new NotFound('Webhook not found')
        await recordWebhook(trx, 'webhook.deleted', webhook, request)
      })
      request.log.info({ orgId: org.id, webhookId }, 'webhook deleted')
      return { message: 'Webhook deleted' }
    })

    admin.post('/webhooks/:webhookId/test', { schema: schemas.testWebhook }, async (request, reply) => {
      const org = guardedOrg(request)
      const webhook = await findWebhook(app.db, org.id, request.params.webhookId)
      if (webhook === undefined) throw new NotFound('Webhook not found')
      if (!webhook.isActive) throw new Conflict('Webhook is inactive: set isActive to true first')
      const eventId = newId('evt')
      const payload = JSON.stringify({
        id: eventId,
        event: schemas.TEST_EVENT,
        orgId: org.id,
        orgSlug: org.slug,
        timestamp: new Date().toISOString(),
        actor: userActor(guardedAuth(request).user),
        data: { message: TEST_MESSAGE }
      })
      // Delivered, never recorded (§10): a delivery row without an audit event.
      const delivery = await app.db.transaction().execute(async trx =>
        await insertDelivery(trx, { id: newId('del'), webhookId: webhook.id, orgId: org.id, eventId, eventType: schemas.TEST_EVENT, payload }))
      request.log.info({ orgId: org.id, webhookId: webhook.id, deliveryId: delivery.id }, 'webhook test queued')
      return await reply.code(202).send({ delivery })
    })

    admin.post('/webhooks/:webhookId/rotate-secret', { schema: schemas.rotateWebhookSecret }, async (request) => {
      const org = guardedOrg(request)
      const { webhookId } = request.params
      const secret = newWebhookSecret()
      await app.db.transaction().execute(async trx => {
        const webhook = await rotateWebhookSecret(trx, org.id, webhookId, value => sealer.seal(webhookId, value), sealed => sealer.open(webhookId, sealed),
          secret, new Date(Date.now() + SECRET_OVERLAP_MS))
        if (webhook === undefined) throw new NotFound('Webhook not found')
        await recordWebhook(trx, 'webhook.updated', webhook, request)
      })
      request.log.info({ orgId: org.id, webhookId }, 'webhook secret rotated')
      return secrets(secret)
    })

    admin.get('/webhooks/:webhookId/deliveries', { schema: schemas.listDeliveries }, async (request) => {
      const org = guardedOrg(request)
      const { webhookId } = request.params
      const { status, cursor } = request.query
      const limit = request.query.limit === undefined ? schemas.DEFAULT_DELIVERY_PAGE : Number(request.query.limit)
      if (limit < 1 || limit > schemas.MAX_DELIVERY_PAGE) throw new ValidationFailed(`querystring.limit must be between 1 and ${schemas.MAX_DELIVERY_PAGE}`)
      const after = cursor === undefined ? undefined : decodeDeliveryCursor(cursor)
      if (await findWebhook(app.db, org.id, webhookId) === undefined) throw new NotFound('Webhook not found')
      const page = await listDeliveries(app.db, { orgId: org.id, webhookId, status, limit, cursor: after })
      return { deliveries: page.deliveries, nextCursor: page.nextCursor === null ? null : encodeDeliveryCursor(page.nextCursor) }
    })

    admin.post('/webhooks/:webhookId/deliveries/:deliveryId/retry', { schema: schemas.retryDelivery }, async (request, reply) => {
      const org = guardedOrg(request)
      const { webhookId, deliveryId } = request.params
      const webhook = await findWebhook(app.db, org.id, webhookId)
      if (webhook === undefined) throw new NotFound('Webhook not found')
      if (!webhook.isActive) throw new Conflict('Webhook is inactive: set isActive to true first')
      const result = await app.db.transaction().execute(async trx => await retryDelivery(trx, org.id, webhookId, deliveryId))
      if (result === 'missing') throw new NotFound('Delivery not found')
      if (result === 'in_flight') throw new Conflict('An attempt of this delivery is in flight: try again in a moment')
      request.log.info({ orgId: org.id, webhookId, deliveryId }, 'webhook delivery retried')
      return await reply.code(202).send({ delivery: result })
    })
  }, { prefix: '/org' })
}

export default webhooks
