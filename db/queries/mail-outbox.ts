import { sql, type Kysely, type RawBuilder } from 'kysely'
import type { Database } from '../database.ts'

export async function enqueueInviteMail (trx: Kysely<Database>, row: { id: string, orgId: string, inviteId: string, recipient: string, sealedToken: string, nextAttemptAt: RawBuilder<Date> }): Promise<void> {
  await trx.insertInto('mail_outbox').values({
    id: row.id,
    org_id: row.orgId,
    invite_id: row.inviteId,
    recipient: row.recipient,
    sealed_token: row.sealedToken,
    next_attempt_at: row.nextAttemptAt
  }).execute()
}

/** The invitation's mail not sent yet is dropped, its token erased (revoked, resent or accepted). */
export async function cancelPendingInviteMail (trx: Kysely<Database>, inviteId: string): Promise<void> {
  await trx.updateTable('mail_outbox')
    .set({ status: 'cancelled', sealed_token: null, lease_id: null, leased_until: null })
    .where('invite_id', '=', inviteId).where('status', '=', 'pending')
    .execute()
}

/** What an invitation mail says, read when it is sent: the invitation, its org and who invited. */
export interface InviteMailContext {
  inviteId: string
  email: string
  role: 'org_admin' | 'member'
  status: string
  tokenHash: string
  expiresAt: Date
  org: { name: string, slug: string, appUrl: string | null }
  inviter: { name: string, email: string }
}

export async function findInviteMailContext (db: Kysely<Database>, inviteId: string): Promise<InviteMailContext | undefined> {
  const row = await db.selectFrom('invites as i')
    .innerJoin('organizations as o', 'o.id', 'i.org_id')
    .innerJoin('users as u', 'u.id', 'i.invited_by')
    .select(['i.id', 'i.email', 'i.role', 'i.status', 'i.token_hash', 'i.expires_at', 'o.name as org_name', 'o.slug', 'o.app_url', 'u.name as inviter_name', 'u.email as inviter_email'])
    .where('i.id', '=', inviteId)
    .executeTakeFirst()
  if (row === undefined) return undefined
  return {
    inviteId: row.id,
    email: row.email,
    role: row.role,
    status: row.status,
    tokenHash: row.token_hash,
    expiresAt: row.expires_at,
    org: { name: row.org_name, slug: row.slug, appUrl: row.app_url },
    inviter: { name: row.inviter_name, email: row.inviter_email }
  }
}

/**
 * Pending mail of an invitation that can no longer be accepted (lapsed, or ended while no worker
 * ran, e.g. with SMTP_URL removed) will never be sent: cancelled, its token erased.
 */
export async function cancelDeadInviteMail (db: Kysely<Database>, limit: number): Promise<number> {
  const result = await db.updateTable('mail_outbox')
    .set({ status: 'cancelled', sealed_token: null, lease_id: null, leased_until: null })
    .where('id', 'in', db.selectFrom('mail_outbox as m').innerJoin('invites as i', 'i.id', 'm.invite_id').select('m.id')
      .where('m.status', '=', 'pending')
      .where(eb => eb.or([eb('i.status', '!=', 'pending'), eb('i.expires_at', '<=', sql<Date>`now()`)]))
      .limit(limit))
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** Retention: finished rows (their tokens already erased) older than `days` go. */
export async function deleteFinishedMail (db: Kysely<Database>, days: number, limit: number): Promise<number> {
  const result = await db.deleteFrom('mail_outbox')
    .where('id', 'in', db.selectFrom('mail_outbox').select('id')
      .where('status', '!=', 'pending').where('created_at', '<', sql<Date>`now() - ${days} * interval '1 day'`)
      .limit(limit))
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
