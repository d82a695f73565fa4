import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { openDatabase, migrateToLatest, type DatabaseHandle } from '../db/connect.ts'
import type { Config } from '../src/config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    db: Kysely<Database>
    database: DatabaseHandle
  }
}

export interface DbPluginOptions {
  config: Config
  /** an already migrated database owned by the caller (tests share one per process) */
  database?: DatabaseHandle
}

async function dbPlugin (app: FastifyInstance, { config, database }: DbPluginOptions): Promise<void> {
  const owned = database === undefined
  const handle = database ?? await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    onPoolError: error => app.log.warn({ err: error }, 'database connection lost')
  })
  if (owned) {
    const applied = await migrateToLatest(handle.db)
    if (applied.length > 0) app.log.info({ migrations: applied }, 'database migrated')
    app.addHook('onClose', async () => { await handle.close() })
  }
  app.decorate('db', handle.db)
  app.decorate('database', handle)
}

export default fp(dbPlugin, { name: 'db', fastify: '5.x' })
