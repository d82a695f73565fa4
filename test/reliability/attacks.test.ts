import { createHmac, generateKeyPairSync, sign as rsaSign } from 'node:crypto'
import net from 'node:net'
import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { addMember, build, createApiKey, createOrgWithMember, createUser, sessionToken, testConfig, uniqueEmail, type Fixture } from '../helper.ts'
import { generateApiKey } from '../../src/api-key-format.ts'
import { newId } from '../../src/ids.ts'
import { operationsOf } from './support/fuzz.ts'
import { request } from './support/http.ts'
import { capturedLogLines, findLeaks } from '../log-secrets.ts'

// What an attacker tries against a running service, each answered the way the contract says:
// another org's ids, forged access tokens, key guessing, oversized and slow requests, and a
// browser origin on /public.

const SNAKE = /^[a-z][a-z0-9_]*$/

function assertError (t: Test, res: LightMyRequestResponse, statuses: number[], what: string): void {
  t.ok(statuses.includes(res.statusCode), `${what}: ${res.statusCode} is one of ${statuses.join('/')}`, { body: res.body.slice(0, 300) })
  let body: any
  try {
    body = res.json()
  } catch {
    t.fail(`${what}: body is not JSON: ${res.body.slice(0, 200)}`)
    return
  }
  t.ok(body.status === 'error' && typeof body.message === 'string' && SNAKE.test(body.code), `${what}: the error envelope`, { body })
}

interface Tenant extends Fixture {
  member: { id: string }
  key: { key: string, id: string }
  /** org_admin's bearer and X-Org-Slug */
  adminHeaders: Record<string, string>
  keyHeaders: Record<string, string>
}

async function tenant (app: FastifyInstance): Promise<Tenant> {
  const fixture = await createOrgWithMember(app, 'org_admin')
  const member = await createUser(app)
  await addMember(app, fixture.org.slug, member.id, 'member')
  const key = await createApiKey(app, fixture)
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  return {
    ...fixture,
    member,
    key,
    adminHeaders: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug },
    keyHeaders: { 'x-api-key': key.key, 'x-org-slug': fixture.org.slug }
  }
}

function fillPath (path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(values[name]))
}

/** `METHOD /path/:param` for each route of Fastify's printed route tree that has a path parameter. */
function routesWithParams (tree: string): string[] {
  const stack: string[] = []
  const routes: string[] = []
  for (const line of tree.split('\n')) {
    const match = /^([│├└─\s]*)(\S.*?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (match === null) continue
    const depth = Math.floor(match[1].length / 4)
    stack.length = depth
    stack[depth] = match[2]
    const path = stack.join('')
    for (const method of (match[3] ?? '').split(', ').filter(m => m !== '' && m !== 'HEAD')) {
      if (path.includes(':') && !path.startsWith('/docs')) routes.push(`${method} ${path}`)
    }
  }
  return routes
}

// Routes whose path ids are not an org's objects: the platform operator's API, which sees every org.
const NOT_TENANT_SCOPED = /^\/api\/v1\/admin\//

t.test('BOLA: org A\'s credentials with org B\'s ids → 404, and B is unchanged', async t => {
  const app = await build(t)
  const a = await tenant(app)
  const b = await tenant(app)
  const spareA = await createUser(app)
  await addMember(app, a.org.slug, spareA.id, 'member')
  const spareKeyA = await createApiKey(app, a)

  const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const withIds = operationsOf(document).filter(op => op.pathParams.length > 0)
  const tenantScoped = withIds.filter(op => !NOT_TENANT_SCOPED.test(op.path))
  // The route table too, so an id-taking route left out of the OpenAPI document is not missed.
  const documented = new Set(withIds.map(op => `${op.method} ${op.path.replace(/\{(\w+)\}/g, ':$1')}`))
  const routed = routesWithParams(app.printRoutes({ commonPrefix: false, includeHooks: false }))
  t.ok(routed.length >= withIds.length, `${routed.length} routes with a path parameter in the route table`)
  t.same(routed.filter(route => !documented.has(route)), [], 'every one of them is in the OpenAPI document, so it is tried below')
  t.ok(tenantScoped.length >= 4, `${tenantScoped.length} tenant-scoped operations take an id: ${tenantScoped.map(op => `${op.method} ${op.path}`).join(', ')}`)

  // B's object for each id a route can take, and A's own (the control: the route is reachable;
  // a DELETE gets a spare, so the other routes' controls still find theirs).
  const invite = async (tenant: typeof a): Promise<string> => (await app.inject({ method: 'POST', url: '/api/v1/org/members/invite', headers: tenant.adminHeaders, payload: { email: uniqueEmail() } })).json().data.invite.id
  // A webhook (with a delivery: its test event) per tenant; WEBHOOK_ALLOW_PRIVATE is on in tests.
  const webhook = async (tenant: typeof a): Promise<{ webhookId: string, deliveryId: string }> => {
    const created = await app.inject({ method: 'POST', url: '/api/v1/org/webhooks', headers: tenant.adminHeaders, payload: { url: 'http://127.0.0.1:9/hook', events: ['*'] } })
    const webhookId: string = created.json().data.webhook.id
    const tested = await app.inject({ method: 'POST', url: `/api/v1/org/webhooks/${webhookId}/test`, headers: tenant.adminHeaders })
    return { webhookId, deliveryId: tested.json().data.delivery.id }
  }
  const ofB: Record<string, string> = { userId: b.member.id, keyId: b.key.id, inviteId: await invite(b), ...await webhook(b) }
  const inviteA = await invite(a)
  const spareInviteA = await invite(a)
  const webhookA = await webhook(a)
  const spareWebhookA = await webhook(a)
  const ofA = (method: string): Record<string, string> => method === 'DELETE'
    ? { userId: spareA.id, keyId: spareKeyA.id, inviteId: spareInviteA, ...spareWebhookA }
    : { userId: a.member.id, keyId: a.key.id, inviteId: inviteA, ...webhookA }
  // What each PATCH would change: B's object must stay as it is, A's own is changed harmlessly.
  const bodyOf = (op: { method: string, path: string }, control: boolean): object | undefined => {
    if (op.method !== 'PATCH') return undefined
    if (op.path.includes('/webhooks/')) return { description: control ? 'changed by A' : 'hijacked by A' }
    return control ? { role: 'member' } : { role: 'org_admin', status: 'suspended' }
  }
  let tried = 0
  const malformed = [
    ['nonexistent', (name: string) => name === 'keyId' ? newId('key') : newId('usr')],
    ['another kind of id', (name: string) => name === 'keyId' ? b.member.id : b.key.id],
    ['an org id', () => b.org.id],
    ['lower-cased', (name: string) => ofB[name].toLowerCase()],
    ['garbage', () => 'not-an-id'],
    ['SQL', () => "' OR '1'='1"],
    ['dots', () => '..'],
    ['NUL', () => '\u0000'],
    ['unicode', () => 'usr_ＡＢＣ🔑'],
    ['64 characters', () => 'a'.repeat(64)],
    ['65 characters', () => 'a'.repeat(65)],
    ['300 characters', () => 'k'.repeat(300)]
  ] as const

  for (const op of tenantScoped) {
    const name = `${op.method} ${op.path}`
    const isPublic = op.path.startsWith('/api/v1/public/')
    const headers = isPublic ? a.keyHeaders : a.adminHeaders
    const missing = op.pathParams.map(p => p.name).filter(p => ofB[p] === undefined)
    t.same(missing, [], `${name}: the test knows an object of B for each of its ids (add new id kinds to ofB)`)
    if (missing.length > 0) continue

    const cross = await app.inject({ method: op.method as 'GET', url: fillPath(op.path, ofB), headers, payload: bodyOf(op, false) })
    tried++
    assertError(t, cross, [404], `${name} with B's id`)
    t.equal(cross.json().code, 'not_found', `${name}: not_found`)

    for (const [what, make] of malformed) {
      const values = Object.fromEntries(op.pathParams.map(p => [p.name, make(p.name)]))
      const res = await app.inject({ method: op.method as 'GET', url: fillPath(op.path, values), headers, payload: bodyOf(op, false) })
      tried++
      assertError(t, res, [400, 404, 414], `${name} with ${what} id`)
    }

    const control = await app.inject({ method: op.method as 'GET', url: fillPath(op.path, ofA(op.method)), headers, payload: bodyOf(op, true) })
    t.ok(control.statusCode >= 200 && control.statusCode < 300, `${name} with A's own id: 2xx (so the 404s above are the org check)`, { body: control.body, status: control.statusCode })
  }

  // A's key presented with B's slug is not B's key: 401, as any key mismatch.
  const slugSwap = await app.inject({ method: 'GET', url: `/api/v1/public/users/${b.member.id}`, headers: { ...a.keyHeaders, 'x-org-slug': b.org.slug } })
  assertError(t, slugSwap, [401], 'A\'s key with B\'s X-Org-Slug')

  const members = (await app.inject({ method: 'GET', url: '/api/v1/org/members', headers: b.adminHeaders })).json().data.members
  t.match(members.find((m: { userId: string }) => m.userId === b.member.id), { role: 'member', status: 'active' }, 'B\'s member is still there, same role and status')
  t.match(members.find((m: { userId: string }) => m.userId === b.user.id), { role: 'org_admin', status: 'active' }, 'B\'s admin too')
  const keys = (await app.inject({ method: 'GET', url: '/api/v1/org/api-keys', headers: b.adminHeaders })).json().data.apiKeys
  t.match(keys.find((k: { id: string }) => k.id === b.key.id), { isActive: true }, 'B\'s key is still active')
  t.equal((await app.inject({ method: 'GET', url: `/api/v1/public/users/${b.member.id}`, headers: b.keyHeaders })).statusCode, 200, 'B\'s key still works, and B\'s member is still B\'s')
  const webhookB = (await app.inject({ method: 'GET', url: `/api/v1/org/webhooks/${ofB.webhookId}`, headers: b.adminHeaders })).json().data.webhook
  t.match(webhookB, { isActive: true, description: null }, 'B\'s webhook is still there, unchanged')
  const ignored = withIds.filter(op => NOT_TENANT_SCOPED.test(op.path)).map(op => `${op.method} ${op.path}`)
  t.comment(`BOLA: ${routed.length} routes with a path parameter (${routed.join(', ')}); ${tenantScoped.length} tenant-scoped, ${tried} cross-org or malformed requests; not tenant-scoped: ${ignored.join(', ')}`)
})

// ---- forged access tokens (RFC 8725) ----

const SECRET = testConfig().jwtSecret
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

function hmacJwt (header: Record<string, unknown>, claims: Record<string, unknown>, secret: string | Buffer = SECRET): string {
  const input = `${b64(header)}.${b64(claims)}`
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512', RS256: 'sha256' }[header.alg as string]
  return `${input}.${hash === undefined ? '' : createHmac(hash, secret).update(input).digest('base64url')}`
}

t.test('forged access tokens are refused at /auth/me (401) and /public/verify (valid: false)', async t => {
  const app = await build(t)
  const org = await tenant(app)
  const { token } = await sessionToken(app, { userId: org.member.id, orgId: org.org.id, slug: org.org.slug, role: 'member' })
  const genuine = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
  const now = Math.floor(Date.now() / 1000)
  const HS256 = { alg: 'HS256', typ: 'JWT' }
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' })
  const rs256Input = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(genuine)}`
  const without = (claim: string): Record<string, unknown> => Object.fromEntries(Object.entries(genuine).filter(([k]) => k !== claim))

  const refused: Array<[string, string]> = [
    ['alg none', hmacJwt({ alg: 'none', typ: 'JWT' }, genuine)],
    ['alg None with a signature', hmacJwt({ alg: 'None', typ: 'JWT' }, genuine).replace(/\.$/, '.c2ln')],
    ['HS512 with the right secret', hmacJwt({ alg: 'HS512', typ: 'JWT' }, genuine)],
    ['RS256 signed with an attacker\'s RSA key', `${rs256Input}.${rsaSign('sha256', Buffer.from(rs256Input), privateKey).toString('base64url')}`],
    ['RS256 header, HMAC-signed with an RSA public key as the secret', hmacJwt({ alg: 'RS256', typ: 'JWT' }, genuine, publicPem)],
    ['HS256 signed with an RSA public key as the secret', hmacJwt(HS256, genuine, publicPem)],
    ['signed with the wrong key', hmacJwt(HS256, genuine, 'not-the-secret-0123456789abcdef0123456789')],
    ['expired', hmacJwt(HS256, { ...genuine, iat: now - 1000, exp: now - 100 })],
    ['nbf in the future', hmacJwt(HS256, { ...genuine, nbf: now + 600 })],
    ['iat 10 minutes in the future', hmacJwt(HS256, { ...genuine, iat: now + 600, exp: now + 600 + 900 })],
    ['iat 2 minutes in the future (beyond the clock skew)', hmacJwt(HS256, { ...genuine, iat: now + 120, exp: now + 120 + 900 })],
    ['lifetime of an hour', hmacJwt(HS256, { ...genuine, iat: now, exp: now + 3600 })],
    ['lifetime of a year', hmacJwt(HS256, { ...genuine, iat: now, exp: now + 365 * 86400 })],
    ['issued 20 minutes ago, exp still ahead', hmacJwt(HS256, { ...genuine, iat: now - 1200, exp: now + 60 })],
    ['exp before iat', hmacJwt(HS256, { ...genuine, iat: now, exp: now - 1 })],
    ['exp as a string', hmacJwt(HS256, { ...genuine, exp: String(now + 600) })],
    ['typ refresh', hmacJwt(HS256, { ...genuine, typ: 'refresh' })],
    ['wrong iss', hmacJwt(HS256, { ...genuine, iss: 'https://evil.example' })],
    ['wrong aud', hmacJwt(HS256, { ...genuine, aud: 'another-service' })],
    ['no sub', hmacJwt(HS256, without('sub'))],
    ['no org', hmacJwt(HS256, without('org'))],
    ['no sid', hmacJwt(HS256, without('sid'))],
    ['no iat', hmacJwt(HS256, without('iat'))],
    ['no exp', hmacJwt(HS256, without('exp'))],
    ['another org', hmacJwt(HS256, { ...genuine, org: newId('org') })]
  ]

  const meStatus = async (jwt: string): Promise<LightMyRequestResponse> =>
    await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': org.org.slug, authorization: `Bearer ${jwt}` } })
  const verify = async (jwt: string): Promise<LightMyRequestResponse> =>
    await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers: org.keyHeaders, payload: { token: jwt } })

  // Controls: the genuine token, a hand-made one with the right secret, and one a clock a few seconds ahead issued.
  for (const [what, jwt] of [['genuine', token], ['hand-made HS256', hmacJwt(HS256, genuine)], ['iat 5 s ahead (within the skew)', hmacJwt(HS256, { ...genuine, iat: now + 5, exp: now + 5 + 900 })]]) {
    t.equal((await meStatus(jwt)).statusCode, 200, `/auth/me: ${what} passes`)
    t.equal((await verify(jwt)).json().data.valid, true, `/public/verify: ${what} is valid`)
  }
  for (const [what, jwt] of refused) {
    const me = await meStatus(jwt)
    assertError(t, me, [401], `/auth/me: ${what}`)
    const verified = await verify(jwt)
    t.equal(verified.statusCode, 200, `/public/verify: ${what} → 200`)
    t.same(verified.json(), { status: 'success', data: { valid: false } }, `/public/verify: ${what} → valid: false`)
  }
  t.comment(`JWT: ${refused.length} forged variants refused at /auth/me and /public/verify`)
})

// ---- key guessing ----

t.test('key guessing: 401s, then 429 from the failure limiter with no database query; malformed keys cost none', async t => {
  const max = 5
  const app = await build(t, { apiKeyFailureMax: max })
  const org = await tenant(app)
  const guess = async (key: string, ip: string): Promise<{ status: number, queries: number, res: LightMyRequestResponse }> => {
    const before = app.database.stats.queries
    const res = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': org.org.slug, 'x-api-key': key }, remoteAddress: ip })
    return { status: res.statusCode, queries: app.database.stats.queries - before, res }
  }

  const guesser = '198.51.100.7'
  const first = []
  for (let i = 0; i < max; i++) first.push(await guess(generateApiKey(), guesser))
  t.same(first.map(g => g.status), Array(max).fill(401), `the first ${max} well-formed wrong keys: 401`)
  for (const g of first) assertError(t, g.res, [401], 'a wrong key')
  const firstQueries = first.reduce((sum, g) => sum + g.queries, 0)
  t.ok(first[0].queries > 0, `a well-formed key is looked up (${firstQueries} queries for ${max} guesses)`)

  const blocked = []
  for (let i = 0; i < 25; i++) blocked.push(await guess(generateApiKey(), guesser))
  t.same(blocked.map(g => g.status), Array(25).fill(429), 'every further guess: 429')
  assertError(t, blocked[0].res, [429], 'a blocked guess')
  t.equal(blocked[0].res.json().code, 'rate_limited')
  t.ok(Number(blocked[0].res.headers['retry-after']) > 0, 'with Retry-After')
  const blockedQueries = blocked.reduce((sum, g) => sum + g.queries, 0)
  t.equal(blockedQueries, 0, 'the 429s cost no database query')
  t.equal((await guess(generateApiKey(), '198.51.100.8')).status, 401, 'another client is not blocked')

  const typo = (key: string): string => key.slice(0, -1) + (key.endsWith('0') ? '1' : '0')
  const malformed = [typo(org.key.key), org.key.key.slice(0, -2), `${org.key.key}0`, org.key.key.toUpperCase(), 'pk_test_' + org.key.key.slice(8), 'x'.repeat(72), generateApiKey().replace(/^pk_live_(.)/, 'pk_live_g')]
  let malformedQueries = 0
  for (let i = 0; i < 40; i++) {
    const g = await guess(malformed[i % malformed.length], '198.51.100.9')
    t.ok(g.status === 401 || g.status === 429, `malformed key ${i % malformed.length}: ${g.status}`)
    malformedQueries += g.queries
  }
  t.equal(malformedQueries, 0, '40 malformed keys (bad checksum, length, prefix or case): no database query')
  t.equal((await guess(org.key.key, '198.51.100.10')).status, 200, 'the real key still works from a clean address')
  t.comment(`key guessing: ${max} guesses → 401 costing ${firstQueries} queries; 25 more → 429 costing ${blockedQueries}; 40 malformed costing ${malformedQueries}`)
})

// ---- bounded requests ----

t.test('a body over the limit is a 413 envelope', async t => {
  const app = await build(t)
  const org = await tenant(app)
  const big = { token: 'a'.repeat(20 * 1024) }
  assertError(t, await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers: org.keyHeaders, payload: big }), [413], '/public/verify with 20 KiB')
  assertError(t, await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': org.org.slug }, payload: { email: 'a@b.test', password: 'p'.repeat(20 * 1024) } }), [413], '/auth/login with 20 KiB')
})

t.test('NUL characters (which PostgreSQL text cannot hold) are a 400, never a 500', async t => {
  const app = await build(t)
  const org = await tenant(app)
  const slug = `nul-${Date.now().toString(36)}`
  const cases: Array<[string, string, Record<string, string>, object]> = [
    ['POST', '/api/v1/admin/orgs', { authorization: `Bearer ${testConfig().adminToken}` }, { slug, name: 'a\u0000b' }],
    ['PATCH', `/api/v1/admin/orgs/${org.org.slug}`, { authorization: `Bearer ${testConfig().adminToken}` }, { name: 'x\u0000' }],
    ['POST', '/api/v1/admin/users', { authorization: `Bearer ${testConfig().adminToken}` }, { email: `${slug}@example.test`, name: '\u0000', password: 'correct horse battery' }],
    ['POST', '/api/v1/org/api-keys', org.adminHeaders, { name: 'key\u0000' }],
    ['POST', '/api/v1/org/api-keys', org.adminHeaders, { name: 'key', 'x\u0000': 1 }],
    ['POST', '/api/v1/public/verify', org.keyHeaders, { token: 'a.b\u0000.c' }]
  ]
  for (const [method, url, headers, payload] of cases) {
    const res = await app.inject({ method: method as 'POST', url, headers, payload })
    assertError(t, res, [400], `${method} ${url} ${JSON.stringify(payload)}`)
  }
  const escaped = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: org.adminHeaders, payload: { name: 'a literal \\u0000 is fine' } })
  t.equal(escaped.statusCode, 201, 'a backslash followed by u0000 is just text')
})

interface RawResult { response: string, closedAfterMs: number }

/** Writes `chunks` to a raw socket, `gapMs` apart; resolves when the server closes it (or after `giveUpMs`). */
function rawExchange (port: number, chunks: string[], gapMs: number, giveUpMs: number): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = net.connect(port, '127.0.0.1')
    let response = ''
    let timer: NodeJS.Timeout | undefined
    const giveUp = setTimeout(() => { socket.destroy(); reject(new Error(`still open after ${giveUpMs} ms`)) }, giveUpMs)
    const finish = (): void => {
      clearTimeout(giveUp)
      clearTimeout(timer)
      resolve({ response, closedAfterMs: Date.now() - started })
    }
    socket.setEncoding('utf8')
    socket.on('data', (data: string) => { response += data })
    socket.on('close', finish)
    socket.on('error', () => {}) // a reset while writing is one way of being closed
    let next = 0
    const writeNext = (): void => {
      if (socket.destroyed || next >= chunks.length) return
      socket.write(chunks[next++])
      timer = setTimeout(writeNext, gapMs)
    }
    socket.on('connect', writeNext)
  })
}

t.test('over a real socket: oversized headers → 431, slow headers and slow bodies are cut off, the server keeps serving', async t => {
  const headersTimeoutMs = 1000
  const requestTimeoutMs = 1500
  const app = await build(t, { headersTimeoutMs, requestTimeoutMs, connectionTimeoutMs: 10_000, keepAliveTimeoutMs: 2000 })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as net.AddressInfo
  t.equal(app.server.headersTimeout, headersTimeoutMs, 'the configured header timeout reaches Node')
  t.equal(app.server.requestTimeout, requestTimeoutMs, 'and the request timeout')

  // Requests Node's parser refuses are logged by Fastify with the raw bytes it received
  // (err.rawPacket, at trace level): credentials sent in them must not reach the log.
  const org = await tenant(app)
  const credentials = `X-Org-Slug: ${org.org.slug}\r\nX-API-Key: ${org.key.key}\r\n${org.adminHeaders.authorization.replace(/^/, 'Authorization: ')}\r\n`
  const linesBefore = capturedLogLines().length
  const huge = await rawExchange(port, [`GET /api/v1/public/org HTTP/1.1\r\nHost: x\r\n${credentials}X-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`], 0, 5000)
  t.ok(huge.response === '' || huge.response.startsWith('HTTP/1.1 431'), `a 20 KiB header block: 431 or closed (${huge.response.split('\r\n')[0] || 'closed'})`)
  const garbled = await rawExchange(port, [`GET /api/v1/public/org HTTP/1.1\r\nHost: x\r\n${credentials}Not a header\r\n\r\n`], 0, 5000)
  t.ok(garbled.response === '' || garbled.response.startsWith('HTTP/1.1 400'), `a malformed header: 400 or closed (${garbled.response.split('\r\n')[0] || 'closed'})`)
  const refusedLines = capturedLogLines().slice(linesBefore)
  t.ok(refusedLines.some(line => line.includes('client')), `Fastify logged the refused requests (${refusedLines.length} lines)`)
  t.same(findLeaks(refusedLines, [org.key.key.slice(10), org.adminHeaders.authorization.split('.')[2]]), [], 'without the key or token they carried')

  // One header byte every 100 ms: never idle long enough for the idle timeout, never done.
  const trickle = ('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200)).split('')
  const slowHeaders = await rawExchange(port, trickle, 100, 10_000)
  const bound = headersTimeoutMs + Math.floor(headersTimeoutMs / 4) + 3000
  t.ok(slowHeaders.closedAfterMs <= bound, `slowloris headers: closed after ${slowHeaders.closedAfterMs} ms (bound ${bound} ms)`)
  t.ok(slowHeaders.closedAfterMs >= headersTimeoutMs * 0.8, 'and not before the header timeout')
  t.ok(slowHeaders.response === '' || slowHeaders.response.startsWith('HTTP/1.1 408'), `answered 408 or closed (${slowHeaders.response.split('\r\n')[0] || 'closed'})`)

  // Headers at once, then a body one byte every 100 ms.
  const body = JSON.stringify({ token: 'x'.repeat(100) })
  const slowBody = await rawExchange(port, [`POST /api/v1/public/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, ...body.split('')], 100, 10_000)
  const bodyBound = requestTimeoutMs + Math.floor(headersTimeoutMs / 4) + 3000
  t.ok(slowBody.closedAfterMs <= bodyBound, `slow body: closed after ${slowBody.closedAfterMs} ms (bound ${bodyBound} ms)`)

  const health = await request(`http://127.0.0.1:${port}`, { path: '/health' })
  t.equal(health.status, 200, 'the server still serves')
  t.comment(`slow clients: slowloris headers closed after ${slowHeaders.closedAfterMs} ms, slow body after ${slowBody.closedAfterMs} ms`)
})

t.test('no CORS on /public/*: a browser origin gets no Access-Control-Allow-Origin', async t => {
  const app = await build(t)
  const org = await tenant(app)
  const origin = 'https://evil.example'
  const cors = (res: LightMyRequestResponse): string[] => Object.keys(res.headers).filter(name => name.toLowerCase().startsWith('access-control-'))
  for (const url of ['/api/v1/public/verify', '/api/v1/public/org', `/api/v1/public/users/${org.member.id}`]) {
    const preflight = await app.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-api-key, x-org-slug, content-type' } })
    t.same(cors(preflight), [], `OPTIONS ${url}: no CORS headers (${preflight.statusCode})`)
    t.ok(preflight.statusCode >= 400 && preflight.statusCode < 500, 'the preflight is refused')
  }
  const get = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { ...org.keyHeaders, origin } })
  t.equal(get.statusCode, 200)
  t.same(cors(get), [], 'GET with an Origin: no CORS headers')
  const post = await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers: { ...org.keyHeaders, origin }, payload: { token: 'x' } })
  t.same(cors(post), [], 'POST with an Origin: no CORS headers')
})
