import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// An event's org is no longer a foreign key. Its check ran on every event (a trigger, and a
// FOR KEY SHARE lock of the org's row, which concurrent writes of one org turn into multixacts),
// on the path of every write route, to guard a deletion no route makes; and an audit trail is
// meant to outlive what it records, where the constraint's cascade would have deleted it.
export async function up (db: Kysely<any>): Promise<void> {
  await sql`alter table audit_events drop constraint audit_events_org_id_fkey`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`alter table audit_events add constraint audit_events_org_id_fkey foreign key (org_id) references organizations (id) on delete cascade`.execute(db)
}
