import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// The index of a target's events also holds their org and type (INCLUDE): a page of a target's
// events in an org (and of some types) finds its ids from the index alone and fetches only the
// rows of the page. Before, every event of the target was read from the table to check its org
// (200 events of a key: 200 table pages for a page of 50). Existing events are kept.
export async function up (db: Kysely<any>): Promise<void> {
  await sql`create index audit_events_target_org_page_idx on audit_events (target_id, created_at desc, id desc) include (org_id, type)`.execute(db)
  await db.schema.dropIndex('audit_events_target_page_idx').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`create index audit_events_target_page_idx on audit_events (target_id, created_at desc, id desc)`.execute(db)
  await db.schema.dropIndex('audit_events_target_org_page_idx').execute()
}
