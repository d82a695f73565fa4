import { Kysely, Migrator, PostgresDialect, sql, type LogEvent } from 'kysely'
import pg from 'pg'
import { PGlite } from '@electric-sql/pglite'
import { PGliteDialect } from 'kysely-pglite-dialect'
import type { Database } from './database.ts'
import { migrationProvider } from './migrations/index.ts'

export interface DatabaseHandle {
  db: Kysely<Database>
  /** the embedded instance, when kind is pglite */
  pglite: PGlite | null
  kind: 'postgres' | 'pglite'
  /** every query Kysely sends, counted: the benchmark and the tests read it */
  stats: { queries: number }
  /** connections of the PostgreSQL pool right now; null for the embedded database, which has no pool */
  poolStats: () => PoolStats | null
  ping: () => Promise<void>
  close: () => Promise<void>
}

export interface PoolStats { total: number, idle: number, waiting: number }

export interface DatabaseOptions {
  databaseUrl: string | null
  dataDir: string
  /** a PGlite data directory dump to start from instead of initialising an empty one (tests) */
  pgliteDataDir?: Blob
  /** called with errors of idle pool connections, which must never crash the process */
  onPoolError?: (error: Error) => void
}

export function createDatabase (options: DatabaseOptions): DatabaseHandle {
  const stats = { queries: 0 }
  const log = (event: LogEvent): void => { if (event.level === 'query') stats.queries++ }
  let db: Kysely<Database>
  let kind: DatabaseHandle['kind']
  let pglite: PGlite | null = null
  let poolStats: DatabaseHandle['poolStats'] = () => null
  if (options.databaseUrl !== null) {
    kind = 'postgres'
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: 10,
      // A down database must surface as a quick 503, not a request that hangs.
      connectionTimeoutMillis: 3000,
      query_timeout: 10_000,
      idleTimeoutMillis: 30_000
    })
    pool.on('error', error => options.onPoolError?.(error))
    // pg-pool listens for errors only on idle clients: a socket that dies under a checked-out
    // client (a query in flight when the database goes away) would emit an unhandled 'error' and
    // crash the process. The query itself still fails, and the pool drops the broken client.
    pool.on('connect', client => { client.on('error', error => options.onPoolError?.(error)) })
    poolStats = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount })
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log })
  } else {
    kind = 'pglite'
    pglite = options.pgliteDataDir === undefined
      ? new PGlite(options.dataDir)
      : new PGlite({ loadDataDir: options.pgliteDataDir })
    db = new Kysely<Database>({ dialect: new PGliteDialect(pglite), log })
  }
  return {
    db,
    kind,
    pglite,
    stats,
    poolStats,
    ping: async () => { await sql`select 1`.execute(db) },
    close: async () => { await db.destroy() }
  }
}

export async function migrateToLatest (db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider })
  const { error, results } = await migrator.migrateToLatest()
  if (error !== undefined) throw error
  return (results ?? []).filter(r => r.status === 'Success').map(r => r.migrationName)
}

export async function migrateDown (db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider })
  const { error, results } = await migrator.migrateDown()
  if (error !== undefined) throw error
  return (results ?? []).filter(r => r.status === 'Success').map(r => r.migrationName)
}
