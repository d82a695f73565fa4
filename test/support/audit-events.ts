import { sql, type Kysely } from 'kysely'
import type { Database } from '../../db/database.ts'
import { newId } from '../../src/ids.ts'

export interface SeedOptions {
  type?: string
  /** the time between two events, going back (0: all at one instant, ordered by id alone) */
  step?: string
  /** how far back from now the newest seeded event is */
  age?: string
  actorId?: string | null
}

/**
 * `count` events of one org written straight into the table in one statement (generate_series):
 * the state a busy org reaches, made without `count` requests. Returns the seeded ids' common prefix.
 */
export async function seedEvents (db: Kysely<Database>, orgId: string, count: number, options: SeedOptions = {}): Promise<string> {
  const { type = 'member.updated', step = '1 millisecond', age = '0 seconds', actorId = null } = options
  const seed = newId('evt').slice(0, 20)
  await sql`
    insert into audit_events (id, org_id, type, actor_type, actor_id, actor_email, target_type, target_id, data, ip, created_at)
    select ${seed} || lpad(upper(to_hex(n)), 10, '0'), ${orgId}, ${type}, 'system', ${actorId}, null, 'user',
           'usr_' || ${seed.slice(4)} || lpad(upper(to_hex(n)), 10, '0'), '{}'::jsonb, null,
           date_trunc('second', now()) - ${age}::interval - (n * ${step}::interval)
    from generate_series(1, ${count}) as n`.execute(db)
  return seed
}
