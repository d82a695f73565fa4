import { sql, type Compilable, type Kysely, type OperationNodeSource, type RawBuilder, type SelectQueryBuilder } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database } from '../database.ts'
import type { AuditEvent as AuditEventSchema } from '../../schemas/audit.ts'
import { newId } from '../../src/ids.ts'
import { eventDeliveriesInsert, eventHasSubscribers } from './webhooks.ts'
import { preparing } from '../prepared.ts'

/** The catalogue of §10: every change in it writes exactly one event, in the transaction of the change. */
export const EVENT_TYPES = [
  'org.updated',
  'member.invited', 'member.joined', 'member.updated', 'member.removed', 'invite.revoked',
  'user.login',
  'api_key.created', 'api_key.updated', 'api_key.revoked', 'api_key.rotated', 'api_key.leaked',
  'webhook.created', 'webhook.updated', 'webhook.deleted'
] as const
export type EventType = typeof EVENT_TYPES[number]

/**
 * Recorded beside the catalogue and listed by the audit routes, but never delivered by webhooks:
 * the platform operator's set-up of tenants (§3: every admin write is recorded), and security
 * bookkeeping an org admin may want to read (a session ended by refresh-token reuse) or that
 * belongs to no org (a password reset by the operator's CLI).
 */
export const INTERNAL_EVENT_TYPES = ['org.created', 'user.created', 'session.revoked', 'user.password_reset'] as const
export type InternalEventType = typeof INTERNAL_EVENT_TYPES[number]

/** Every type an event may have: the catalogue, then the internal types. */
export const ALL_EVENT_TYPES = [...EVENT_TYPES, ...INTERNAL_EVENT_TYPES] as const
export type AnyEventType = EventType | InternalEventType

const KNOWN_TYPES = new Set<string>(ALL_EVENT_TYPES)
export function isEventType (value: string): value is AnyEventType {
  return KNOWN_TYPES.has(value)
}

const CATALOGUE = new Set<string>(EVENT_TYPES)
/** Whether a type is in the catalogue of §10 (what webhooks may deliver), not an internal one. */
export function isCatalogueEvent (type: string): type is EventType {
  return CATALOGUE.has(type)
}

export type Actor =
  | { type: 'user', id: string, email: string }
  | { type: 'admin' | 'system', id: null, email: null }

export const ADMIN_ACTOR: Actor = { type: 'admin', id: null, email: null }
export const SYSTEM_ACTOR: Actor = { type: 'system', id: null, email: null }

export function userActor (user: { id: string, email: string }): Actor {
  return { type: 'user', id: user.id, email: user.email }
}

export interface NewEvent {
  type: AnyEventType
  /** null only for changes that belong to no org (a user's password reset by the operator) */
  orgId: string | null
  actor: Actor
  target: { type: string, id: string }
  /** exactly the data §10 lists for the type; never a secret (raw key, token, password, webhook secret, invite token) */
  data: Record<string, unknown>
  /** the client address of the request that caused it; null for the CLI and background jobs */
  ip: string | null
}

export interface Event extends NewEvent {
  id: string
  createdAt: string
}

/**
 * For `npm run bench:audit` alone, which measures what recording costs a write route by running the
 * route with and without it in one process. Nothing in the service sets it.
 */
export const benchOnly = { skipEventRecording: false }

/**
 * The one way to record an event. It takes the transaction of the change, so the change and its
 * event commit or roll back together: the audit log cannot disagree with the data.
 */
export async function recordEvent (trx: Kysely<Database>, event: NewEvent): Promise<Event> {
  if (!trx.isTransaction) throw new Error(`recordEvent(${event.type}) outside a transaction: the event must commit with its change`)
  if (benchOnly.skipEventRecording) return { ...event, id: newId('evt'), createdAt: new Date().toISOString() }
  const id = newId('evt')
  const subscribers = subscribersOf(event)
  const { rows } = await trx.executeQuery(preparing(sql<{ created_at: Date, tk_subscribed?: boolean }>`with ${insertEvent(id, event, null)}
    select created_at${subscribers === null ? sql`` : sql`, ${subscribers} as tk_subscribed`} from event`.compile(trx)))
  if (rows[0].tk_subscribed === true) await insertDeliveries(trx, id, event)
  return { ...event, id, createdAt: rows[0].created_at.toISOString() }
}

/**
 * A change and its event in one statement, for the busiest writes: recording then costs the route
 * no round trip of its own. `change` (an UPDATE, INSERT or DELETE … RETURNING) runs as a CTE, and
 * the event is written only when the change returned a row. The event cannot depend on what the
 * change returns: the caller knows it beforehand (the row it locked and what it sets). Answers the
 * change's rows. Both run as prepared statements (db/prepared.ts): their text depends on the code
 * path alone, and planning them cost more than running them.
 */
export async function changeWithEvent<Row> (trx: Kysely<Database>, change: Compilable<Row> & OperationNodeSource, event: NewEvent): Promise<Row[]> {
  if (!trx.isTransaction) throw new Error(`changeWithEvent(${event.type}) outside a transaction: the event must commit with its change`)
  // Without its event the change runs prepared too, as it would be: the A/B of bench:audit weighs the event alone.
  if (benchOnly.skipEventRecording) return (await trx.executeQuery(preparing(change.compile()))).rows
  const id = newId('evt')
  const subscribers = subscribersOf(event)
  if (subscribers === null) {
    return (await trx.executeQuery(preparing(sql<Row>`with change as (${change}), ${insertEvent(id, event, sql`exists (select 1 from change)`)} select * from change`.compile(trx)))).rows
  }
  const { rows } = await trx.executeQuery(preparing(sql<Row & { tk_subscribed: boolean }>`with change as (${change}), ${insertEvent(id, event, sql`exists (select 1 from change)`)}
    select *, ${subscribers} as tk_subscribed from change`.compile(trx)))
  if (rows.length === 0) return []
  if (rows[0].tk_subscribed) await insertDeliveries(trx, id, event)
  return rows.map(({ tk_subscribed: _, ...row }) => row as Row)
}

/** The CTE `event`: the event's row, returning id and created_at; only when `onlyIf` holds, if given. */
function insertEvent (id: string, event: NewEvent, onlyIf: RawBuilder<unknown> | null): RawBuilder<unknown> {
  return sql`event as (
    insert into audit_events (id, type, org_id, actor_type, actor_id, actor_email, target_type, target_id, data, ip)
    select ${id}, ${event.type}, ${event.orgId}, ${event.actor.type}, ${event.actor.id}, ${event.actor.email}, ${event.target.type}, ${event.target.id}, ${JSON.stringify(event.data)}::jsonb, ${event.ip}
    ${onlyIf === null ? sql`` : sql`where ${onlyIf}`}
    returning id, created_at)`
}

/**
 * For a catalogue event of an org (what webhooks deliver, §11), the test of its statement: does an
 * active webhook of the org subscribe to its type; null for the others. The deliveries are then
 * written by a second statement of the same transaction (insertDeliveries), so a committed change
 * always reaches its subscribers and a rolled-back one never does; an org without such a webhook
 * pays for that read alone, not for an insert into webhook_deliveries that writes nothing (in
 * the statement of the event it cost every event ~20-50 µs of PostgreSQL CPU: the locks and set-up
 * of a second table and its three indexes). Read committed: the second statement sees the webhooks
 * the first saw and any committed in between, so no subscriber is missed that the single
 * statement would have reached (one deactivated or deleted in between gets none).
 */
function subscribersOf (event: NewEvent): RawBuilder<boolean> | null {
  if (event.orgId === null || !CATALOGUE.has(event.type)) return null
  return eventHasSubscribers({ type: event.type, orgId: event.orgId })
}

async function insertDeliveries (trx: Kysely<Database>, id: string, event: NewEvent): Promise<void> {
  if (event.orgId === null) return
  await trx.executeQuery(preparing(sql`with event as (select created_at from audit_events where id = ${id})
    ${eventDeliveriesInsert({ id, type: event.type, orgId: event.orgId, actor: event.actor, data: event.data })}`.compile(trx)))
}

/** Where an event stands in the newest-first order: its time to the microsecond (as stored) and its id. */
export interface EventPosition {
  /** ISO 8601 UTC with microseconds: `createdAt` of the API has milliseconds, too coarse to resume from */
  createdAt: string
  id: string
}

export interface EventQuery {
  /** only this org's events; unset: every org's, and the org-less ones */
  orgId?: string
  types?: readonly string[]
  actorId?: string
  targetId?: string
  /** inclusive */
  since?: Date
  /** exclusive */
  until?: Date
  /** the last event of the previous page: the page holds the events after it, never it */
  after?: EventPosition
  limit: number
}

/** An event as the audit routes answer it (§10). */
export type AuditEvent = Static<typeof AuditEventSchema>

export interface EventPage {
  events: AuditEvent[]
  /** the position to resume from, or null when this page holds the last matching event */
  next: EventPosition | null
}

/**
 * A page of events, newest first. The order is (created_at, id), a total order, and the next page
 * starts strictly after the last event of this one, so events written meanwhile (always newer)
 * never shift a page: nothing is skipped or repeated. Each filter has an index in this order
 * (migrations 20261130T1100_audit_indexes, 20261130T1800_audit_org_type_actor,
 * 20261130T1810_audit_target_org, 20261130T2300_audit_org_actor), so a page reads about `limit` rows.
 */
export async function listEvents (db: Kysely<Database>, query: EventQuery): Promise<EventPage> {
  const rows = await eventPageQuery(db, query).execute()
  const page = rows.slice(0, query.limit)
  const last = page.at(-1)
  return {
    events: page.map(row => ({
      id: row.id,
      type: isEventType(row.type) ? row.type : unknownType(row.type),
      orgId: row.org_id,
      actor: { type: row.actor_type, id: row.actor_id, email: row.actor_email },
      target: { type: row.target_type, id: row.target_id },
      data: row.data,
      ip: row.ip,
      createdAt: row.created_at.toISOString()
    })),
    next: rows.length > query.limit && last !== undefined ? { createdAt: last.position_at, id: last.id } : null
  }
}

/** The SELECT of a page (one row more than the page, to know whether another follows); bench:audit explains it. */
export function eventPageQuery (db: Kysely<Database>, query: EventQuery) {
  let select = db.selectFrom('audit_events').selectAll()
    .select(sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('position_at'))
  const types = query.types !== undefined && query.types.length > 0
  if (query.orgId !== undefined && query.targetId === undefined && query.types !== undefined && query.types.length > 1) {
    // Several types in an org: the page's ids from one ordered scan of audit_events_org_type_actor_page_idx
    // per type (index-only, the actor too), each stopping at a page, merged. As one scan of
    // `type in (…)`, PostgreSQL could not read that index in order across the types: it read every
    // entry of those types in the org and sorted them, or (the actor filter on skewed data) walked
    // the actor's index and fetched each of their events in every org from the table: an actor with
    // 20,000 events elsewhere, none here, and three types took 1.6 s on bench:audit's data. With an
    // actor, each type's scan may read audit_events_org_actor_page_idx instead (that actor's entries
    // in the org, the type included): PostgreSQL picks the one of fewer entries for the figures it has.
    const branches = query.types.map(type => sql`(${pageFilters(db.selectFrom('audit_events').select(['id', 'created_at']), { ...query, types: [type] })
      .orderBy('created_at', 'desc').orderBy('id', 'desc').limit(query.limit + 1)})`)
    select = select.where(sql<boolean>`id in (select id from (${sql.join(branches, sql` union all `)}) as candidates order by created_at desc, id desc limit ${query.limit + 1})`)
  } else if (query.orgId !== undefined && (query.targetId !== undefined || (query.actorId !== undefined && types))) {
    // A target's events in an org, or an actor's events of some types in an org: the ids of the
    // page first, from an index that holds the other filters' columns (audit_events_target_org_page_idx
    // holds org and type, audit_events_org_type_actor_page_idx the actor: index-only scans), then
    // those rows alone. Read in one step, every candidate event was fetched from the table to check
    // it: a rare type in a busy org read ~1,000 table pages for a page of none, a key's 200 events
    // 200 pages for a page of 50.
    const ids = pageFilters(db.selectFrom('audit_events').select('id'), query).orderBy('created_at', 'desc').orderBy('id', 'desc').limit(query.limit + 1)
    select = select.where('id', 'in', ids)
  } else {
    select = pageFilters(select, query)
  }
  return select.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(query.limit + 1)
}

function pageFilters<O> (select: SelectQueryBuilder<Database, 'audit_events', O>, query: EventQuery): SelectQueryBuilder<Database, 'audit_events', O> {
  if (query.orgId !== undefined) select = select.where('org_id', '=', query.orgId)
  if (query.types !== undefined && query.types.length > 0) select = select.where('type', 'in', [...query.types])
  if (query.actorId !== undefined) select = select.where('actor_id', '=', query.actorId)
  if (query.targetId !== undefined) select = select.where('target_id', '=', query.targetId)
  if (query.since !== undefined) select = select.where('created_at', '>=', query.since)
  if (query.until !== undefined) select = select.where('created_at', '<', query.until)
  if (query.after !== undefined) {
    // A row comparison, which PostgreSQL turns into one index range condition.
    select = select.where(sql<boolean>`(created_at, id) < (cast(${query.after.createdAt} as timestamptz), ${query.after.id})`)
  }
  return select
}

function unknownType (type: string): never {
  // Only recordEvent writes events, and its type is checked: a row of another type is a defect.
  throw new Error(`audit_events holds an event of unknown type "${type}"`)
}

/**
 * Deletes up to `batchSize` events older than `before`, oldest first; returns how many. Retention
 * (AUDIT_RETENTION_DAYS) calls it in small batches, so no batch holds locks for long.
 */
export async function deleteEventsBefore (trx: Kysely<Database>, before: Date, batchSize: number): Promise<number> {
  const result = await trx.deleteFrom('audit_events')
    .where('id', 'in', eb => eb.selectFrom('audit_events').select('id').where('created_at', '<', before).orderBy('created_at').limit(batchSize))
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
