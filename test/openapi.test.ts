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

t.test('every operation documents its headers, a realistic example per response and its errors in the envelope', async t => {
  const app = await build(t)
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const envelope = doc.components.schemas.ErrorResponse
  t.same(Object.keys(envelope.properties).sort(), ['code', 'message', 'status'], 'the error envelope of API.md')
  let operations = 0
  for (const [path, item] of Object.entries<Record<string, any>>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      operations++
      const name = `${method.toUpperCase()} ${path}`
      t.ok(typeof op.description === 'string' && op.description.length > 40, `${name} has a description`)
      const headers = (op.parameters ?? []).filter((p: any) => p.in === 'header').map((p: any) => p.name)
      if (/^\/api\/v1\/(auth|org|public)(\/|$)/.test(path)) t.ok(headers.includes('x-org-slug'), `${name} declares X-Org-Slug`)
      if (path.startsWith('/api/v1/public/')) {
        t.same(op.security, [{ apiKey: [] }], `${name} is secured by the apiKey scheme`)
        t.notOk(headers.includes('x-api-key'), `${name} leaves X-API-Key to the security scheme`)
      }
      for (const [status, response] of Object.entries<any>(op.responses)) {
        const media = Object.values<any>(response.content ?? {})[0]
        const examples = media === undefined
          ? []
          : media.example !== undefined ? [media.example] : Object.values<any>(media.examples ?? {}).map(e => e.value).concat(media.schema?.examples ?? [])
        t.ok(examples.length > 0, `${name} ${status} has an example`)
        if (Number(status) >= 400 && path.startsWith('/api/v1/')) {
          for (const example of examples) {
            t.same(Object.keys(example).sort(), ['code', 'message', 'status'], `${name} ${status}: the error envelope`)
            t.equal(example.status, 'error')
            t.match(example.code, /^[a-z]+(_[a-z]+)*$/, `${name} ${status}: a snake_case code`)
          }
          t.same(media.schema.allOf, [{ $ref: '#/components/schemas/ErrorResponse' }], `${name} ${status} refers to ErrorResponse`)
        }
      }
    }
  }
  t.ok(operations >= 22, `${operations} operations checked`)
})
