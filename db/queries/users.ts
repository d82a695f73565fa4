import { sql, type Kysely } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database, UserRow } from '../database.ts'
import type { PublicUser } from '../../schemas/common.ts'

/** A user as every route answers one (never the password hash). */
export type User = Static<typeof PublicUser>

export function toUser (row: Pick<UserRow, 'id' | 'name' | 'email' | 'role' | 'is_email_verified'>): User {
  return { id: row.id, name: row.name, email: row.email, role: row.role, isEmailVerified: row.is_email_verified }
}

export async function insertUser (db: Kysely<Database>, row: { id: string, email: string, name: string, passwordHash: string }): Promise<(User & { createdAt: string }) | null> {
  // The unique index is on lower(email); ON CONFLICT cannot name an expression index
  // portably, so a duplicate is detected by its SQLSTATE.
  try {
    const inserted = await db.insertInto('users')
      .values({ id: row.id, email: row.email, name: row.name, password_hash: row.passwordHash })
      .returningAll().executeTakeFirstOrThrow()
    return { ...toUser(inserted), createdAt: inserted.created_at.toISOString() }
  } catch (error) {
    if ((error as { code?: string }).code === '23505') return null
    throw error
  }
}

export async function findUserByEmail (db: Kysely<Database>, email: string): Promise<UserRow | undefined> {
  return await db.selectFrom('users').selectAll().where(sql<string>`lower(email)`, '=', email.toLowerCase()).executeTakeFirst()
}

export async function findUserById (db: Kysely<Database>, id: string): Promise<UserRow | undefined> {
  return await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function updateUserPassword (db: Kysely<Database>, id: string, passwordHash: string): Promise<boolean> {
  const result = await db.updateTable('users').set({ password_hash: passwordHash, updated_at: new Date() })
    .where('id', '=', id).executeTakeFirst()
  return result.numUpdatedRows > 0n
}

/**
 * Replaces a password hash made with older parameters by one of the same password made with
 * today's, unless the password changed meanwhile (a reset between the login's read and this
 * write): the hash read is the condition. Not an audit event: the password is the same.
 */
export async function upgradePasswordHash (db: Kysely<Database>, id: string, from: string, to: string): Promise<boolean> {
  const result = await db.updateTable('users').set({ password_hash: to })
    .where('id', '=', id).where('password_hash', '=', from).executeTakeFirst()
  return result.numUpdatedRows > 0n
}

/**
 * The account an accepted invitation creates; when the email got an account since the caller
 * looked (ON CONFLICT waits for a concurrent insert to commit), that account instead.
 */
export async function insertUserFromInvite (trx: Kysely<Database>, row: { id: string, email: string, name: string, passwordHash: string, isEmailVerified: boolean }): Promise<UserRow> {
  const inserted = await trx.insertInto('users')
    .values({ id: row.id, email: row.email, name: row.name, password_hash: row.passwordHash, is_email_verified: row.isEmailVerified })
    .onConflict(oc => oc.expression(sql`lower(email)`).doNothing())
    .returningAll().executeTakeFirst()
  if (inserted !== undefined) return inserted
  const existing = await findUserByEmail(trx, row.email)
  // ON CONFLICT saw a committed row with this email; it can only be gone if deleted meanwhile.
  if (existing === undefined) throw new Error(`insertUserFromInvite: ${row.email} conflicted, then was not found`)
  return existing
}
