import { Type } from '@sinclair/typebox'
import { Id, NullableString, NullableTimestamp, OrgSlugHeader, StringEnum, Success, Timestamp, errorResponse, errors, withSuccessExample, type ErrorExample } from './common.ts'
import { EVENT_TYPES } from '../db/queries/events.ts'

const tags = ['Webhooks']
const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]
const headers = Type.Object({ 'x-org-slug': OrgSlugHeader })
const webhookParams = Type.Object({ webhookId: Id('wh', 'Webhook id') })
const deliveryParams = Type.Object({ webhookId: Id('wh', 'Webhook id'), deliveryId: Id('del', 'Delivery id') })

export const MAX_DELIVERY_PAGE = 200
export const DEFAULT_DELIVERY_PAGE = 50
/** The event type of a test delivery: delivered, never recorded (§10). */
export const TEST_EVENT = 'webhook.test'

const EXAMPLE_SECRET = 'whs_3f9a0c1e5b7d2468ace013579bdf2468ace013579bdf2468ace013579bdf2468'
const EXAMPLE_STANDARD_SECRET = `whsec_${Buffer.from(EXAMPLE_SECRET).toString('base64')}`
const EXAMPLE_WEBHOOK = {
  id: 'wh_01JZ8Q4K7X3W5N2M9B6V1C0D8E',
  url: 'https://api.acme.test/hooks/tenantkey',
  events: ['member.removed', 'api_key.revoked'],
  description: 'Revoke sessions in our backend',
  isActive: true,
  createdAt: '2025-05-23T12:00:00.000Z'
}
const EXAMPLE_DELIVERY = {
  id: 'del_01JZ8Q4K7XA3F09C2B7E4D1F60',
  webhookId: EXAMPLE_WEBHOOK.id,
  eventId: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D93',
  event: 'member.removed',
  status: 'failed',
  attempts: 4,
  lastAttemptAt: '2025-05-23T12:36:01.250Z',
  nextAttemptAt: null,
  lastResponseStatus: 503,
  lastError: 'HTTP 503: upstream unavailable',
  createdAt: '2025-05-23T12:00:00.000Z'
}

const EventList = Type.Array(Type.String({ maxLength: 64, description: 'An event type of §10, or "*"' }), {
  minItems: 1,
  maxItems: 32,
  description: `The event types delivered to this endpoint: a non-empty list of ${EVENT_TYPES.join(', ')}; or ["*"] for all of them ` +
    '(also types added later). An unknown type is refused (400).',
  examples: [['member.removed', 'api_key.revoked'], ['*']]
})
const Url = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: 'Where events are POSTed: an `https://` URL without credentials whose host is, and resolves only to, public ' +
    'addresses (no loopback, private, link-local, carrier-grade NAT, multicast, unspecified, reserved or other non-public range, ' +
    'IPv4 or IPv6, IPv4-mapped included). Checked now and again before every attempt. `WEBHOOK_ALLOW_PRIVATE=true` (development, ' +
    'tests) also allows `http://` and any address.',
  examples: [EXAMPLE_WEBHOOK.url]
})
const Description = Type.String({ maxLength: 500, description: 'A note for people (at most 500 characters)', examples: [EXAMPLE_WEBHOOK.description] })

export const Webhook = Type.Object({
  id: Id('wh', 'Webhook id'),
  url: Type.String({ description: 'The endpoint events are POSTed to', examples: [EXAMPLE_WEBHOOK.url] }),
  events: Type.Array(Type.String(), { description: 'The event types it receives, or ["*"] for all', examples: [EXAMPLE_WEBHOOK.events] }),
  description: NullableString(Type.String(), { description: 'A note for people, or null', examples: [EXAMPLE_WEBHOOK.description] }),
  isActive: Type.Boolean({ description: 'Whether events are delivered to it; false after PATCH isActive false or when the endpoint answered 410 Gone' }),
  createdAt: Timestamp
}, { description: 'A webhook endpoint (never its secret)' })

export const Delivery = Type.Object({
  id: Id('del', 'Delivery id: also the `X-Delivery-Id` and `webhook-id` headers, the same on every attempt; receivers de-duplicate on it'),
  webhookId: Id('wh', 'Webhook id'),
  eventId: Id('evt', 'The event delivered (a test event is in no audit log)'),
  event: StringEnum([...EVENT_TYPES, TEST_EVENT], { description: 'The event type' }),
  status: StringEnum(['pending', 'succeeded', 'failed'], { description: '`pending` while attempts remain, `succeeded` after a 2xx, `failed` after the last attempt (or a 410, or the webhook deactivated)' }),
  attempts: Type.Integer({ minimum: 0, description: 'Attempts made (an attempt lost with a dead instance is not counted)' }),
  lastAttemptAt: NullableTimestamp,
  nextAttemptAt: NullableString(Timestamp, { description: 'When the next attempt is due while pending; null once finished', examples: [null] }),
  lastResponseStatus: Type.Unsafe<number | null>({ type: ['integer', 'null'], description: 'The HTTP status of the last answer, or null (none yet, timeout, network error)', examples: [503] }),
  lastError: NullableString(Type.String(), { description: 'Why the last attempt failed (with a short excerpt of the answer), or null', examples: ['HTTP 503: upstream unavailable'] }),
  createdAt: Timestamp
}, { description: 'A delivery of one event to one webhook, with its attempts' })

const SecretPair = {
  secret: Type.String({
    pattern: '^whs_[0-9a-f]{64}$',
    description: 'The signing secret, shown in this answer only (stored encrypted, never returned again). The HMAC-SHA256 key of both ' +
      'signatures is the UTF-8 bytes of this whole string: `X-Webhook-Signature: sha256=<hex HMAC(secret, raw body)>`.',
    examples: [EXAMPLE_SECRET]
  }),
  standardWebhooksSecret: Type.String({
    pattern: '^whsec_[A-Za-z0-9+/=]+$',
    description: 'The same secret in the form the Standard Webhooks libraries take (`whsec_` + base64 of its bytes): ' +
      '`new Webhook(standardWebhooksSecret).verify(body, headers)` checks `webhook-signature`.',
    examples: [EXAMPLE_STANDARD_SECRET]
  })
}

const roleNote = ' Requires an active `org_admin` of `X-Org-Slug` (401 without a valid access token, 403 otherwise).'
const missingSlug: ErrorExample = ['Missing X-Org-Slug header', 'validation_failed']
const unknownOrg: ErrorExample = ['Organization not found', 'not_found']
const noWebhook: ErrorExample = ['Webhook not found', 'not_found']
const badWebhookId: ErrorExample = ['params.webhookId must match pattern "^wh_[0-9A-HJKMNP-TV-Z]{26}$"', 'validation_failed']
const badUrl: ErrorExample = ['body.url must not point to a non-public address: 10.0.0.7 is private', 'validation_failed']
const badEvents: ErrorExample = ['body.events: unknown event type "member.deleted"', 'validation_failed']
const inactive: ErrorExample = ['Webhook is inactive: set isActive to true first', 'conflict']
const guardErrors = {
  ...errorResponse(401, ['Invalid or expired access token', 'unauthorized'],
    ['Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie', 'unauthorized']),
  ...errorResponse(403, ['This action requires the org_admin role', 'forbidden'],
    ['Your membership in this organization is not active', 'forbidden'], ['Organization is suspended', 'org_suspended']),
  ...errors(503)
}

const requestNote = '\n\n**What is sent.** `POST <url>` with the JSON body `{ "id": "evt_…", "event": "<type>", "orgId", "orgSlug", ' +
  '"timestamp": "<event createdAt>", "actor", "data" }` and the headers `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, raw ' +
  'body)>`, `X-Webhook-Event`, `X-Delivery-Id` (AuthWorx) and `webhook-id` (= `X-Delivery-Id`), `webhook-timestamp` (Unix seconds ' +
  'of the attempt), `webhook-signature: v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>` (Standard ' +
  'Webhooks; one space-separated entry per live secret). A 2xx within `WEBHOOK_TIMEOUT` (default 10 s) succeeds; redirects are ' +
  'not followed; anything else is retried after the delays of `WEBHOOK_RETRY_SCHEDULE` (default `0,1m,5m,30m`), then the ' +
  'delivery is `failed`. A `410 Gone` deactivates the webhook and fails its pending deliveries. Delivery is at least once and ' +
  'unordered: de-duplicate on `webhook-id`.'

export const createWebhook = {
  tags,
  security,
  operationId: 'createWebhook',
  summary: 'Subscribe an endpoint to events',
  description: 'Creates a webhook and answers its signing secret, in both forms, **in this answer only**. At most 20 webhooks ' +
    'per organization (409). Its URL is checked now (400 naming `url` when refused). From the commit on, every event of its ' +
    'types is delivered to it. Recorded as `webhook.created` (`{ webhook }`, never the secret).' + roleNote + requestNote,
  headers,
  body: Type.Object({
    url: Url,
    events: EventList,
    description: Type.Optional(Description)
  }, { additionalProperties: false, examples: [{ url: EXAMPLE_WEBHOOK.url, events: EXAMPLE_WEBHOOK.events, description: EXAMPLE_WEBHOOK.description }] }),
  response: {
    201: withSuccessExample(Success(Type.Object({ ...SecretPair, webhook: Webhook }), 'Webhook created; the secrets are shown this once'),
      { secret: EXAMPLE_SECRET, standardWebhooksSecret: EXAMPLE_STANDARD_SECRET, webhook: EXAMPLE_WEBHOOK }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badUrl, ['body.url must be an https:// URL', 'validation_failed'], badEvents),
    ...errorResponse(404, unknownOrg),
    ...errorResponse(409, ['At most 20 webhooks per organization: delete one first', 'conflict']),
    ...errors(413, 415)
  }
}

export const listWebhooks = {
  tags,
  security,
  operationId: 'listWebhooks',
  summary: 'List webhooks',
  description: 'The organization\'s webhooks, newest first (never a secret).' + roleNote,
  headers,
  response: {
    200: withSuccessExample(Success(Type.Object({ webhooks: Type.Array(Webhook) }), 'The webhooks'), { webhooks: [EXAMPLE_WEBHOOK] }),
    ...guardErrors,
    ...errorResponse(400, missingSlug),
    ...errorResponse(404, unknownOrg)
  }
}

export const getWebhook = {
  tags,
  security,
  operationId: 'getWebhook',
  summary: 'Get a webhook',
  description: 'One webhook (never its secret); another organization\'s is 404.' + roleNote,
  headers,
  params: webhookParams,
  response: {
    200: withSuccessExample(Success(Type.Object({ webhook: Webhook }), 'The webhook'), { webhook: EXAMPLE_WEBHOOK }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId),
    ...errorResponse(404, noWebhook, unknownOrg)
  }
}

export const updateWebhook = {
  tags,
  security,
  operationId: 'updateWebhook',
  summary: 'Change a webhook',
  description: 'Changes any of `url` (checked as on creation), `events`, `description` (null clears it) and `isActive`. ' +
    'Deactivating fails its pending deliveries (nothing more is sent to it); reactivating delivers the events from then on. ' +
    'Recorded as `webhook.updated` (`{ webhook }`).' + roleNote,
  headers,
  params: webhookParams,
  body: Type.Object({
    url: Type.Optional(Url),
    events: Type.Optional(EventList),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    isActive: Type.Optional(Type.Boolean({ description: 'false: stop delivering to it' }))
  }, { additionalProperties: false, minProperties: 1, examples: [{ isActive: false }, { events: ['*'] }] }),
  response: {
    200: withSuccessExample(Success(Type.Object({ webhook: Webhook }), 'The changed webhook'), { webhook: EXAMPLE_WEBHOOK }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId, badUrl, badEvents, ['body must NOT have fewer than 1 properties', 'validation_failed']),
    ...errorResponse(404, noWebhook, unknownOrg),
    ...errors(413, 415)
  }
}

export const deleteWebhook = {
  tags,
  security,
  operationId: 'deleteWebhook',
  summary: 'Delete a webhook',
  description: 'Deletes the webhook with its delivery log; its pending deliveries are cancelled (an attempt in flight is not ' +
    'recorded). Recorded as `webhook.deleted` (`{ webhook }`).' + roleNote,
  headers,
  params: webhookParams,
  response: {
    200: withSuccessExample(Success(Type.Object({ message: Type.String({ description: 'Always "Webhook deleted"', examples: ['Webhook deleted'] }) }), 'Webhook deleted'), { message: 'Webhook deleted' }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId),
    ...errorResponse(404, noWebhook, unknownOrg)
  }
}

export const testWebhook = {
  tags,
  security,
  operationId: 'testWebhook',
  summary: 'Send a test event',
  description: 'Queues a `webhook.test` event (`data: { message }`, actor: you) for this endpoint only, delivered, signed and ' +
    'retried like any other (answered before it is sent: follow it in the delivery log). It is in no audit log. 409 when the ' +
    'webhook is inactive.' + roleNote,
  headers,
  params: webhookParams,
  response: {
    202: withSuccessExample(Success(Type.Object({ delivery: Delivery }), 'Test delivery queued'),
      { delivery: { ...EXAMPLE_DELIVERY, event: TEST_EVENT, status: 'pending', attempts: 0, lastAttemptAt: null, nextAttemptAt: '2025-05-23T12:00:00.000Z', lastResponseStatus: null, lastError: null } }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId),
    ...errorResponse(404, noWebhook, unknownOrg),
    ...errorResponse(409, inactive)
  }
}

export const rotateWebhookSecret = {
  tags,
  security,
  operationId: 'rotateWebhookSecret',
  summary: 'Rotate the signing secret',
  description: 'Makes a new secret, answered in both forms in this answer only. For the next 24 hours every delivery carries a ' +
    '`webhook-signature` entry for each of the two secrets, while `X-Webhook-Signature` uses the new one; then the old one stops. ' +
    'A second rotation within the 24 hours ends the first old secret at once. Recorded as `webhook.updated` (`{ webhook }`, never ' +
    'a secret).' + roleNote,
  headers,
  params: webhookParams,
  response: {
    200: withSuccessExample(Success(Type.Object(SecretPair), 'The new secret, shown this once'), { secret: EXAMPLE_SECRET, standardWebhooksSecret: EXAMPLE_STANDARD_SECRET }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId),
    ...errorResponse(404, noWebhook, unknownOrg)
  }
}

export const listDeliveries = {
  tags,
  security,
  operationId: 'listWebhookDeliveries',
  summary: 'The delivery log',
  description: 'The webhook\'s deliveries, newest first, optionally of one `status`; `limit` 1–200 (default 50). Pass `nextCursor` ' +
    'as `cursor` for the next page (null on the last); a page never skips nor repeats a delivery while new ones are written. ' +
    'Deliveries are kept 30 days.' + roleNote,
  headers,
  params: webhookParams,
  querystring: Type.Object({
    status: Type.Optional(StringEnum(['pending', 'succeeded', 'failed'], { description: 'Only deliveries in this status' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'Page size, 1–200 (default 50)', examples: ['50'] })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: '`nextCursor` of the previous page' }))
  }),
  response: {
    200: withSuccessExample(Success(Type.Object({
      deliveries: Type.Array(Delivery),
      nextCursor: NullableString(Type.String(), { description: 'Pass as `cursor` for the next page; null on the last page', examples: [null] })
    }), 'A page of deliveries'), { deliveries: [EXAMPLE_DELIVERY], nextCursor: null }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId, ['querystring.limit must be between 1 and 200', 'validation_failed'],
      ['querystring.cursor is not a cursor this API returned: pass nextCursor of the previous page', 'validation_failed']),
    ...errorResponse(404, noWebhook, unknownOrg)
  }
}

export const retryDelivery = {
  tags,
  security,
  operationId: 'retryWebhookDelivery',
  summary: 'Retry a delivery now',
  description: 'One more attempt now, with the same delivery id (so receivers still de-duplicate): a pending delivery\'s next ' +
    'attempt is brought forward; a succeeded or failed one becomes pending for exactly one more attempt. 409 while an attempt is ' +
    'in flight or when the webhook is inactive.' + roleNote,
  headers,
  params: deliveryParams,
  response: {
    202: withSuccessExample(Success(Type.Object({ delivery: Delivery }), 'Attempt queued'),
      { delivery: { ...EXAMPLE_DELIVERY, status: 'pending', nextAttemptAt: '2025-05-23T13:00:00.000Z' } }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, badWebhookId),
    ...errorResponse(404, ['Delivery not found', 'not_found'], noWebhook, unknownOrg),
    ...errorResponse(409, ['An attempt of this delivery is in flight: try again in a moment', 'conflict'], inactive)
  }
}
