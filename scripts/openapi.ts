import { writeFileSync } from 'node:fs'
import { buildApp } from '../src/app.ts'
import { testConfig } from '../test/helper.ts'
import { createDatabase, migrateToLatest } from '../db/connect.ts'

// Writes openapi.json: the OpenAPI 3.1 document /docs/json serves, committed so clients can
// generate types from it and reviews show every API change.
export async function generateOpenApi (): Promise<string> {
  // Migrated before the app starts: on a loaded machine, initialising PGlite inside the db plugin
  // can outlast Fastify's 10 s plugin timeout, which failed the document's generation.
  const database = createDatabase({ databaseUrl: null, dataDir: 'memory://' })
  try {
    await migrateToLatest(database.db)
    const app = await buildApp(testConfig({ redisUrl: null }), { database })
    await app.ready()
    const document = JSON.stringify(app.swagger(), null, 2) + '\n'
    await app.close()
    return document
  } finally {
    await database.close()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(new URL('../openapi.json', import.meta.url), await generateOpenApi())
  console.log('wrote openapi.json')
}
