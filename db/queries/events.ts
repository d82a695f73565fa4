import type { Kysely } from 'kysely'
import type { Database } from '../database.ts'
import { newId } from '../../src/ids.ts'
import { insertEventDeliveries } from './webhooks.ts'

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
  type: EventType | InternalEventType
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
 * The one way to record an event. It takes the transaction of the change, so the change and its
 * event commit or roll back together: the audit log cannot disagree with the data.
 */
export async function recordEvent (trx: Kysely<Database>, event: NewEvent): Promise<Event> {
  if (!trx.isTransaction) throw new Error(`recordEvent(${event.type}) outside a transaction: the event must commit with its change`)
  const row = await trx.insertInto('audit_events').values({
    id: newId('evt'),
    type: event.type,
    org_id: event.orgId,
    actor_type: event.actor.type,
    actor_id: event.actor.id,
    actor_email: event.actor.email,
    target_type: event.target.type,
    target_id: event.target.id,
    data: JSON.stringify(event.data),
    ip: event.ip
  }).returning(['id', 'created_at']).executeTakeFirstOrThrow()
  const createdAt = row.created_at.toISOString()
  // Webhook deliveries (§11) are written in the same transaction: a committed change always reaches
  // its subscribers, a rolled-back one never does. Internal types are never delivered.
  if (event.orgId !== null && (EVENT_TYPES as readonly string[]).includes(event.type)) {
    await insertEventDeliveries(trx, { id: row.id, type: event.type, orgId: event.orgId, actor: event.actor, data: event.data, createdAt })
  }
  return { ...event, id: row.id, createdAt }
}
