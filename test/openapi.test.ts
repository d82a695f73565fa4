import { readFileSync } from 'node:fs'
import t from 'tap'
import { build } from './helper.ts'

t.test('openapi.json is the document /docs/json serves (run `npm run openapi` after an API change)', async t => {
  const app = await build(t, { redisUrl: null })
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const committed = JSON.parse(readFileSync(new URL('../openapi.json', import.meta.url), 'utf8'))
  t.same(res.json(), committed)
})

t.test('the document is OpenAPI 3.1 with the security schemes and every route described', async t => {
  const app = await build(t)
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  t.equal(doc.openapi, '3.1.0')
  t.same(Object.keys(doc.components.securitySchemes).sort(), ['adminToken', 'apiKey', 'bearerAuth', 'cookieAuth', 'metricsToken'])
  t.equal(doc.components.securitySchemes.apiKey.name, 'X-API-Key')
  for (const [path, item] of Object.entries<Record<string, any>>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      t.ok(op.summary, `${method.toUpperCase()} ${path} has a summary`)
      t.ok(op.operationId, `${method.toUpperCase()} ${path} has an operationId`)
      if (path.startsWith('/api/v1/')) {
        t.ok(Object.keys(op.responses).some(s => Number(s) >= 400), `${method.toUpperCase()} ${path} documents its errors`)
      }
    }
  }
})

t.test('/docs serves the interactive reference', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
})
