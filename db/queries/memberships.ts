import type { Kysely } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database, MembershipRow } from '../database.ts'
import type { AddedMembership } from '../../schemas/admin.ts'
import type { Member as MemberSchema } from '../../schemas/org.ts'
import type { SessionPrincipal } from './sessions.ts'
import { toUser } from './users.ts'

/** A membership with its user's id, as the admin's addMember answers it. */
export type Membership = Static<typeof AddedMembership>

export function toMembership (row: Pick<MembershipRow, 'user_id' | 'role' | 'status' | 'joined_at'>): Membership {
  return { userId: row.user_id, role: row.role, status: row.status, joinedAt: row.joined_at.toISOString() }
}

export async function insertMembership (db: Kysely<Database>, row: { id: string, orgId: string, userId: string, role: 'org_admin' | 'member' }): Promise<Membership | null> {
  const inserted = await db.insertInto('memberships')
    .values({ id: row.id, org_id: row.orgId, user_id: row.userId, role: row.role })
    .onConflict(oc => oc.columns(['org_id', 'user_id']).doNothing())
    .returningAll().executeTakeFirst()
  return inserted === undefined ? null : toMembership(inserted)
}

export async function findMembership (db: Kysely<Database>, orgId: string, userId: string): Promise<MembershipRow | undefined> {
  return await db.selectFrom('memberships').selectAll()
    .where('org_id', '=', orgId).where('user_id', '=', userId).executeTakeFirst()
}

/** A member as /org/members answers one. */
export type Member = Static<typeof MemberSchema>

function memberQuery (db: Kysely<Database>, orgId: string) {
  return db.selectFrom('memberships as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .select(['m.user_id', 'm.role', 'm.status', 'm.joined_at', 'u.name', 'u.email'])
    .where('m.org_id', '=', orgId)
}

function toMember (row: { user_id: string, role: 'org_admin' | 'member', status: 'active' | 'suspended', joined_at: Date, name: string, email: string }): Member {
  return { userId: row.user_id, name: row.name, email: row.email, role: row.role, status: row.status, joinedAt: row.joined_at.toISOString() }
}

/** Members of an org, in the order they joined. */
export async function listMembers (db: Kysely<Database>, orgId: string): Promise<Member[]> {
  const rows = await memberQuery(db, orgId).orderBy('m.joined_at', 'asc').orderBy('m.id', 'asc').execute()
  return rows.map(toMember)
}

export async function findMember (db: Kysely<Database>, orgId: string, userId: string): Promise<Member | null> {
  const row = await memberQuery(db, orgId).where('m.user_id', '=', userId).executeTakeFirst()
  return row === undefined ? null : toMember(row)
}

/**
 * Serialises changes to an org's memberships until the transaction ends, so two admins
 * demoting each other at once cannot both pass the last-active-admin check.
 */
export async function lockOrgMemberships (trx: Kysely<Database>, orgId: string): Promise<void> {
  await trx.selectFrom('organizations').select('id').where('id', '=', orgId).forUpdate().executeTakeFirst()
}

export async function countActiveAdmins (db: Kysely<Database>, orgId: string): Promise<number> {
  const row = await db.selectFrom('memberships').select(eb => eb.fn.countAll<string>().as('count'))
    .where('org_id', '=', orgId).where('role', '=', 'org_admin').where('status', '=', 'active')
    .executeTakeFirstOrThrow()
  return Number(row.count)
}

export async function updateMembership (db: Kysely<Database>, orgId: string, userId: string, changes: { role?: 'org_admin' | 'member', status?: 'active' | 'suspended' }): Promise<boolean> {
  const result = await db.updateTable('memberships').set({ ...changes, updated_at: new Date() })
    .where('org_id', '=', orgId).where('user_id', '=', userId)
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}

export async function deleteMembership (db: Kysely<Database>, orgId: string, userId: string): Promise<boolean> {
  const result = await db.deleteFrom('memberships').where('org_id', '=', orgId).where('user_id', '=', userId).executeTakeFirst()
  return result.numDeletedRows > 0n
}

/** The same shape as a session's principal: the user and their membership. */
export type OrgMember = SessionPrincipal

/** The user and their membership when the user is a member of that org (whatever the status); null otherwise. */
export async function findOrgMember (db: Kysely<Database>, orgId: string, userId: string): Promise<OrgMember | null> {
  const row = await db.selectFrom('memberships as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .select(['u.id', 'u.name', 'u.email', 'u.role', 'u.is_email_verified', 'm.role as membership_role', 'm.status as membership_status', 'm.joined_at'])
    .where('m.org_id', '=', orgId).where('m.user_id', '=', userId)
    .executeTakeFirst()
  if (row === undefined) return null
  return {
    user: toUser(row),
    membership: { role: row.membership_role, status: row.membership_status, joinedAt: row.joined_at.toISOString() }
  }
}
