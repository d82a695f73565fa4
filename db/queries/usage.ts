import { sql, type Kysely } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database } from '../database.ts'
import type { UsageBucket } from '../../schemas/usage.ts'

/** What one bucket counts (§14): the documented bucket's fields but its start. */
export type UsageCounts = Omit<Static<typeof UsageBucket>, 'start'>
/** The counters, in this order in memory and in the database: each one of UsageCounts, and all of them. */
export const USAGE_COUNTERS = ['total', 'success', 'clientError', 'forbidden', 'rateLimited', 'tokensValid', 'tokensInvalid'] as const satisfies ReadonlyArray<keyof UsageCounts>
type MissingCounter = Exclude<keyof UsageCounts, typeof USAGE_COUNTERS[number]>
export const everyCounterListed: [MissingCounter] extends [never] ? true : MissingCounter = true

/** A bucket with nothing counted (a fresh object: callers add to it). */
export function zeroUsage (): UsageCounts {
  return { total: 0, success: 0, clientError: 0, forbidden: 0, rateLimited: 0, tokensValid: 0, tokensInvalid: 0 }
}

export interface UsageIncrement { keyId: string, hour: Date, counts: UsageCounts }

/**
 * Adds counts to their hourly buckets in one statement. Additive, so every instance flushes its
 * own counts and they add up; a bucket of a key deleted meanwhile is skipped, not an error.
 */
export async function addUsage (db: Kysely<Database>, increments: UsageIncrement[]): Promise<void> {
  if (increments.length === 0) return
  const rows = sql.join(increments.map(({ keyId, hour, counts }) => sql`(${keyId}, ${hour.toISOString()}::timestamptz, ${counts.total}::bigint, ${counts.success}::bigint, ${counts.clientError}::bigint, ${counts.forbidden}::bigint, ${counts.rateLimited}::bigint, ${counts.tokensValid}::bigint, ${counts.tokensInvalid}::bigint)`))
  await sql`
    insert into api_key_usage (key_id, hour, total, success, client_error, forbidden, rate_limited, tokens_valid, tokens_invalid)
    select v.* from (values ${rows}) as v(key_id, hour, total, success, client_error, forbidden, rate_limited, tokens_valid, tokens_invalid)
    where exists (select 1 from api_keys k where k.id = v.key_id)
    on conflict (key_id, hour) do update set
      total = api_key_usage.total + excluded.total,
      success = api_key_usage.success + excluded.success,
      client_error = api_key_usage.client_error + excluded.client_error,
      forbidden = api_key_usage.forbidden + excluded.forbidden,
      rate_limited = api_key_usage.rate_limited + excluded.rate_limited,
      tokens_valid = api_key_usage.tokens_valid + excluded.tokens_valid,
      tokens_invalid = api_key_usage.tokens_invalid + excluded.tokens_invalid
  `.execute(db)
}

/** The key's hourly buckets that start in [since, until), oldest first. */
export async function listHourlyUsage (db: Kysely<Database>, keyId: string, since: Date, until: Date): Promise<Array<{ hour: Date } & UsageCounts>> {
  const rows = await db.selectFrom('api_key_usage')
    .select(['hour', 'total', 'success', 'client_error', 'forbidden', 'rate_limited', 'tokens_valid', 'tokens_invalid'])
    .where('key_id', '=', keyId).where('hour', '>=', since).where('hour', '<', until)
    .orderBy('hour').execute()
  return rows.map(row => ({
    hour: row.hour,
    total: Number(row.total),
    success: Number(row.success),
    clientError: Number(row.client_error),
    forbidden: Number(row.forbidden),
    rateLimited: Number(row.rate_limited),
    tokensValid: Number(row.tokens_valid),
    tokensInvalid: Number(row.tokens_invalid)
  }))
}

/** Deletes up to `limit` buckets older than the cutoff; returns how many. */
export async function deleteUsageBefore (db: Kysely<Database>, cutoff: Date, limit: number): Promise<number> {
  const result = await sql`
    delete from api_key_usage where (key_id, hour) in (
      select key_id, hour from api_key_usage where hour < ${cutoff.toISOString()}::timestamptz limit ${limit}
    )`.execute(db)
  return Number(result.numAffectedRows ?? 0)
}

export async function isKeyOfOrg (db: Kysely<Database>, orgId: string, keyId: string): Promise<boolean> {
  return await db.selectFrom('api_keys').select('id').where('id', '=', keyId).where('org_id', '=', orgId).executeTakeFirst() !== undefined
}
