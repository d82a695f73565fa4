import { writeFileSync } from 'node:fs'
import { buildApp } from '../src/app.ts'
import { testConfig } from '../test/helper.ts'

// Writes openapi.json: the OpenAPI 3.1 document /docs/json serves, committed so clients can
// generate types from it and reviews show every API change.
export async function generateOpenApi (): Promise<string> {
  const app = await buildApp(testConfig({ redisUrl: null }))
  await app.ready()
  const document = JSON.stringify(app.swagger(), null, 2) + '\n'
  await app.close()
  return document
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(new URL('../openapi.json', import.meta.url), await generateOpenApi())
  console.log('wrote openapi.json')
}
