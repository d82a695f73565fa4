import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// Webhooks (§11) and their deliveries, an outbox: a delivery row is written in the transaction of
// its event, and a worker in every instance claims due rows (src/outbox-worker.ts).
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('webhooks')
    .addColumn('id', 'text', col => col.primaryKey())
    .addColumn('org_id', 'text', col => col.notNull().references('organizations.id').onDelete('cascade'))
    .addColumn('url', 'text', col => col.notNull())
    .addColumn('events', sql`text[]`, col => col.notNull())
    .addColumn('description', 'text')
    .addColumn('is_active', 'boolean', col => col.notNull().defaultTo(true))
    // The signing secret must be readable to sign, so it is encrypted (AES-256-GCM), not hashed.
    .addColumn('secret_ciphertext', 'text', col => col.notNull())
    // After a rotation the old secret still signs (a second webhook-signature entry) until it expires.
    .addColumn('previous_secret_ciphertext', 'text')
    .addColumn('previous_secret_expires_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', col => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', col => col.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('webhooks_org_idx').on('webhooks').columns(['org_id', 'id']).execute()

  await db.schema.createTable('webhook_deliveries')
    .addColumn('id', 'text', col => col.primaryKey())
    .addColumn('webhook_id', 'text', col => col.notNull().references('webhooks.id').onDelete('cascade'))
    .addColumn('org_id', 'text', col => col.notNull())
    .addColumn('event_id', 'text', col => col.notNull())
    .addColumn('event_type', 'text', col => col.notNull())
    // The exact request body, fixed when the delivery is written: every attempt sends the same bytes.
    .addColumn('payload', 'text', col => col.notNull())
    // The columns of an outbox table (src/outbox-worker.ts).
    .addColumn('status', 'text', col => col.notNull().defaultTo('pending').check(sql`status in ('pending', 'succeeded', 'failed')`))
    .addColumn('attempts', 'integer', col => col.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', col => col.notNull().defaultTo(sql`now()`))
    .addColumn('lease_id', 'text')
    .addColumn('leased_until', 'timestamptz')
    // null: as many attempts as the retry schedule has; a manual retry of a finished delivery allows one more
    .addColumn('attempt_limit', 'integer')
    .addColumn('last_attempt_at', 'timestamptz')
    .addColumn('last_response_status', 'integer')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'timestamptz', col => col.notNull().defaultTo(sql`now()`))
    .execute()
  await sql`create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at) where status = 'pending'`.execute(db)
  // The delivery log, newest first; ids are time-sortable, so retention deletes by id range too.
  await sql`create index webhook_deliveries_webhook_idx on webhook_deliveries (webhook_id, id desc)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').execute()
  await db.schema.dropTable('webhooks').execute()
}
