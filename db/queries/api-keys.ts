import { sql, type Kysely } from 'kysely'
import type { ApiKeyRow, Database } from '../database.ts'

export interface ApiKey {
  id: string
  name: string
  prefix: string
  createdAt: string
  expiresAt: string | null
  lastUsedAt: string | null
}

export interface ListedApiKey extends ApiKey {
  isActive: boolean
}

function iso (value: Date | null): string | null {
  return value === null ? null : value.toISOString()
}

export function toApiKey (row: ApiKeyRow): ApiKey {
  return { id: row.id, name: row.name, prefix: row.prefix, createdAt: row.created_at.toISOString(), expiresAt: iso(row.expires_at), lastUsedAt: iso(row.last_used_at) }
}

export function isApiKeyActive (row: Pick<ApiKeyRow, 'revoked_at' | 'expires_at'>, now = new Date()): boolean {
  return row.revoked_at === null && (row.expires_at === null || row.expires_at > now)
}

/** The seed's field order: id, name, prefix, isActive, createdAt, expiresAt, lastUsedAt. */
function toListedApiKey (row: ApiKeyRow, now: Date): ListedApiKey {
  const { id, name, prefix, createdAt, expiresAt, lastUsedAt } = toApiKey(row)
  return { id, name, prefix, isActive: isApiKeyActive(row, now), createdAt, expiresAt, lastUsedAt }
}

export async function insertApiKey (db: Kysely<Database>, row: { id: string, orgId: string, name: string, prefix: string, keyHash: string, createdBy: string, expiresAt: Date | null }): Promise<ApiKey> {
  const inserted = await db.insertInto('api_keys').values({
    id: row.id, org_id: row.orgId, name: row.name, prefix: row.prefix, key_hash: row.keyHash, created_by: row.createdBy, expires_at: row.expiresAt
  }).returningAll().executeTakeFirstOrThrow()
  return toApiKey(inserted)
}

/** Newest first; revoked and expired keys stay listed as inactive. */
export async function listApiKeys (db: Kysely<Database>, orgId: string): Promise<ListedApiKey[]> {
  const rows = await db.selectFrom('api_keys').selectAll().where('org_id', '=', orgId)
    .orderBy('created_at', 'desc').orderBy('id', 'desc').execute()
  const now = new Date()
  return rows.map(row => toListedApiKey(row, now))
}

/** 'revoked' when this call revoked it, 'already' when it was revoked before, 'missing' when the org has no such key. */
/** revokedBy: the user who revoked it; null when the operator did (CLI), which the audit trail records as actor 'system'. */
export async function revokeApiKey (db: Kysely<Database>, input: { orgId: string, keyId: string, revokedBy: string | null }): Promise<'revoked' | 'already' | 'missing'> {
  const revoked = await db.updateTable('api_keys').set({ revoked_at: new Date(), revoked_by: input.revokedBy })
    .where('id', '=', input.keyId).where('org_id', '=', input.orgId).where('revoked_at', 'is', null)
    .returning('id').executeTakeFirst()
  if (revoked !== undefined) return 'revoked'
  const existing = await db.selectFrom('api_keys').select('id')
    .where('id', '=', input.keyId).where('org_id', '=', input.orgId).executeTakeFirst()
  return existing === undefined ? 'missing' : 'already'
}

/** A key with its org's slug, for tools that are given only the key id (the operator CLI). */
export async function findApiKeyWithOrg (db: Kysely<Database>, keyId: string): Promise<{ id: string, name: string, prefix: string, orgId: string, orgSlug: string, revokedAt: Date | null } | undefined> {
  return await db.selectFrom('api_keys as k').innerJoin('organizations as o', 'o.id', 'k.org_id')
    .select(['k.id', 'k.name', 'k.prefix', 'k.org_id as orgId', 'o.slug as orgSlug', 'k.revoked_at as revokedAt'])
    .where('k.id', '=', keyId).executeTakeFirst()
}

export type ApiKeyCredential = Pick<ApiKeyRow, 'id' | 'org_id' | 'key_hash' | 'prefix' | 'expires_at' | 'revoked_at' | 'last_used_at'>

export async function findApiKeyByHash (db: Kysely<Database>, keyHash: string): Promise<ApiKeyCredential | undefined> {
  return await db.selectFrom('api_keys')
    .select(['id', 'org_id', 'key_hash', 'prefix', 'expires_at', 'revoked_at', 'last_used_at'])
    .where('key_hash', '=', keyHash).executeTakeFirst()
}

/** Sets last_used_at of a key that has never been used (first use is recorded at once). */
export async function setFirstUse (db: Kysely<Database>, keyId: string, usedAt: Date): Promise<void> {
  await db.updateTable('api_keys').set({ last_used_at: usedAt })
    .where('id', '=', keyId).where('last_used_at', 'is', null).execute()
}

/** Many keys' last uses in one statement; never moves a time backwards (several instances write). */
export async function recordLastUses (db: Kysely<Database>, uses: Array<{ keyId: string, usedAt: Date }>): Promise<void> {
  if (uses.length === 0) return
  const values = sql.join(uses.map(use => sql`(${use.keyId}, ${use.usedAt.toISOString()}::timestamptz)`))
  await sql`
    update api_keys set last_used_at = v.used_at
    from (values ${values}) as v(id, used_at)
    where api_keys.id = v.id and (api_keys.last_used_at is null or api_keys.last_used_at < v.used_at)
  `.execute(db)
}
