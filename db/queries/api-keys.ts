import { sql, type Kysely } from 'kysely'
import type { ApiKeyRow, Database } from '../database.ts'
import type { ApiKeyScope } from '../../src/api-key-settings.ts'
import type { Static } from '@sinclair/typebox'
import type { ApiKey as ApiKeySchema } from '../../schemas/api-keys.ts'
import { changeWithEvent, type NewEvent } from './events.ts'

/**
 * The full key object of §9: what every key route answers and every api_key.* event holds (never
 * the key). Its type is the documented schema's, so a row mapped wrongly fails tsc here.
 */
export type ApiKey = Static<typeof ApiKeySchema>

function iso (value: Date | null): string | null {
  return value === null ? null : value.toISOString()
}

export function isApiKeyActive (row: Pick<ApiKeyRow, 'revoked_at' | 'expires_at'>, now = new Date()): boolean {
  return row.revoked_at === null && (row.expires_at === null || row.expires_at > now)
}

function createdByOf (row: ApiKeyRow): ApiKey['createdBy'] {
  if (row.created_by_type !== 'user') return { type: row.created_by_type }
  // Every key a user creates records its user; a row without one was not made through the API.
  return row.created_by === null ? { type: 'system' } : { type: 'user', id: row.created_by }
}

/** The seed's fields first, in its order (id, name, prefix, isActive, createdAt, expiresAt, lastUsedAt), then §9's. */
export function toApiKey (row: ApiKeyRow, now = new Date()): ApiKey {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    isActive: isApiKeyActive(row, now),
    createdAt: row.created_at.toISOString(),
    expiresAt: iso(row.expires_at),
    lastUsedAt: iso(row.last_used_at),
    description: row.description,
    scopes: row.scopes,
    rateLimit: row.rate_limit_max === null || row.rate_limit_window_seconds === null
      ? null
      : { max: row.rate_limit_max, windowSeconds: row.rate_limit_window_seconds },
    allowedIps: row.allowed_ips,
    createdBy: createdByOf(row),
    revokedAt: iso(row.revoked_at),
    rotatedFromId: row.rotated_from_id,
    rotatedToId: row.rotated_to_id
  }
}

/** What an org admin sets on a key (§9), already checked and normalised. */
export interface ApiKeySettings {
  name: string
  description: string | null
  scopes: ApiKeyScope[]
  rateLimit: { max: number, windowSeconds: number } | null
  allowedIps: string[]
  expiresAt: Date | null
}

function settingsColumns (settings: Partial<ApiKeySettings>): Partial<ApiKeyRow> {
  return {
    ...(settings.name !== undefined && { name: settings.name }),
    ...(settings.description !== undefined && { description: settings.description }),
    ...(settings.scopes !== undefined && { scopes: settings.scopes }),
    ...(settings.rateLimit !== undefined && {
      rate_limit_max: settings.rateLimit?.max ?? null,
      rate_limit_window_seconds: settings.rateLimit?.windowSeconds ?? null
    }),
    ...(settings.allowedIps !== undefined && { allowed_ips: settings.allowedIps }),
    ...(settings.expiresAt !== undefined && { expires_at: settings.expiresAt })
  }
}

/** A key's row as it is once these settings are applied. */
function withSettings (row: ApiKeyRow, settings: Partial<ApiKeySettings>): ApiKeyRow {
  return { ...row, ...settingsColumns(settings) }
}

export async function insertApiKey (db: Kysely<Database>, row: ApiKeySettings & {
  id: string
  orgId: string
  prefix: string
  keyHash: string
  createdBy: { type: 'user', id: string } | { type: 'admin' | 'system' }
  rotatedFromId?: string
}): Promise<ApiKeyRow> {
  return await db.insertInto('api_keys').values({
    id: row.id,
    org_id: row.orgId,
    prefix: row.prefix,
    key_hash: row.keyHash,
    created_by_type: row.createdBy.type,
    created_by: row.createdBy.type === 'user' ? row.createdBy.id : null,
    rotated_from_id: row.rotatedFromId ?? null,
    ...settingsColumns(row),
    // settingsColumns types each setting optional (PATCH sends some); a new key has a name.
    name: row.name
  }).returningAll().executeTakeFirstOrThrow()
}

/** Newest first; revoked and expired keys stay listed as inactive. */
export async function listApiKeys (db: Kysely<Database>, orgId: string): Promise<ApiKey[]> {
  const rows = await db.selectFrom('api_keys').selectAll().where('org_id', '=', orgId)
    .orderBy('created_at', 'desc').orderBy('id', 'desc').execute()
  const now = new Date()
  return rows.map(row => toApiKey(row, now))
}

export async function findApiKey (db: Kysely<Database>, orgId: string, keyId: string): Promise<ApiKeyRow | undefined> {
  return await db.selectFrom('api_keys').selectAll().where('id', '=', keyId).where('org_id', '=', orgId).executeTakeFirst()
}

/**
 * The key, its row locked until the transaction ends: a change that checks the key's state
 * (revoked? already rotated?) and then writes is not interleaved with another such change.
 */
export async function lockApiKey (trx: Kysely<Database>, orgId: string, keyId: string): Promise<ApiKeyRow | undefined> {
  return await trx.selectFrom('api_keys').selectAll().where('id', '=', keyId).where('org_id', '=', orgId).forUpdate().executeTakeFirst()
}

/**
 * A locked key's new settings, with its api_key.updated event in the same statement (the event is
 * made from the row as it will be: the locked one with the settings applied).
 */
export async function updateApiKeySettings (trx: Kysely<Database>, locked: ApiKeyRow, settings: Partial<ApiKeySettings>, event: (updated: ApiKeyRow) => NewEvent): Promise<ApiKeyRow> {
  const columns = settingsColumns(settings)
  const update = trx.updateTable('api_keys').set(columns).where('id', '=', locked.id).returningAll()
  const [updated] = await changeWithEvent(trx, update, event(withSettings(locked, settings)))
  if (updated === undefined) throw new Error(`API key ${locked.id} vanished while locked`)
  return updated
}

/**
 * The old key of a rotation: it names its successor, and lives on until `expiresAt`, or is
 * revoked at once when `revokedAt` is given.
 */
export async function retireRotatedApiKey (trx: Kysely<Database>, input: { keyId: string, rotatedToId: string, expiresAt: Date | null, revokedAt: Date | null, revokedBy: string | null }): Promise<ApiKeyRow> {
  return await trx.updateTable('api_keys').set({
    rotated_to_id: input.rotatedToId,
    expires_at: input.expiresAt,
    ...(input.revokedAt !== null && { revoked_at: input.revokedAt, revoked_by: input.revokedBy })
  }).where('id', '=', input.keyId).returningAll().executeTakeFirstOrThrow()
}

/**
 * `revoked` with the key as it is now when this call revoked it, `already` when it was revoked
 * before, `missing` when the org has no such key. revokedBy: the user who revoked it; null when
 * the operator did (CLI), which the audit trail records as actor 'system'.
 */
export async function revokeApiKey (db: Kysely<Database>, input: { orgId: string, keyId: string, revokedBy: string | null }): Promise<{ outcome: 'revoked', row: ApiKeyRow } | { outcome: 'already' | 'missing' }> {
  const revoked = await db.updateTable('api_keys').set({ revoked_at: new Date(), revoked_by: input.revokedBy })
    .where('id', '=', input.keyId).where('org_id', '=', input.orgId).where('revoked_at', 'is', null)
    .returningAll().executeTakeFirst()
  if (revoked !== undefined) return { outcome: 'revoked', row: revoked }
  const existing = await db.selectFrom('api_keys').select('id')
    .where('id', '=', input.keyId).where('org_id', '=', input.orgId).executeTakeFirst()
  return { outcome: existing === undefined ? 'missing' : 'already' }
}

/** A key with its org's slug, for tools that are given only the key id (the operator CLI). */
export async function findApiKeyWithOrg (db: Kysely<Database>, keyId: string): Promise<{ id: string, name: string, prefix: string, orgId: string, orgSlug: string, revokedAt: Date | null } | undefined> {
  return await db.selectFrom('api_keys as k').innerJoin('organizations as o', 'o.id', 'k.org_id')
    .select(['k.id', 'k.name', 'k.prefix', 'k.org_id as orgId', 'o.slug as orgSlug', 'k.revoked_at as revokedAt'])
    .where('k.id', '=', keyId).executeTakeFirst()
}

/** What the /public guard needs of a key: its validity and the settings it enforces (§9). */
export type ApiKeyCredential = Pick<ApiKeyRow, 'id' | 'org_id' | 'key_hash' | 'prefix' | 'expires_at' | 'revoked_at' | 'last_used_at' |
'scopes' | 'allowed_ips' | 'rate_limit_max' | 'rate_limit_window_seconds'>

export async function findApiKeyByHash (db: Kysely<Database>, keyHash: string): Promise<ApiKeyCredential | undefined> {
  return await db.selectFrom('api_keys')
    .select(['id', 'org_id', 'key_hash', 'prefix', 'expires_at', 'revoked_at', 'last_used_at', 'scopes', 'allowed_ips', 'rate_limit_max', 'rate_limit_window_seconds'])
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
