import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// `npm run demo`: the README's walk-through "From clone to a verified token", step for step,
// against the real server (src/server.ts in a child process, a fresh embedded database). Each
// answer's status and shape are checked against spec/API.md; any difference fails the run.
// The steps are exported so a test can run them against an in-process server, and so the
// README's curl lines can be compared with them.

export const DEMO = {
  slug: 'acme',
  org: { slug: 'acme', name: 'Acme Inc.', plan: 'pro' },
  user: { email: 'ada@acme.test', name: 'Ada Lovelace', password: 'correct horse battery' },
  keyName: 'Production backend'
}

/** Method, path (under /api/v1) and body of each step, in order: the README shows the same. */
export const STEPS: ReadonlyArray<{ method: string, path: string, body?: unknown }> = [
  { method: 'POST', path: '/admin/orgs', body: DEMO.org },
  { method: 'POST', path: '/admin/users', body: DEMO.user },
  { method: 'POST', path: '/admin/orgs/acme/members', body: { userId: '$USER_ID', role: 'org_admin' } },
  { method: 'POST', path: '/auth/login', body: { email: DEMO.user.email, password: DEMO.user.password } },
  { method: 'POST', path: '/org/api-keys', body: { name: DEMO.keyName } },
  { method: 'POST', path: '/public/verify', body: { token: '$ACCESS_TOKEN' } },
  { method: 'GET', path: '/org/api-keys' },
  { method: 'DELETE', path: '/org/api-keys/$KEY_ID' },
  { method: 'POST', path: '/public/verify', body: { token: '$ACCESS_TOKEN' } }
]

export class ContractMismatch extends Error {}

// ---- shapes: exact keys, values by literal, pattern or predicate ----

interface Matcher { expected: string, test: (value: unknown) => boolean }
type Shape = Matcher | RegExp | string | number | boolean | null | Shape[] | { [key: string]: Shape }

const kind = (expected: string, test: (value: unknown) => boolean): Matcher => ({ expected, test })
const isMatcher = (shape: Shape): shape is Matcher => typeof shape === 'object' && shape !== null && 'test' in shape && 'expected' in shape && typeof shape.test === 'function'
const text = kind('a string', v => typeof v === 'string' && v !== '')
const bool = kind('a boolean', v => typeof v === 'boolean')
const id = (prefix: string): RegExp => new RegExp(`^${prefix}_[0-9A-HJKMNP-TV-Z]{26}$`)
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const KEY = /^pk_live_[0-9a-f]{64}$/

function differences (actual: unknown, shape: Shape, path: string): string[] {
  if (shape instanceof RegExp) return typeof actual === 'string' && shape.test(actual) ? [] : [`${path}: expected a string matching ${shape}, got ${JSON.stringify(actual)}`]
  if (isMatcher(shape)) return shape.test(actual) ? [] : [`${path}: expected ${shape.expected}, got ${JSON.stringify(actual)}`]
  if (shape === null || typeof shape !== 'object') return actual === shape ? [] : [`${path}: expected ${JSON.stringify(shape)}, got ${JSON.stringify(actual)}`]
  if (Array.isArray(shape)) {
    if (!Array.isArray(actual) || actual.length !== shape.length) return [`${path}: expected an array of ${shape.length}, got ${JSON.stringify(actual)}`]
    return shape.flatMap((inner, i) => differences(actual[i], inner, `${path}[${i}]`))
  }
  if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return [`${path}: expected an object, got ${JSON.stringify(actual)}`]
  const out: string[] = []
  for (const key of Object.keys(actual)) if (!(key in shape)) out.push(`${path}.${key}: not in the contract`)
  for (const [key, inner] of Object.entries(shape)) {
    if (!(key in actual)) out.push(`${path}.${key}: missing`)
    else out.push(...differences((actual as Record<string, unknown>)[key], inner, `${path}.${key}`))
  }
  return out
}

const success = (data: Shape): Shape => ({ status: 'success', data })
const failure = (message: string, code: string): Shape => ({ status: 'error', message, code })

// ---- the walk-through ----

export interface WalkThroughOptions {
  /** e.g. http://127.0.0.1:3000 */
  origin: string
  adminToken: string
  /** one line per step */
  log?: (line: string) => void
}

interface Answer { status: number, body: any, headers: Headers }

/** Runs every step of STEPS against a running server; throws ContractMismatch on the first answer that differs. */
export async function walkThrough ({ origin, adminToken, log = () => {} }: WalkThroughOptions): Promise<number> {
  const api = `${origin}/api/v1`
  let step = 0

  async function call (method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Answer> {
    const response = await fetch(`${api}${path}`, {
      method,
      headers: body === undefined ? headers : { ...headers, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    return await answerOf(response)
  }

  function expect (what: string, answer: Answer, status: number, shape: Shape, summary: string): void {
    step++
    const found = [
      ...(answer.status === status ? [] : [`status: expected ${status}, got ${answer.status}`]),
      ...differences(answer.body, shape, 'body')
    ]
    if (found.length > 0) {
      throw new ContractMismatch(`step ${step} (${what}) differs from the contract:\n  ${found.join('\n  ')}\n  body: ${JSON.stringify(answer.body)}`)
    }
    log(`${String(step).padStart(2)}. ${what.padEnd(36)} ${answer.status}  ${summary}`)
  }

  const admin = { Authorization: `Bearer ${adminToken}` }
  const { slug } = DEMO

  const org = await call('POST', '/admin/orgs', admin, DEMO.org)
  expect('POST /admin/orgs', org, 201, success({
    org: { id: id('org'), slug, name: DEMO.org.name, plan: DEMO.org.plan, status: 'active', appUrl: null, createdAt: ISO, rateLimit: null }
  }), `org ${slug} (${org.body?.data?.org?.id})`)

  const user = await call('POST', '/admin/users', admin, DEMO.user)
  expect('POST /admin/users', user, 201, success({
    user: { id: id('usr'), email: DEMO.user.email, name: DEMO.user.name, role: 'user', isEmailVerified: bool, createdAt: ISO }
  }), `user ${DEMO.user.email} (${user.body?.data?.user?.id})`)
  const userId: string = user.body.data.user.id

  const member = await call('POST', `/admin/orgs/${slug}/members`, admin, { userId, role: 'org_admin' })
  expect(`POST /admin/orgs/${slug}/members`, member, 201, success({
    membership: { userId, role: 'org_admin', status: 'active', joinedAt: ISO }
  }), 'role org_admin')

  const login = await call('POST', '/auth/login', { 'X-Org-Slug': slug }, { email: DEMO.user.email, password: DEMO.user.password })
  expect('POST /auth/login', login, 200, success({
    accessToken: JWT,
    refreshToken: text,
    user: { id: userId, name: DEMO.user.name, email: DEMO.user.email, role: 'user', isEmailVerified: bool },
    membership: { role: 'org_admin', status: 'active' }
  }), 'accessToken (JWT, 15 min) + refreshToken')
  const userAccessToken: string = login.body.data.accessToken
  const asAdmin = { Authorization: `Bearer ${userAccessToken}`, 'X-Org-Slug': slug }

  // §9's full key object with its defaults: every scope, the org's budget, any address.
  const keyObject = {
    name: DEMO.keyName,
    isActive: true,
    createdAt: ISO,
    expiresAt: null,
    description: null,
    scopes: ['tokens:verify', 'users:read', 'org:read'],
    rateLimit: null,
    allowedIps: [],
    createdBy: { type: 'user', id: userId },
    revokedAt: null,
    rotatedFromId: null,
    rotatedToId: null
  }
  const created = await call('POST', '/org/api-keys', asAdmin, { name: DEMO.keyName })
  const key: unknown = created.body?.data?.key
  expect('POST /org/api-keys', created, 201, success({
    key: KEY,
    apiKey: { ...keyObject, id: id('key'), prefix: typeof key === 'string' ? key.slice(0, 10) : KEY, lastUsedAt: null }
  }), `key ${typeof key === 'string' ? key.slice(0, 10) : '?'}… (shown once)`)
  const keyId: string = created.body.data.apiKey.id

  // The seed page's Node.js example, its two environment variables set to this org and key.
  const env = { TENANTKEY_ORG_SLUG: slug, TENANTKEY_API_KEY: key as string }
  const verified = await answerOf(await seedVerify(api, env, userAccessToken))
  expect('POST /public/verify (seed example)', verified, 200, success({
    valid: true,
    user: { id: userId, name: DEMO.user.name, email: DEMO.user.email, role: 'user', isEmailVerified: bool },
    membership: { role: 'org_admin', status: 'active', joinedAt: ISO },
    org: { id: org.body.data.org.id, name: DEMO.org.name, slug, plan: DEMO.org.plan, status: 'active' }
  }), `valid: true, ${rateLimitSummary(verified)}`)
  checkRateLimitHeaders(verified, step)
  // ...and the rest of the example, as the seed writes it.
  const { data } = verified.body
  if (!data.valid || data.membership?.status !== 'active') {
    throw new ContractMismatch('the seed example would throw Unauthorized')
  }
  log(`    Verified user: ${data.user.email}`)

  const listed = await call('GET', '/org/api-keys', asAdmin)
  expect('GET /org/api-keys', listed, 200, success({
    apiKeys: [{ ...keyObject, id: keyId, prefix: (key as string).slice(0, 10), lastUsedAt: ISO }]
  }), 'one key, isActive: true, lastUsedAt set')

  const revoked = await call('DELETE', `/org/api-keys/${keyId}`, asAdmin)
  expect('DELETE /org/api-keys/:keyId', revoked, 200, success({ message: 'API key revoked' }), 'API key revoked')

  const refused = await answerOf(await seedVerify(api, env, userAccessToken))
  expect('POST /public/verify (revoked key)', refused, 401, failure('Invalid API key', 'invalid_api_key'), 'Invalid API key')
  return step
}

/**
 * The fetch of the seed page's "Using an API key" example (and of the README's), unchanged but for
 * the host and the names of its two environment variables (AUTHWORX_* there).
 */
async function seedVerify (api: string, env: { TENANTKEY_ORG_SLUG: string, TENANTKEY_API_KEY: string }, userAccessToken: string): Promise<Response> {
  const response = await fetch(`${api}/public/verify`, {
    method: 'POST',
    headers: {
      'X-Org-Slug': env.TENANTKEY_ORG_SLUG,
      'X-API-Key': env.TENANTKEY_API_KEY,
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({ token: userAccessToken })
  })
  return response
}

async function answerOf (response: Response): Promise<Answer> {
  const raw = await response.text()
  let body: unknown = raw
  try { body = JSON.parse(raw) } catch {}
  return { status: response.status, body, headers: response.headers }
}

function rateLimitSummary (answer: Answer): string {
  return `X-RateLimit-Remaining ${answer.headers.get('x-ratelimit-remaining')}/${answer.headers.get('x-ratelimit-limit')}`
}

/** API.md §7: Limit and Remaining are counts, Reset the Unix second at which the window ends. */
function checkRateLimitHeaders (answer: Answer, step: number): void {
  const limit = Number(answer.headers.get('x-ratelimit-limit'))
  const remaining = Number(answer.headers.get('x-ratelimit-remaining'))
  const reset = Number(answer.headers.get('x-ratelimit-reset'))
  const now = Date.now() / 1000
  const problems = [
    ...(Number.isInteger(limit) && limit > 0 ? [] : [`X-RateLimit-Limit: expected a positive integer, got ${answer.headers.get('x-ratelimit-limit')}`]),
    ...(remaining === limit - 1 ? [] : [`X-RateLimit-Remaining: expected ${limit - 1} after the key's first request, got ${answer.headers.get('x-ratelimit-remaining')}`]),
    ...(Number.isInteger(reset) && reset > now - 1 && reset < now + 24 * 3600 ? [] : [`X-RateLimit-Reset: expected the Unix second the window ends, got ${answer.headers.get('x-ratelimit-reset')}`])
  ]
  if (problems.length > 0) throw new ContractMismatch(`step ${step} (rate-limit headers) differs from the contract:\n  ${problems.join('\n  ')}`)
}

// ---- the server ----

const ROOT = new URL('..', import.meta.url).pathname
const ADMIN_TOKEN = 'demo-admin-token-0123456789abcdef'

interface Server { child: ChildProcess, output: () => string }

function spawnServer (dataDir: string): Server {
  // Only what the demo means: no DATABASE_URL or REDIS_URL from the caller's environment.
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dataDir, NODE_ENV: 'development', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ADMIN_TOKEN, LOG_LEVEL: 'warn', COOKIE_SECURE: 'false' }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', chunk => { output += String(chunk) })
  child.stderr?.on('data', chunk => { output += String(chunk) })
  return { child, output: () => output }
}

/** The origin the server prints once it listens (PORT=0: a port of the system's choosing). */
async function listening ({ child, output }: Server): Promise<string> {
  const deadline = Date.now() + 120_000
  for (;;) {
    const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output())
    if (match !== null) return match[1]
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the server exited (${child.exitCode ?? child.signalCode}) before listening`)
    if (Date.now() > deadline) throw new Error('the server did not start listening within 120 s')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function stopServer (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

async function main (): Promise<number> {
  const started = performance.now()
  const dataDir = mkdtempSync(join(tmpdir(), 'tenantkey-demo-'))
  let server: Server | undefined
  const cleanUp = async (): Promise<void> => {
    if (server !== undefined) await stopServer(server.child)
    rmSync(dataDir, { recursive: true, force: true })
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { cleanUp().finally(() => process.exit(130)) })
  }
  try {
    server = spawnServer(dataDir)
    const origin = await listening(server)
    console.log(`tenantkey demo: server on ${origin} (fresh embedded database in ${dataDir}), up in ${seconds(started)} s`)
    const steps = await walkThrough({ origin, adminToken: ADMIN_TOKEN, log: line => console.log(line) })
    console.log(`demo passed: ${steps} steps match the contract, ${seconds(started)} s in all`)
    return 0
  } catch (error) {
    console.error(error instanceof ContractMismatch ? `demo FAILED: ${error.message}` : `demo FAILED: ${(error as Error).stack ?? String(error)}`)
    const output = server?.output() ?? ''
    if (output.trim() !== '') console.error(`--- server output ---\n${output.trimEnd()}`)
    return 1
  } finally {
    await cleanUp()
  }
}

function seconds (since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main()
}
