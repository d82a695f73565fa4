import { sql, type Kysely } from 'kysely'

// Frozen: this file must never import application code.
// §12 invitations, and the outbox of their mail.
// - An invitation's token is stored only as its SHA-256 (unique: the accept route finds it by it).
//   An org holds at most one pending invitation per email (case-insensitive); a lapsed one is
//   marked expired when the email is invited again.
// - mail_outbox: one row per invitation mail, written in the invitation's transaction and sent by
//   the outbox worker (src/outbox-worker.ts) after commit. It must hold the token to put it in the
//   link, sealed (AES-256-GCM); the check constraint erases it with the row's last attempt.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('invites')
    .addColumn('id', 'text', c => c.primaryKey())
    .addColumn('org_id', 'text', c => c.notNull().references('organizations.id').onDelete('cascade'))
    .addColumn('email', 'text', c => c.notNull())
    .addColumn('role', 'text', c => c.notNull().check(sql`role in ('org_admin', 'member')`))
    .addColumn('status', 'text', c => c.notNull().defaultTo('pending').check(sql`status in ('pending', 'accepted', 'revoked', 'expired')`))
    .addColumn('token_hash', 'text', c => c.notNull().unique())
    .addColumn('delivery', 'text', c => c.notNull().check(sql`delivery in ('email', 'api')`))
    .addColumn('invited_by', 'text', c => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('expires_at', 'timestamptz', c => c.notNull())
    .addColumn('created_at', 'timestamptz', c => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', c => c.notNull().defaultTo(sql`now()`))
    .addColumn('accepted_at', 'timestamptz')
    .addColumn('accepted_by', 'text', c => c.references('users.id').onDelete('set null'))
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('revoked_by', 'text', c => c.references('users.id').onDelete('set null'))
    .execute()
  await sql`create unique index invites_pending_email_key on invites (org_id, lower(email)) where status = 'pending'`.execute(db)
  await sql`create index invites_org_created_idx on invites (org_id, created_at desc, id desc)`.execute(db)

  await db.schema.createTable('mail_outbox')
    .addColumn('id', 'text', c => c.primaryKey())
    .addColumn('org_id', 'text', c => c.notNull().references('organizations.id').onDelete('cascade'))
    .addColumn('invite_id', 'text', c => c.notNull().references('invites.id').onDelete('cascade'))
    .addColumn('recipient', 'text', c => c.notNull())
    .addColumn('sealed_token', 'text')
    .addColumn('status', 'text', c => c.notNull().defaultTo('pending').check(sql`status in ('pending', 'succeeded', 'failed', 'cancelled')`))
    .addColumn('attempts', 'integer', c => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', c => c.notNull().defaultTo(sql`now()`))
    .addColumn('lease_id', 'text')
    .addColumn('leased_until', 'timestamptz')
    .addColumn('last_attempt_at', 'timestamptz')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'timestamptz', c => c.notNull().defaultTo(sql`now()`))
    .addColumn('sent_at', 'timestamptz')
    .addCheckConstraint('mail_outbox_token_only_while_pending', sql`status = 'pending' or sealed_token is null`)
    .execute()
  await sql`create index mail_outbox_due_idx on mail_outbox (next_attempt_at) where status = 'pending'`.execute(db)
  await db.schema.createIndex('mail_outbox_invite_idx').on('mail_outbox').column('invite_id').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('mail_outbox').execute()
  await db.schema.dropTable('invites').execute()
}
