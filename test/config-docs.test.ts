import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseEnv } from 'node:util'
import t from 'tap'
import { ENVIRONMENT, loadConfig } from '../src/config.ts'
import { configTable, envExample, readmeWithTable } from '../scripts/config-docs.ts'

// The schema in src/config.ts is the one source of the configuration's documentation.
const root = new URL('..', import.meta.url)
const readme = readFileSync(new URL('README.md', root), 'utf8')
const committedExample = readFileSync(new URL('.env.example', root), 'utf8')

t.test('the README\'s configuration table is generated from the schema (run `npm run config:docs` after changing a variable)', async t => {
  t.equal(readme, readmeWithTable(readme), 'README.md is up to date')
  const table = configTable()
  for (const [name, docs] of Object.entries(ENVIRONMENT)) {
    const row = table.split('\n').find(line => line.startsWith(`| \`${name}\` |`))
    t.ok(row, `${name} has a row`)
    t.match(row, docs.default !== undefined ? `| \`${docs.default}\` |` : `| unset: ${docs.unset} |`, `${name}: its default`)
  }
})

t.test('.env.example is generated from the schema (run `npm run config:docs` after changing a variable)', async t => {
  t.equal(committedExample, envExample(), '.env.example is up to date')
})

t.test('.env.example names every variable, and with every line uncommented it is the default configuration', async t => {
  t.same(parseEnv(committedExample), {}, 'as committed it sets nothing')
  const uncommented = committedExample.replace(/^#([A-Z_]+=)/gm, '$1')
  const variables = parseEnv(uncommented)
  t.same(Object.keys(variables).sort(), Object.keys(ENVIRONMENT).sort(), 'every variable')
  const dataDir = mkdtempSync(join(tmpdir(), 'tk-config-docs-'))
  t.same(loadConfig({ ...variables, DATA_DIR: dataDir }).config, loadConfig({ DATA_DIR: dataDir }).config)
})
