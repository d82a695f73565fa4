import { sql, type Kysely } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database, InviteRow } from '../database.ts'
import type { Invite as InviteSchema } from '../../schemas/invites.ts'

/** An invitation as §12 shows it: only pending ones are ever shown. */
export type Invite = Static<typeof InviteSchema>

type InviteWithInviter = InviteRow & { inviter_email: string }

export function toInvite (row: InviteWithInviter): Invite {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    status: 'pending',
    expiresAt: row.expires_at.toISOString(),
    createdAt: row.created_at.toISOString(),
    invitedBy: { id: row.invited_by, email: row.inviter_email }
  }
}

function withInviter (db: Kysely<Database>) {
  return db.selectFrom('invites as i')
    .innerJoin('users as u', 'u.id', 'i.invited_by')
    .selectAll('i')
    .select('u.email as inviter_email')
}

export async function insertInvite (db: Kysely<Database>, row: { id: string, orgId: string, email: string, role: 'org_admin' | 'member', tokenHash: string, delivery: 'email' | 'api', invitedBy: string, expiresAt: Date }): Promise<Invite> {
  await db.insertInto('invites').values({
    id: row.id,
    org_id: row.orgId,
    email: row.email,
    role: row.role,
    token_hash: row.tokenHash,
    delivery: row.delivery,
    invited_by: row.invitedBy,
    expires_at: row.expiresAt
  }).execute()
  return toInvite(await withInviter(db).where('i.id', '=', row.id).executeTakeFirstOrThrow())
}

/** The org's pending invitation of this email, lapsed or not (there is at most one). */
export async function findPendingInviteByEmail (db: Kysely<Database>, orgId: string, email: string): Promise<InviteRow | undefined> {
  return await db.selectFrom('invites').selectAll()
    .where('org_id', '=', orgId).where(sql<string>`lower(email)`, '=', email.toLowerCase()).where('status', '=', 'pending')
    .executeTakeFirst()
}

/** A lapsed invitation gives way to a new one of the same email. */
export async function markInviteExpired (db: Kysely<Database>, id: string): Promise<void> {
  await db.updateTable('invites').set({ status: 'expired', updated_at: new Date() }).where('id', '=', id).where('status', '=', 'pending').execute()
}

/** Pending, unexpired invitations of the org, newest first. */
export async function listPendingInvites (db: Kysely<Database>, orgId: string): Promise<Invite[]> {
  const rows = await withInviter(db)
    .where('i.org_id', '=', orgId).where('i.status', '=', 'pending').where('i.expires_at', '>', sql<Date>`now()`)
    .orderBy('i.created_at', 'desc').orderBy('i.id', 'desc')
    .execute()
  return rows.map(toInvite)
}

/** The org's invitation with status pending (even if lapsed), locked until the transaction ends. */
export async function lockPendingInvite (trx: Kysely<Database>, orgId: string, id: string): Promise<InviteRow | undefined> {
  return await trx.selectFrom('invites').selectAll()
    .where('id', '=', id).where('org_id', '=', orgId).where('status', '=', 'pending')
    .forUpdate().executeTakeFirst()
}

/** A new token and seven more days for a pending invitation; the old token stops working. */
export async function renewInvite (trx: Kysely<Database>, id: string, changes: { tokenHash: string, delivery: 'email' | 'api', expiresAt: Date }): Promise<Invite> {
  await trx.updateTable('invites')
    .set({ token_hash: changes.tokenHash, delivery: changes.delivery, expires_at: changes.expiresAt, updated_at: new Date() })
    .where('id', '=', id).execute()
  return toInvite(await withInviter(trx).where('i.id', '=', id).executeTakeFirstOrThrow())
}

/** Revokes a pending, unexpired invitation; undefined when there is none. */
export async function revokeInvite (trx: Kysely<Database>, orgId: string, id: string, revokedBy: string): Promise<InviteRow | undefined> {
  return await trx.updateTable('invites')
    .set({ status: 'revoked', revoked_at: new Date(), revoked_by: revokedBy, updated_at: new Date() })
    .where('id', '=', id).where('org_id', '=', orgId).where('status', '=', 'pending').where('expires_at', '>', sql<Date>`now()`)
    .returningAll().executeTakeFirst()
}

export async function findInviteByTokenHash (db: Kysely<Database>, tokenHash: string): Promise<InviteRow | undefined> {
  return await db.selectFrom('invites').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst()
}

/**
 * Spends a token: one conditional UPDATE, so of concurrent accepts of one token exactly one
 * gets the row; the others find it no longer pending. Undefined when the token is unusable here.
 */
export async function claimInvite (trx: Kysely<Database>, orgId: string, tokenHash: string): Promise<InviteRow | undefined> {
  return await trx.updateTable('invites')
    .set({ status: 'accepted', accepted_at: new Date(), updated_at: new Date() })
    .where('token_hash', '=', tokenHash).where('org_id', '=', orgId).where('status', '=', 'pending').where('expires_at', '>', sql<Date>`now()`)
    .returningAll().executeTakeFirst()
}

export async function setInviteAcceptedBy (trx: Kysely<Database>, id: string, userId: string): Promise<void> {
  await trx.updateTable('invites').set({ accepted_by: userId }).where('id', '=', id).execute()
}

/** Whether a member of the org (any status) has this email. */
export async function isMemberEmail (db: Kysely<Database>, orgId: string, email: string): Promise<boolean> {
  const row = await db.selectFrom('memberships as m').innerJoin('users as u', 'u.id', 'm.user_id')
    .select('m.id').where('m.org_id', '=', orgId).where(sql<string>`lower(u.email)`, '=', email.toLowerCase())
    .executeTakeFirst()
  return row !== undefined
}

/**
 * The times of the org's most recent invitations sent within the last hour (at most `limit`),
 * newest first. Each invitation sent — a new one or a resend — is one member.invited event,
 * recorded in the same transaction, so the audit log is the exact count across instances.
 */
export async function recentInvitationTimes (db: Kysely<Database>, orgId: string, limit: number): Promise<Date[]> {
  const rows = await db.selectFrom('audit_events').select('created_at')
    .where('org_id', '=', orgId).where('type', '=', 'member.invited').where('created_at', '>', sql<Date>`now() - interval '1 hour'`)
    .orderBy('created_at', 'desc').limit(limit)
    .execute()
  return rows.map(row => row.created_at)
}
