import t from 'tap'
import type { InjectOptions } from 'fastify'
import { adminHeaders, build, createApiKey, createOrgWithMember, sessionToken, uniqueSlug } from './helper.ts'

// §1 Unicode: any string a client can send may hold lone surrogates and U+0000. Where the stores
// cannot hold it (PostgreSQL refuses U+0000 in text and a lone surrogate in json, the embedded
// database turns a lone surrogate into U+FFFD), the answer is 400 validation_failed naming the
// field — never a 500, never a silently changed value.
const UNSTORABLE: Array<[string, string]> = [
  ['a lone high surrogate', '\ud800 x'],
  ['a lone low surrogate', 'x \udfff'],
  ['a pair in the wrong order', '\udc00\ud800'],
  ['U+0000', 'a\u0000b']
]

t.test('JSON bodies: every string the stores cannot hold is a 400 naming the field', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app, 'org_admin')
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const orgHeaders = { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug }
  const { key, id: keyId } = await createApiKey(app, fixture)
  const publicHeaders = { 'x-org-slug': fixture.org.slug, 'x-api-key': key }

  for (const [what, bad] of UNSTORABLE) {
    const cases: Array<[InjectOptions, string]> = [
      [{ method: 'POST', url: '/api/v1/org/api-keys', headers: orgHeaders, payload: { name: bad } }, 'body.name'],
      [{ method: 'PATCH', url: `/api/v1/org/api-keys/${keyId}`, headers: orgHeaders, payload: { allowedIps: ['10.0.0.1', bad] } }, 'body.allowedIps.1'],
      [{ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug: uniqueSlug('uni'), name: bad } }, 'body.name'],
      [{ method: 'PATCH', url: `/api/v1/admin/orgs/${fixture.org.slug}`, headers: adminHeaders, payload: { name: bad } }, 'body.name'],
      [{ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email: 'uni@acme.test', name: bad, password: 'correct horse battery' } }, 'body.name'],
      [{ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': fixture.org.slug }, payload: { email: fixture.user.email, password: bad } }, 'body.password'],
      [{ method: 'POST', url: '/api/v1/public/verify', headers: publicHeaders, payload: { token: bad } }, 'body.token'],
      [{ method: 'POST', url: '/api/v1/org/api-keys', headers: orgHeaders, payload: { name: 'fine', [bad]: 1 } }, `body.${JSON.stringify(bad)}`]
    ]
    for (const [request, field] of cases) {
      const res = await app.inject(request)
      t.equal(res.statusCode, 400, `${request.method} ${request.url} with ${what}: 400`)
      t.match(res.json(), { status: 'error', code: 'validation_failed' })
      t.ok(res.json().message.startsWith(`${field} must not contain U+0000 or a lone surrogate`), `names ${field}: ${res.json().message}`)
    }
  }
})

t.test('the URL and the headers stored: U+0000 (%00) is a 400 naming the parameter or header', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app, 'org_admin')
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const orgHeaders = { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug }
  const cases: Array<[InjectOptions, string]> = [
    [{ method: 'GET', url: '/api/v1/org/audit-events?type=%00user.login', headers: orgHeaders }, 'querystring.type'],
    // A route that takes no query at all still reads it: the 400 is in every /api/v1 operation's document (the fuzzer found one without).
    [{ method: 'GET', url: '/api/v1/admin/orgs?x=%00', headers: adminHeaders }, 'querystring.x'],
    [{ method: 'PATCH', url: '/api/v1/admin/orgs/acme%00', headers: adminHeaders, payload: { name: 'x' } }, 'params.slug'],
    [{ method: 'GET', url: '/api/v1/org', headers: { ...orgHeaders, 'x-org-slug': 'acme\u0000' } }, 'headers.x-org-slug'],
    [{ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': '\ud800', 'x-api-key': 'pk_live_x' } }, 'headers.x-org-slug'],
    [{ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': fixture.org.slug, 'user-agent': 'curl/8 \ud800' }, payload: { email: fixture.user.email, password: fixture.user.password } }, 'headers.user-agent']
  ]
  for (const [request, field] of cases) {
    const res = await app.inject(request)
    t.equal(res.statusCode, 400, `${request.method} ${request.url}: 400`)
    t.match(res.json(), { status: 'error', code: 'validation_failed' })
    t.ok(res.json().message?.startsWith(`${field} must not contain U+0000 or a lone surrogate`), `names ${field}: ${res.json().message}`)
  }
  t.equal((await app.inject({ method: 'GET', url: '/health?x=%00' })).statusCode, 200, '/health reads no query')
})

t.test('well-formed Unicode is stored exactly: pairs (emoji), combining marks, U+FFFD itself, escaped or not', async t => {
  const app = await build(t)
  const slug = uniqueSlug('uni')
  const name = 'Ωmega 🔑 e\u0301 \ufffd \u202e'
  const raw = JSON.stringify({ slug, name }).replace('🔑', '\\ud83d\\udd11') // the pair as escapes, as JSON.stringify-ing clients send it
  const created = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: raw })
  t.equal(created.statusCode, 201)
  t.equal(created.json().data.org.name, name)
  const listed = await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders })
  t.equal(listed.json().data.orgs.find((org: { slug: string }) => org.slug === slug)?.name, name, 'read back unchanged')
  const literal = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug: uniqueSlug('uni'), name: 'a literal \\ud800 is text' } })
  t.equal(literal.statusCode, 201, 'a backslash followed by ud800 is just text')
})
