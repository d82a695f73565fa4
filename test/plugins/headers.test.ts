import t from 'tap'
import type { InjectOptions } from 'fastify'
import { build, adminHeaders, createApiKey, createOrgWithMember } from '../helper.ts'
import { login } from '../auth-helpers.ts'

// §1: every /api/v1 response (successes, errors, 404s, refusals before routing) carries
// Cache-Control: no-store and X-Content-Type-Options: nosniff; /docs may not be framed.
t.test('every /api/v1 response carries Cache-Control: no-store and X-Content-Type-Options: nosniff', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app, 'org_admin')
  const { key } = await createApiKey(app, fixture)
  const { org, user } = fixture
  const publicHeaders = { 'x-org-slug': org.slug, 'x-api-key': key }
  const loggedIn = await login(app, org.slug, user.email, user.password)
  const cases: Array<[string, InjectOptions, number]> = [
    ['admin list', { method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders }, 200],
    ['admin without a token', { method: 'GET', url: '/api/v1/admin/orgs' }, 401],
    ['validation error', { method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug: 'X' } }, 400],
    ['unknown route', { method: 'GET', url: '/api/v1/nothing-here' }, 404],
    ['wrong content type', { method: 'POST', url: '/api/v1/admin/orgs', headers: { ...adminHeaders, 'content-type': 'text/plain' }, payload: 'x' }, 415],
    ['refused before routing', { method: 'PATCH', url: '/api/v1/admin/orgs/%E0%A4%A', headers: adminHeaders, payload: { name: 'x' } }, 400],
    ['login', { method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': org.slug }, payload: { email: user.email, password: user.password }, remoteAddress: '192.0.2.77' }, 200],
    ['me', { method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.slug, authorization: `Bearer ${loggedIn.json().data.accessToken}` } }, 200],
    ['public org', { method: 'GET', url: '/api/v1/public/org', headers: publicHeaders }, 200],
    ['public verify (its own serializer)', { method: 'POST', url: '/api/v1/public/verify', headers: publicHeaders, payload: { token: loggedIn.json().data.accessToken } }, 200],
    ['public verify, bad key', { method: 'POST', url: '/api/v1/public/verify', headers: { ...publicHeaders, 'x-api-key': 'pk_live_nope' }, payload: { token: 'x' } }, 401]
  ]
  for (const [label, request, status] of cases) {
    const res = await app.inject(request)
    t.equal(res.statusCode, status, `${label}: ${status}`)
    t.equal(res.headers['cache-control'], 'no-store', `${label}: Cache-Control: no-store`)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${label}: nosniff`)
  }
  for (const url of ['/health', '/ready']) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.headers['cache-control'], 'no-store', `${url}: no-store`)
  }
})

t.test('/docs cannot be framed: CSP frame-ancestors \'none\' and X-Frame-Options: DENY', async t => {
  const app = await build(t)
  for (const url of ['/docs', '/docs/', '/docs/json', '/docs/static/index.html']) {
    const res = await app.inject({ method: 'GET', url })
    t.ok(res.statusCode < 400, `${url}: ${res.statusCode}`)
    t.match(res.headers['content-security-policy'], /(^|;\s*)frame-ancestors 'none'(;|$)/, `${url}: CSP frame-ancestors 'none'`)
    t.equal(res.headers['x-frame-options'], 'DENY', `${url}: X-Frame-Options`)
  }
})
