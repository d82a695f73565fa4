import t from 'tap'
import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import * as publicSchemas from '../schemas/public.ts'
import * as orgSchemas from '../schemas/org.ts'
import { ErrorResponse } from '../schemas/common.ts'
import * as webhookSchemas from '../schemas/webhooks.ts'
import { wrapSuccess } from '../plugins/envelope.ts'
import type { ApiKeyRow, WebhookDeliveryRow, WebhookRow } from '../db/database.ts'
import { toApiKey, type ApiKey } from '../db/queries/api-keys.ts'
import { toDelivery, toWebhook, type Webhook, type WebhookDelivery } from '../db/queries/webhooks.ts'
import type { AuditEvent } from '../db/queries/events.ts'
import type { Invite } from '../db/queries/invites.ts'

// The response schemas reach the handlers' types: tsc (npm test's typecheck) refuses a handler whose
// return value the documented 200 does not describe. Each @ts-expect-error below is such a handler;
// were the types to stop flowing, the directive would be unused and tsc would fail on it.

t.test('a handler returns the data of its documented 200; the envelope wraps it', async t => {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(ErrorResponse)
  app.addHook('preSerialization', wrapSuccess)
  const org = { id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', slug: 'acme', name: 'Acme', plan: 'pro', status: 'active' as const, appUrl: null, createdAt: '2025-05-23T12:00:00.000Z' }
  app.get('/org', { schema: { response: publicSchemas.getOrg.response } }, async () => ({ org }))
  // @ts-expect-error the 200 of GET /public/org is `{ org }`, not an org
  app.get('/wrong-shape', { schema: { response: publicSchemas.getOrg.response } }, async () => org)
  // @ts-expect-error `valid` is a boolean literal, not a string
  app.post('/wrong-verify', { schema: { response: publicSchemas.verify.response } }, async () => ({ valid: 'no' }))
  // @ts-expect-error an org's status is active or suspended
  app.get('/wrong-enum', { schema: { response: orgSchemas.getOrg.response } }, async () => ({ org: { ...org, status: 'deleted' } }))

  const res = await app.inject({ method: 'GET', url: '/org' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'success', data: { org } })
  await app.close()
})

// The query functions' camelCase shapes are the static types of the schemas that document them
// (db/queries/*.ts: `type Webhook = Static<typeof WebhookSchema>`), so a row mapped wrongly is refused
// where it is mapped, not only at the handler. Each @ts-expect-error below is such a mapping.
const webhookRow: WebhookRow = {
  id: 'wh_01JZ8Q4K7X3W5N2M9B6V1C0D8E',
  org_id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E',
  url: 'https://api.acme.test/hooks',
  events: ['member.removed'],
  description: null,
  is_active: true,
  secret_ciphertext: 'sealed',
  previous_secret_ciphertext: null,
  previous_secret_expires_at: null,
  created_at: new Date('2025-05-23T12:00:00.000Z'),
  updated_at: new Date('2025-05-23T12:00:00.000Z')
}

export function wrongRowMappings (row: WebhookRow, delivery: WebhookDeliveryRow, key: ApiKeyRow): unknown[] {
  // @ts-expect-error createdAt is an ISO 8601 string in the contract, not the row's Date
  const webhook: Webhook = { id: row.id, url: row.url, events: row.events, description: row.description, isActive: row.is_active, createdAt: row.created_at }
  // @ts-expect-error the contract's field is isActive, not the column's is_active
  const snakeCase: Webhook = { id: row.id, url: row.url, events: row.events, description: row.description, is_active: row.is_active, createdAt: row.created_at.toISOString() }
  // @ts-expect-error a delivery's status is pending, succeeded or failed
  const status: WebhookDelivery = { ...toDelivery(delivery), status: 'delivering' }
  // @ts-expect-error a key created by a user names the user (§9: { type: "user", id })
  const createdBy: ApiKey = { ...toApiKey(key), createdBy: { type: 'user' } }
  // @ts-expect-error a key's scopes are the three of §9
  const scopes: ApiKey = { ...toApiKey(key), scopes: ['tokens:read'] }
  // @ts-expect-error an event's data is an object of fields, not a scalar
  const data: Pick<AuditEvent, 'data'> = { data: 'revoked' }
  // @ts-expect-error only pending invitations are shown
  const invite: Pick<Invite, 'status'> = { status: 'accepted' }
  return [webhook, snakeCase, status, createdBy, scopes, data, invite]
}

t.test('a query function\'s mapping is the documented shape: the handler returns it as is', async t => {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(ErrorResponse)
  app.addHook('preSerialization', wrapSuccess)
  app.get('/webhook', { schema: { response: webhookSchemas.getWebhook.response } }, async () => ({ webhook: toWebhook(webhookRow) }))
  const res = await app.inject({ method: 'GET', url: '/webhook' })
  t.equal(res.statusCode, 200)
  t.same(res.json().data.webhook, {
    id: webhookRow.id, url: webhookRow.url, events: webhookRow.events, description: null, isActive: true, createdAt: '2025-05-23T12:00:00.000Z'
  })
  await app.close()
})
