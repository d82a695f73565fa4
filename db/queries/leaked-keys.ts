import { sql, type Kysely } from 'kysely'
import type { ApiKeyRow, Database } from '../database.ts'

/** Every key among these HMAC digests, live or not: one query for a whole batch of reported strings. */
export async function findApiKeysByHashes (db: Kysely<Database>, keyHashes: string[]): Promise<ApiKeyRow[]> {
  if (keyHashes.length === 0) return []
  return await db.selectFrom('api_keys').selectAll().where('key_hash', 'in', keyHashes).execute()
}

/** Revokes those of these keys that are still live (not revoked, not expired) and returns them as they now are. */
export async function revokeLiveApiKeys (trx: Kysely<Database>, keyIds: string[]): Promise<ApiKeyRow[]> {
  if (keyIds.length === 0) return []
  return await trx.updateTable('api_keys').set({ revoked_at: new Date(), revoked_by: null })
    .where('id', 'in', keyIds).where('revoked_at', 'is', null)
    .where(eb => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
    .returningAll().execute()
}
