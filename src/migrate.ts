import { loadConfig, ConfigError } from './config.ts'
import { createDatabase, migrateDown, migrateToLatest } from '../db/connect.ts'

// npm run db:migrate [-- down]
try {
  const { config } = loadConfig(process.env)
  const database = createDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir })
  try {
    const applied = process.argv[2] === 'down' ? await migrateDown(database.db) : await migrateToLatest(database.db)
    console.log(applied.length === 0 ? 'Database is up to date.' : `${process.argv[2] === 'down' ? 'Reverted' : 'Applied'}: ${applied.join(', ')}`)
  } finally {
    await database.close()
  }
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `Migration failed: ${(error as Error).message}`)
  process.exitCode = 1
}
