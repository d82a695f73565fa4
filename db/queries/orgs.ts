import type { Kysely } from 'kysely'
import type { Static } from '@sinclair/typebox'
import type { Database, NewOrganization, OrganizationRow, OrganizationUpdate } from '../database.ts'
import type { AdminOrg } from '../../schemas/admin.ts'

/**
 * An org as the admin routes answer it: §2's fields and its budget per API key (§9), or null for
 * the service default. The other routes document §2's fields alone (schemas/common.ts Org), a
 * subset of this type; their serializer leaves the budget out.
 */
export type Org = Static<typeof AdminOrg>

export function toOrg (row: OrganizationRow): Org {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    plan: row.plan,
    status: row.status,
    appUrl: row.app_url,
    createdAt: row.created_at.toISOString(),
    rateLimit: row.rate_limit_max === null || row.rate_limit_window_seconds === null
      ? null
      : { max: row.rate_limit_max, windowSeconds: row.rate_limit_window_seconds }
  }
}

export async function insertOrg (db: Kysely<Database>, row: NewOrganization): Promise<Org | null> {
  const inserted = await db.insertInto('organizations').values(row)
    .onConflict(oc => oc.column('slug').doNothing())
    .returningAll().executeTakeFirst()
  return inserted === undefined ? null : toOrg(inserted)
}

export async function findOrgBySlug (db: Kysely<Database>, slug: string): Promise<Org | null> {
  const row = await db.selectFrom('organizations').selectAll().where('slug', '=', slug).executeTakeFirst()
  return row === undefined ? null : toOrg(row)
}

/** The org, locked until the transaction ends, so a change and the event that names it see the same before. */
export async function lockOrgBySlug (trx: Kysely<Database>, slug: string): Promise<Org | null> {
  const row = await trx.selectFrom('organizations').selectAll().where('slug', '=', slug).forUpdate().executeTakeFirst()
  return row === undefined ? null : toOrg(row)
}

export async function findOrgById (db: Kysely<Database>, id: string): Promise<Org | null> {
  const row = await db.selectFrom('organizations').selectAll().where('id', '=', id).executeTakeFirst()
  return row === undefined ? null : toOrg(row)
}

export async function listOrgs (db: Kysely<Database>): Promise<Org[]> {
  const rows = await db.selectFrom('organizations').selectAll().orderBy('created_at', 'asc').orderBy('id', 'asc').execute()
  return rows.map(toOrg)
}

export async function updateOrgBySlug (db: Kysely<Database>, slug: string, changes: OrganizationUpdate): Promise<Org | null> {
  const row = await db.updateTable('organizations').set({ ...changes, updated_at: new Date() })
    .where('slug', '=', slug).returningAll().executeTakeFirst()
  return row === undefined ? null : toOrg(row)
}
