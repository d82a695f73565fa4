import t, { type Test } from 'tap'
import { build, adminHeaders } from '../helper.ts'

function assertEnvelope (t: Test, res: { statusCode: number, json: () => any }, status: number, code: string): void {
  t.equal(res.statusCode, status)
  const body = res.json()
  t.equal(body.status, 'error')
  t.equal(body.code, code)
  t.type(body.message, 'string')
}

t.test('unknown routes are a 404 envelope', async t => {
  const app = await build(t)
  for (const url of ['/', '/nope', '/api/v1/nothing', '/api/v2/admin/orgs', '/api/v1/admin/orgs/acme/nothing']) {
    assertEnvelope(t, await app.inject({ method: 'GET', url, headers: adminHeaders }), 404, 'not_found')
  }
})

t.test('garbage bodies get 4xx envelopes, never a 500', async t => {
  const app = await build(t)
  const url = '/api/v1/admin/orgs'
  const json = { ...adminHeaders, 'content-type': 'application/json' }
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: '{"slug":' }), 400, 'invalid_json')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: 'null' }), 400, 'validation_failed')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: '[]' }), 400, 'validation_failed')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: '"text"' }), 400, 'validation_failed')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: '{"__proto__":{"x":1}}' }), 400, 'invalid_json')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: '{"slug":{"$ne":1},"name":"x"}' }), 400, 'validation_failed')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json, payload: JSON.stringify({ slug: 'a'.repeat(20_000) }) }), 413, 'payload_too_large')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: { ...adminHeaders, 'content-type': 'text/plain' }, payload: 'hello' }), 415, 'unsupported_media_type')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: { ...adminHeaders, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'slug=x' }), 415, 'unsupported_media_type')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: { ...adminHeaders, 'content-type': 'multipart/form-data; boundary=x' }, payload: '--x--' }), 415, 'unsupported_media_type')
  assertEnvelope(t, await app.inject({ method: 'POST', url, headers: json }), 400, 'validation_failed')
  const deep = '['.repeat(5000) + ']'.repeat(5000)
  const deepRes = await app.inject({ method: 'POST', url, headers: json, payload: deep })
  t.ok(deepRes.statusCode >= 400 && deepRes.statusCode < 500, `deep nesting is a 4xx (${deepRes.statusCode})`)
})

t.test('validation errors name the offending field', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug: 'ok-slug', name: 123 } })
  assertEnvelope(t, res, 400, 'validation_failed')
  t.match(res.json().message, /^body\.name /)
})

t.test('success responses are wrapped, and carry a request id', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders })
  t.equal(res.statusCode, 200)
  t.equal(res.json().status, 'success')
  t.type(res.json().data.orgs, Array)
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('wrong methods are 404 envelopes', async t => {
  const app = await build(t)
  assertEnvelope(t, await app.inject({ method: 'DELETE', url: '/api/v1/admin/orgs', headers: adminHeaders }), 404, 'not_found')
})

t.test('URLs refused before routing still get the envelope', async t => {
  const app = await build(t)
  assertEnvelope(t, await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${'a'.repeat(150)}`, headers: adminHeaders, payload: { name: 'x' } }), 414, 'uri_too_long')
  assertEnvelope(t, await app.inject({ method: 'PATCH', url: '/api/v1/admin/orgs/%E0%A4%A', headers: adminHeaders, payload: { name: 'x' } }), 400, 'bad_request')
})
