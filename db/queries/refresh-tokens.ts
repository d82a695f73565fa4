import type { Kysely } from 'kysely'
import type { Database } from '../database.ts'

export async function insertRefreshToken (db: Kysely<Database>, row: { tokenHash: string, sessionId: string, expiresAt: Date }): Promise<void> {
  await db.insertInto('refresh_tokens').values({ token_hash: row.tokenHash, session_id: row.sessionId, expires_at: row.expiresAt }).execute()
}

export interface PresentedRefreshToken {
  sessionId: string
  orgId: string
  userId: string
  /** already rotated: presenting it again is the reuse signal */
  used: boolean
  /** the token or its session has expired, or the session was revoked */
  dead: boolean
  sessionExpiresAt: Date
}

/** A refresh token by its hash, with the state of its session. */
export async function findRefreshToken (db: Kysely<Database>, tokenHash: string): Promise<PresentedRefreshToken | null> {
  const row = await db.selectFrom('refresh_tokens as r')
    .innerJoin('sessions as s', 's.id', 'r.session_id')
    .select(['r.session_id', 'r.expires_at', 'r.used_at', 's.org_id', 's.user_id', 's.revoked_at', 's.expires_at as session_expires_at'])
    .where('r.token_hash', '=', tokenHash)
    .executeTakeFirst()
  if (row === undefined) return null
  const now = Date.now()
  return {
    sessionId: row.session_id,
    orgId: row.org_id,
    userId: row.user_id,
    used: row.used_at !== null,
    dead: row.revoked_at !== null || row.expires_at.getTime() <= now || row.session_expires_at.getTime() <= now,
    sessionExpiresAt: row.session_expires_at
  }
}

/**
 * Marks the token used if nobody has yet. False means another request rotated it first:
 * of two presentations of one token only one may win, the other is treated as reuse.
 */
export async function consumeRefreshToken (db: Kysely<Database>, tokenHash: string): Promise<boolean> {
  const result = await db.updateTable('refresh_tokens').set({ used_at: new Date() })
    .where('token_hash', '=', tokenHash).where('used_at', 'is', null)
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}
