import { sql, type Kysely, type RawBuilder } from 'kysely'
import { encodeTime } from 'ulid'
import type { Static } from '@sinclair/typebox'
import type { Database, OutboxStatus, WebhookDeliveryRow, WebhookRow } from '../database.ts'
import type { Delivery, Webhook as WebhookSchema } from '../../schemas/webhooks.ts'

/** The NOTIFY channel a committed delivery is announced on; the delivery workers listen to it. */
export const WEBHOOK_DELIVERIES_CHANNEL = 'tenantkey_webhook_deliveries'
export const MAX_WEBHOOKS_PER_ORG = 20
/** A delivery due for longer than this is overdue (/metrics): the workers are behind. */
export const OVERDUE_AFTER_MS = 60_000

/** A webhook as its routes answer it (never its secret). */
export type Webhook = Static<typeof WebhookSchema>

/** A delivery as the deliveries routes answer it. */
export type WebhookDelivery = Static<typeof Delivery>

function iso (value: Date | null): string | null {
  return value === null ? null : value.toISOString()
}

export function toWebhook (row: Pick<WebhookRow, 'id' | 'url' | 'events' | 'description' | 'is_active' | 'created_at'>): Webhook {
  return { id: row.id, url: row.url, events: row.events, description: row.description, isActive: row.is_active, createdAt: row.created_at.toISOString() }
}

export function toDelivery (row: WebhookDeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    webhookId: row.webhook_id,
    eventId: row.event_id,
    event: row.event_type,
    status: row.status,
    attempts: row.attempts,
    lastAttemptAt: iso(row.last_attempt_at),
    nextAttemptAt: row.status === 'pending' ? row.next_attempt_at.toISOString() : null,
    lastResponseStatus: row.last_response_status,
    lastError: row.last_error,
    createdAt: row.created_at.toISOString()
  }
}

/**
 * Whether an active webhook of the event's org subscribes to its type: what eventDeliveriesInsert
 * would write deliveries for. A read of the org's few webhooks, asked in the event's own statement,
 * so the insert of deliveries (and its locks on webhook_deliveries and its indexes) runs only for
 * an org that has such a webhook.
 */
export function eventHasSubscribers (event: { type: string, orgId: string }): RawBuilder<boolean> {
  return sql<boolean>`exists (select 1 from webhooks w where w.org_id = ${event.orgId} and w.is_active and (${event.type}::text = any(w.events) or '*' = any(w.events)))`
}

/**
 * The deliveries of a just-recorded event, as the body of a statement of the event's transaction
 * with a CTE `event` that answers the event's created_at: one per active webhook of its org
 * subscribed to its type, in the event's transaction (an outbox), announced to the workers when it
 * commits (one NOTIFY per transaction: PostgreSQL folds identical ones).
 *
 * Delivery ids are made here, not in JavaScript, since the number of subscribers is not known: the
 * ULID time of the event's id, and 16 Crockford characters (hex digits are a subset) of md5(event
 * id, webhook id) — time-sortable, and the same pair always gives the same id. The body is the
 * event's JSON with the org's slug and the event's time spliced in by SQL.
 */
export function eventDeliveriesInsert (event: { id: string, type: string, orgId: string, actor: unknown, data: unknown }): RawBuilder<unknown> {
  const time = event.id.slice(event.id.indexOf('_') + 1, event.id.indexOf('_') + 11)
  const head = `{"id":${JSON.stringify(event.id)},"event":${JSON.stringify(event.type)},"orgId":${JSON.stringify(event.orgId)},"orgSlug":`
  const tail = `,"actor":${JSON.stringify(event.actor)},"data":${JSON.stringify(event.data)}}`
  return sql`
    insert into webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload)
    select 'del_' || ${time}::text || upper(substr(md5(${event.id}::text || w.id), 1, 16)),
           w.id, w.org_id, ${event.id}, ${event.type},
           ${head}::text || to_json(o.slug)::text || ',"timestamp":' ||
             to_json(to_char(e.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text || ${tail}::text
    from webhooks w join organizations o on o.id = w.org_id cross join event e
    where w.org_id = ${event.orgId} and w.is_active and (${event.type}::text = any(w.events) or '*' = any(w.events))
    returning pg_notify(${WEBHOOK_DELIVERIES_CHANNEL}, '')`
}

/** The org row, locked until the transaction ends: creations of one org's webhooks take turns, so the cap holds. */
export async function countWebhooksLocked (trx: Kysely<Database>, orgId: string): Promise<number> {
  await trx.selectFrom('organizations').select('id').where('id', '=', orgId).forUpdate().execute()
  const { count } = await trx.selectFrom('webhooks').select(eb => eb.fn.countAll<string>().as('count')).where('org_id', '=', orgId).executeTakeFirstOrThrow()
  return Number(count)
}

export async function insertWebhook (trx: Kysely<Database>, row: { id: string, orgId: string, url: string, events: string[], description: string | null, secretCiphertext: string }): Promise<Webhook> {
  const inserted = await trx.insertInto('webhooks').values({
    id: row.id, org_id: row.orgId, url: row.url, events: row.events, description: row.description, secret_ciphertext: row.secretCiphertext
  }).returningAll().executeTakeFirstOrThrow()
  return toWebhook(inserted)
}

export async function listWebhooks (db: Kysely<Database>, orgId: string): Promise<Webhook[]> {
  const rows = await db.selectFrom('webhooks').select(['id', 'url', 'events', 'description', 'is_active', 'created_at'])
    .where('org_id', '=', orgId).orderBy('id', 'desc').execute()
  return rows.map(toWebhook)
}

export async function findWebhook (db: Kysely<Database>, orgId: string, webhookId: string): Promise<Webhook | undefined> {
  const row = await db.selectFrom('webhooks').select(['id', 'url', 'events', 'description', 'is_active', 'created_at'])
    .where('org_id', '=', orgId).where('id', '=', webhookId).executeTakeFirst()
  return row === undefined ? undefined : toWebhook(row)
}

export async function updateWebhook (trx: Kysely<Database>, orgId: string, webhookId: string, changes: { url?: string, events?: string[], description?: string | null, isActive?: boolean }): Promise<Webhook | undefined> {
  const row = await trx.updateTable('webhooks').set({
    ...(changes.url !== undefined && { url: changes.url }),
    ...(changes.events !== undefined && { events: changes.events }),
    ...(changes.description !== undefined && { description: changes.description }),
    ...(changes.isActive !== undefined && { is_active: changes.isActive }),
    updated_at: sql`now()`
  }).where('org_id', '=', orgId).where('id', '=', webhookId).returningAll().executeTakeFirst()
  return row === undefined ? undefined : toWebhook(row)
}

/** The new secret signs from now on; the current one keeps signing beside it until previousExpiresAt. */
export async function rotateWebhookSecret (trx: Kysely<Database>, orgId: string, webhookId: string, seal: (secret: string) => string, open: (sealed: string) => string, newSecret: string, previousExpiresAt: Date): Promise<Webhook | undefined> {
  const current = await trx.selectFrom('webhooks').select('secret_ciphertext')
    .where('org_id', '=', orgId).where('id', '=', webhookId).forUpdate().executeTakeFirst()
  if (current === undefined) return undefined
  // Re-sealed so the ciphertext is not copied as it was (same key, fresh IV).
  const previous = seal(open(current.secret_ciphertext))
  const row = await trx.updateTable('webhooks').set({
    secret_ciphertext: seal(newSecret),
    previous_secret_ciphertext: previous,
    previous_secret_expires_at: previousExpiresAt,
    updated_at: sql`now()`
  }).where('id', '=', webhookId).returningAll().executeTakeFirstOrThrow()
  return toWebhook(row)
}

export async function deleteWebhook (trx: Kysely<Database>, orgId: string, webhookId: string): Promise<Webhook | undefined> {
  // Its deliveries go with it (on delete cascade): pending ones are never attempted again.
  const row = await trx.deleteFrom('webhooks').where('org_id', '=', orgId).where('id', '=', webhookId).returningAll().executeTakeFirst()
  return row === undefined ? undefined : toWebhook(row)
}

/**
 * Pending deliveries of the webhook fail at once (it was deactivated): an attempt in flight is not
 * recorded (the worker completes only rows still pending), except `exceptId`, the delivery whose
 * own attempt caused it.
 */
export async function failPendingDeliveries (trx: Kysely<Database>, webhookId: string, reason: string, exceptId: string | null = null): Promise<number> {
  let update = trx.updateTable('webhook_deliveries').set({ status: 'failed', last_error: reason })
    .where('webhook_id', '=', webhookId).where('status', '=', 'pending')
  if (exceptId !== null) update = update.where('id', '<>', exceptId)
  const result = await update.executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** What an attempt needs of each webhook of a claimed batch: one query for the batch. */
export type WebhookTarget = Pick<WebhookRow, 'id' | 'org_id' | 'url' | 'is_active' | 'secret_ciphertext' | 'previous_secret_ciphertext' | 'previous_secret_expires_at'>

export async function findWebhookTargets (db: Kysely<Database>, webhookIds: string[]): Promise<Map<string, WebhookTarget>> {
  if (webhookIds.length === 0) return new Map()
  const rows = await db.selectFrom('webhooks')
    .select(['id', 'org_id', 'url', 'is_active', 'secret_ciphertext', 'previous_secret_ciphertext', 'previous_secret_expires_at'])
    .where('id', 'in', [...new Set(webhookIds)]).execute()
  return new Map(rows.map(row => [row.id, row]))
}

export async function insertDelivery (trx: Kysely<Database>, row: { id: string, webhookId: string, orgId: string, eventId: string, eventType: WebhookDeliveryRow['event_type'], payload: string }): Promise<WebhookDelivery> {
  const inserted = await trx.insertInto('webhook_deliveries').values({
    id: row.id,
    webhook_id: row.webhookId,
    org_id: row.orgId,
    event_id: row.eventId,
    event_type: row.eventType,
    payload: row.payload
  }).returningAll().executeTakeFirstOrThrow()
  await notifyDeliveries(trx)
  return toDelivery(inserted)
}

/** Wakes the delivery workers of every instance when the transaction commits. */
export async function notifyDeliveries (trx: Kysely<Database>): Promise<void> {
  await sql`select pg_notify(${WEBHOOK_DELIVERIES_CHANNEL}, '')`.execute(trx)
}

/** Newest first; `cursor` is the id of the last delivery of the previous page. */
export async function listDeliveries (db: Kysely<Database>, query: { orgId: string, webhookId: string, status?: OutboxStatus, limit: number, cursor?: string }): Promise<{ deliveries: WebhookDelivery[], nextCursor: string | null }> {
  let select = db.selectFrom('webhook_deliveries').selectAll()
    .where('org_id', '=', query.orgId).where('webhook_id', '=', query.webhookId)
  if (query.status !== undefined) select = select.where('status', '=', query.status)
  if (query.cursor !== undefined) select = select.where('id', '<', query.cursor)
  const rows = await select.orderBy('id', 'desc').limit(query.limit + 1).execute()
  const page = rows.slice(0, query.limit)
  return { deliveries: page.map(toDelivery), nextCursor: rows.length > query.limit ? page[page.length - 1].id : null }
}

export async function findDelivery (db: Kysely<Database>, orgId: string, webhookId: string, deliveryId: string): Promise<WebhookDeliveryRow | undefined> {
  return await db.selectFrom('webhook_deliveries').selectAll()
    .where('org_id', '=', orgId).where('webhook_id', '=', webhookId).where('id', '=', deliveryId).executeTakeFirst()
}

/**
 * One more attempt now, same delivery: a pending delivery's next attempt is brought forward; a
 * finished one becomes pending with room for exactly one more attempt. 'in_flight' when an
 * attempt holds it right now.
 */
export async function retryDelivery (trx: Kysely<Database>, orgId: string, webhookId: string, deliveryId: string): Promise<WebhookDelivery | 'missing' | 'in_flight'> {
  const row = await trx.selectFrom('webhook_deliveries').select(['id', sql<boolean>`lease_id is not null and leased_until > now()`.as('leased')])
    .where('org_id', '=', orgId).where('webhook_id', '=', webhookId).where('id', '=', deliveryId).forUpdate().executeTakeFirst()
  if (row === undefined) return 'missing'
  if (row.leased) return 'in_flight'
  const updated = await trx.updateTable('webhook_deliveries').set({
    attempt_limit: sql`case when status = 'pending' then attempt_limit else attempts + 1 end`,
    status: 'pending',
    next_attempt_at: sql`now()`
  }).where('id', '=', deliveryId).returningAll().executeTakeFirstOrThrow()
  await notifyDeliveries(trx)
  return toDelivery(updated)
}

/**
 * Deletes up to `limit` deliveries created before `before` (retention). Delivery ids begin with
 * their creation time (ULID), so the primary key finds them: no index on created_at to keep up.
 */
export async function deleteDeliveriesBefore (trx: Kysely<Database>, before: Date, limit: number): Promise<number> {
  const bound = `del_${encodeTime(before.getTime(), 10)}`
  const result = await trx.deleteFrom('webhook_deliveries')
    .where('id', 'in', eb => eb.selectFrom('webhook_deliveries').select('id').where('id', '<', bound).orderBy('id').limit(limit))
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

/** Pending deliveries due now, and those due for over OVERDUE_AFTER_MS (the partial index on next_attempt_at finds them). */
export async function countDueDeliveries (db: Kysely<Database>): Promise<{ due: number, overdue: number }> {
  const { rows } = await sql<{ due: number, overdue: number }>`
    select count(*)::int as due,
           count(*) filter (where next_attempt_at <= now() - ${OVERDUE_AFTER_MS} * interval '1 millisecond')::int as overdue
    from webhook_deliveries where status = 'pending' and next_attempt_at <= now()`.execute(db)
  return rows[0] ?? { due: 0, overdue: 0 }
}
