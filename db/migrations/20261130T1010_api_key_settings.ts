import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// §9: a key's description, scopes, own budget, IP allowlist, rotation links and who created it;
// an org's budget per API key. A budget is both numbers or neither.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_keys')
    .addColumn('description', 'text')
    .addColumn('scopes', sql`text[]`, c => c.notNull().defaultTo(sql`'{tokens:verify,users:read,org:read}'::text[]`))
    .addColumn('rate_limit_max', 'integer')
    .addColumn('rate_limit_window_seconds', 'integer')
    .addColumn('allowed_ips', sql`text[]`, c => c.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('rotated_from_id', 'text')
    .addColumn('rotated_to_id', 'text')
    .addColumn('created_by_type', 'text', c => c.notNull().defaultTo('user').check(sql`created_by_type in ('user', 'admin', 'system')`))
    .execute()
  await db.schema.alterTable('api_keys')
    .addCheckConstraint('api_keys_rate_limit_whole', sql`(rate_limit_max is null) = (rate_limit_window_seconds is null)`)
    .execute()
  await db.schema.alterTable('organizations')
    .addColumn('rate_limit_max', 'integer')
    .addColumn('rate_limit_window_seconds', 'integer')
    .execute()
  await db.schema.alterTable('organizations')
    .addCheckConstraint('organizations_rate_limit_whole', sql`(rate_limit_max is null) = (rate_limit_window_seconds is null)`)
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('organizations').dropConstraint('organizations_rate_limit_whole').execute()
  await db.schema.alterTable('organizations')
    .dropColumn('rate_limit_window_seconds')
    .dropColumn('rate_limit_max')
    .execute()
  await db.schema.alterTable('api_keys').dropConstraint('api_keys_rate_limit_whole').execute()
  await db.schema.alterTable('api_keys')
    .dropColumn('created_by_type')
    .dropColumn('rotated_to_id')
    .dropColumn('rotated_from_id')
    .dropColumn('allowed_ips')
    .dropColumn('rate_limit_window_seconds')
    .dropColumn('rate_limit_max')
    .dropColumn('scopes')
    .dropColumn('description')
    .execute()
}
