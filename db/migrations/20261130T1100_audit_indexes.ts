import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// Pages of the audit log (§10) are read newest first by (created_at, id), per org or across orgs,
// filtered by type, actor or target: each filter gets an index in that order, so a page reads its
// 50 rows from an index whatever the filter (a rare type in a busy org included).
// An event's time becomes the moment it is written (clock_timestamp) rather than the start of its
// transaction (now()): a long transaction's event no longer lands behind events committed before it,
// which a reader paging newest first may already have passed.
export async function up (db: Kysely<any>): Promise<void> {
  await sql`alter table audit_events alter column created_at set default clock_timestamp()`.execute(db)
  await sql`create index audit_events_org_type_page_idx on audit_events (org_id, type, created_at desc, id desc)`.execute(db)
  await sql`create index audit_events_type_page_idx on audit_events (type, created_at desc, id desc)`.execute(db)
  await sql`create index audit_events_actor_page_idx on audit_events (actor_id, created_at desc, id desc) where actor_id is not null`.execute(db)
  await sql`create index audit_events_target_page_idx on audit_events (target_id, created_at desc, id desc)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_events_target_page_idx').execute()
  await db.schema.dropIndex('audit_events_actor_page_idx').execute()
  await db.schema.dropIndex('audit_events_type_page_idx').execute()
  await db.schema.dropIndex('audit_events_org_type_page_idx').execute()
  await sql`alter table audit_events alter column created_at set default now()`.execute(db)
}
