import type { Kysely } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database } from '../database.ts'
import type { Membership, PublicUser } from '../../schemas/common.ts'
import { toOrg, type Org } from './orgs.ts'
import { preparing } from '../prepared.ts'

export async function insertSession (db: Kysely<Database>, row: { id: string, orgId: string, userId: string, expiresAt: Date, ip?: string | null, userAgent?: string | null }): Promise<void> {
  await db.insertInto('sessions').values({
    id: row.id, org_id: row.orgId, user_id: row.userId, expires_at: row.expiresAt, ip: row.ip ?? null, user_agent: row.userAgent ?? null
  }).execute()
}

/** Ends every live session of a user in every org (e.g. after an operator reset the password). */
export async function revokeAllUserSessions (db: Kysely<Database>, userId: string, reason: string): Promise<number> {
  const result = await db.updateTable('sessions').set({ revoked_at: new Date(), revoked_reason: reason })
    .where('user_id', '=', userId).where('revoked_at', 'is', null)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** True while the session exists, has not been revoked and has not expired. */
export async function isSessionLive (db: Kysely<Database>, sessionId: string): Promise<boolean> {
  const row = await db.selectFrom('sessions').select('id')
    .where('id', '=', sessionId).where('revoked_at', 'is', null).where('expires_at', '>', new Date())
    .executeTakeFirst()
  return row !== undefined
}

/** The user and their membership, as GET /auth/me and GET /public/users/{userId} answer them. */
export interface SessionPrincipal {
  user: Static<typeof PublicUser>
  membership: Static<typeof Membership>
}

/** Which session a request presents: its id, and the user and org its token names. */
export interface PresentedSession { sessionId: string, userId: string, orgId: string }

/**
 * The one definition of a live session, shared by every query that authenticates with one: that
 * session, of that user in that org, not revoked and not expired, with the user and their
 * membership in the org (a session outlives no membership: the inner joins drop it). One row or none.
 */
function livePrincipalRows (db: Kysely<Database>, ids: PresentedSession) {
  return db.selectFrom('sessions as s')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .innerJoin('memberships as m', join => join.onRef('m.org_id', '=', 's.org_id').onRef('m.user_id', '=', 's.user_id'))
    .select(['s.org_id as session_org_id', 'u.id as user_id', 'u.name as user_name', 'u.email as user_email', 'u.role as user_role', 'u.is_email_verified',
      'm.role as membership_role', 'm.status as membership_status', 'm.joined_at'])
    .where('s.id', '=', ids.sessionId)
    .where('s.user_id', '=', ids.userId)
    .where('s.org_id', '=', ids.orgId)
    .where('s.revoked_at', 'is', null)
    .where('s.expires_at', '>', new Date())
}

type PrincipalRow = Awaited<ReturnType<ReturnType<typeof livePrincipalRows>['executeTakeFirstOrThrow']>>

function toPrincipal (row: PrincipalRow): SessionPrincipal {
  return {
    user: { id: row.user_id, name: row.user_name, email: row.user_email, role: row.user_role, isEmailVerified: row.is_email_verified },
    membership: { role: row.membership_role, status: row.membership_status, joinedAt: row.joined_at.toISOString() }
  }
}

/** The user and membership behind a live session of that user in that org, in one query. */
export async function findLiveSessionPrincipal (db: Kysely<Database>, ids: PresentedSession): Promise<SessionPrincipal | null> {
  const row = await livePrincipalRows(db, ids).executeTakeFirst()
  return row === undefined ? null : toPrincipal(row)
}

/**
 * The org of that slug and the user and membership behind that live session of theirs in it (null
 * when there is none, or when the session is of another org): what requireOrg and requireUser
 * read, in one round trip and one prepared statement instead of two queries. Null when no org has
 * the slug. The org's columns are named, not `o.*`: a column added by a migration must not change
 * what the prepared statement answers.
 */
export async function findOrgWithSessionPrincipal (db: Kysely<Database>, slug: string, session: PresentedSession): Promise<{ org: Org, principal: SessionPrincipal | null } | null> {
  const query = db.selectFrom('organizations as o')
    .leftJoin(livePrincipalRows(db, session).as('p'), 'p.session_org_id', 'o.id')
    .select(['o.id', 'o.slug', 'o.name', 'o.plan', 'o.status', 'o.app_url', 'o.created_at', 'o.updated_at', 'o.rate_limit_max', 'o.rate_limit_window_seconds'])
    .select(['p.session_org_id', 'p.user_id', 'p.user_name', 'p.user_email', 'p.user_role', 'p.is_email_verified', 'p.membership_role', 'p.membership_status', 'p.joined_at'])
    .where('o.slug', '=', slug)
  const row = (await db.executeQuery(preparing(query.compile()))).rows[0]
  if (row === undefined) return null
  // A left join of one row: the principal's columns are all null (no live session in this org) or none is.
  return { org: toOrg(row), principal: row.session_org_id === null ? null : toPrincipal(row as PrincipalRow) }
}

/** Ends one session; a no-op when it is already revoked. */
export async function revokeSession (db: Kysely<Database>, sessionId: string, reason: string): Promise<boolean> {
  const result = await db.updateTable('sessions').set({ revoked_at: new Date(), revoked_reason: reason })
    .where('id', '=', sessionId).where('revoked_at', 'is', null)
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}

/** Ends every live session of a user in one org (the user was removed from it). */
export async function revokeUserSessionsInOrg (db: Kysely<Database>, orgId: string, userId: string, reason: string): Promise<number> {
  const result = await db.updateTable('sessions').set({ revoked_at: new Date(), revoked_reason: reason })
    .where('org_id', '=', orgId).where('user_id', '=', userId).where('revoked_at', 'is', null)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}
