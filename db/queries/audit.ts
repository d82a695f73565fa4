import type { Kysely } from 'kysely'
import type { Database } from '../database.ts'
import { newId } from '../../src/ids.ts'

export interface AuditEvent {
  orgId: string | null
  actorType: 'user' | 'admin' | 'system'
  actorId: string | null
  action: string
  targetType: string
  targetId: string
  metadata?: Record<string, unknown>
}

/** Records who did what; never pass a secret in metadata. */
export async function recordAuditEvent (db: Kysely<Database>, event: AuditEvent): Promise<void> {
  await db.insertInto('audit_events').values({
    id: newId('evt'),
    org_id: event.orgId,
    actor_type: event.actorType,
    actor_id: event.actorId,
    action: event.action,
    target_type: event.targetType,
    target_id: event.targetId,
    metadata: JSON.stringify(event.metadata ?? {})
  }).execute()
}
