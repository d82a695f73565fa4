import type { Kysely } from 'kysely'
import type { Database, MembershipRow } from '../database.ts'

export interface Membership {
  userId: string
  role: 'org_admin' | 'member'
  status: 'active' | 'suspended'
  joinedAt: string
}

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
