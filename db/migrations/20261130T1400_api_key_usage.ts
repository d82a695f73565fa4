import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// §14: per-key request counts in hourly buckets. Instances add to a bucket (upsert), so several
// instances' counts add up; day buckets are summed from hours when read.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('api_key_usage')
    .addColumn('key_id', 'text', c => c.notNull().references('api_keys.id').onDelete('cascade'))
    .addColumn('hour', 'timestamptz', c => c.notNull())
    .addColumn('total', 'bigint', c => c.notNull().defaultTo(0))
    .addColumn('success', 'bigint', c => c.notNull().defaultTo(0))
    .addColumn('client_error', 'bigint', c => c.notNull().defaultTo(0))
    .addColumn('forbidden', 'bigint', c => c.notNull().defaultTo(0))
    .addColumn('rate_limited', 'bigint', c => c.notNull().defaultTo(0))
    .addColumn('tokens_valid', 'bigint', c => c.notNull().defaultTo(0))
    .addColumn('tokens_invalid', 'bigint', c => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('api_key_usage_pkey', ['key_id', 'hour'])
    .execute()
  // Retention deletes by age across all keys.
  await sql`create index api_key_usage_hour_idx on api_key_usage (hour)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('api_key_usage').execute()
}
