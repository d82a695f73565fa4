import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// The audit log of §10: events keep their rows; `action` becomes `type`, `metadata` becomes `data`,
// and the actor's email and the client address are recorded with each event. Pages are read newest
// first by (created_at, id), per org or across orgs, so both orders have an index.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('audit_events').renameColumn('action', 'type').execute()
  await db.schema.alterTable('audit_events').renameColumn('metadata', 'data').execute()
  await db.schema.alterTable('audit_events').addColumn('actor_email', 'text').execute()
  await db.schema.alterTable('audit_events').addColumn('ip', 'text').execute()
  await db.schema.dropIndex('audit_events_org_created_idx').execute()
  await sql`create index audit_events_org_page_idx on audit_events (org_id, created_at desc, id desc)`.execute(db)
  await sql`create index audit_events_page_idx on audit_events (created_at desc, id desc)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_events_page_idx').execute()
  await db.schema.dropIndex('audit_events_org_page_idx').execute()
  await db.schema.createIndex('audit_events_org_created_idx').on('audit_events').columns(['org_id', 'created_at']).execute()
  await db.schema.alterTable('audit_events').dropColumn('ip').execute()
  await db.schema.alterTable('audit_events').dropColumn('actor_email').execute()
  await db.schema.alterTable('audit_events').renameColumn('data', 'metadata').execute()
  await db.schema.alterTable('audit_events').renameColumn('type', 'action').execute()
}
