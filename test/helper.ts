import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import pg from 'pg'
import { deleteRedisKeysByPrefix } from './support/redis-keys.ts'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildApp, type BuildOptions } from '../src/app.ts'
import type { Config } from '../src/config.ts'
import { createDatabase, migrateToLatest, type DatabaseHandle } from '../db/connect.ts'
import { insertSession } from '../db/queries/sessions.ts'
import { migrations } from '../db/migrations/index.ts'
import { newId } from '../src/ids.ts'
import { captureLogStream, checkStoredEventsAtEnd, noteRequest, noteResponse, noteSecret } from './log-secrets.ts'
import { assertKeepsContract, contractChecker, type ContractChecker } from './support/contract.ts'

// Tests read the environment only to learn which real stores this run may use.
export const DATABASE_URL = process.env.DATABASE_URL ?? null
export const REDIS_URL = process.env.REDIS_URL ?? null

export const runId = `${process.pid}_${randomBytes(3).toString('hex')}`
export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

export function testConfig (overrides: Partial<Config> = {}): Config {
  return {
    nodeEnv: 'test',
    port: 0,
    host: '127.0.0.1',
    databaseUrl: null,
    dataDir: 'memory://',
    redisUrl: REDIS_URL,
    redisPrefix: `tk-test-${runId}:`,
    jwtSecret: 'test-jwt-secret-0123456789abcdef0123456789',
    jwtIssuer: 'tenantkey',
    jwtAudience: 'tenantkey',
    apiKeyPepper: 'test-api-key-pepper-0123456789abcdef0123',
    adminToken: ADMIN_TOKEN,
    rateLimitMax: 300,
    rateLimitWindowMs: 15 * 60_000,
    apiKeyFailureMax: 30,
    apiKeyFailureWindowMs: 60_000,
    loginFailureMax: 10,
    loginFailureWindowMs: 15 * 60_000,
    cookieSecure: true,
    logLevel: 'silent',
    trustProxy: false,
    bodyLimit: 16 * 1024,
    metricsToken: null,
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 30_000,
    connectionTimeoutMs: 60_000,
    keepAliveTimeoutMs: 72_000,
    smtpUrl: null,
    mailFrom: 'tenantkey <no-reply@tenantkey.test>',
    inviteUrl: null,
    mailRetryScheduleMs: [0, 60_000, 300_000, 1_800_000],
    webhookTimeoutMs: 10_000,
    webhookRetryScheduleMs: [0, 60_000, 300_000, 1_800_000],
    webhookAllowPrivate: true,
    githubSecretScanningKeysFile: null,
    auditRetentionDays: 365,
    ...overrides
  }
}

let shared: Promise<{ handle: DatabaseHandle, url: string | null }> | undefined

/**
 * One migrated database per test process: in-memory PGlite, or with DATABASE_URL a fresh
 * PostgreSQL database of this run's own, dropped when the process's tests end.
 */
export function sharedDatabase (): Promise<{ handle: DatabaseHandle, url: string | null }> {
  shared ??= (async () => {
    let url: string | null = null
    // No audit event the tests caused may hold a secret they handled. tap runs teardowns last in,
    // first out, and skips the rest once one fails: the events are read by the teardown that closes
    // the database, and checked by this one, registered first so it runs last, after the close and
    // the drop (a failing check must not leave the database open and the process hanging).
    let storedEvents: object[] = []
    checkStoredEventsAtEnd(() => storedEvents)
    if (DATABASE_URL !== null) {
      const name = `tk_test_${runId}`
      const admin = new pg.Client({ connectionString: DATABASE_URL })
      await admin.connect()
      await admin.query(`create database "${name}"`)
      await admin.end()
      const parsed = new URL(DATABASE_URL)
      parsed.pathname = `/${name}`
      url = parsed.toString()
      t.teardown(async () => {
        const dropper = new pg.Client({ connectionString: DATABASE_URL as string })
        await dropper.connect()
        await dropper.query(`drop database if exists "${name}" with (force)`)
        await dropper.end()
      })
    }
    const handle = url === null
      ? await embeddedFromTemplate()
      : createDatabase({ databaseUrl: url, dataDir: 'memory://' })
    await migrateToLatest(handle.db)
    t.teardown(async () => {
      try {
        storedEvents = await handle.db.selectFrom('audit_events').selectAll().execute()
      } finally {
        await handle.close()
      }
    })
    if (REDIS_URL !== null) t.teardown(() => deleteRedisKeys(`tk-test-${runId}:`))
    return { handle, url }
  })()
  return shared
}

// Initialising an empty PGlite takes seconds; a migrated data directory dumped once and
// loaded by every later test process takes a fraction of that. The file name carries the
// migrations and the PGlite version, so a new migration makes a new template.
async function embeddedFromTemplate (): Promise<DatabaseHandle> {
  const { version } = JSON.parse(readFileSync(new URL('../node_modules/@electric-sql/pglite/package.json', import.meta.url), 'utf8'))
  const key = createHash('sha256').update(version + Object.keys(migrations).join(',')).digest('hex').slice(0, 16)
  const file = join(tmpdir(), `tenantkey-pglite-template-${key}.tar`)
  if (existsSync(file)) {
    try {
      return createDatabase({ databaseUrl: null, dataDir: 'memory://', pgliteDataDir: new Blob([readFileSync(file)]) })
    } catch {}
  }
  const handle = createDatabase({ databaseUrl: null, dataDir: 'memory://' })
  await migrateToLatest(handle.db)
  const dump = await (handle.pglite as NonNullable<DatabaseHandle['pglite']>).dumpDataDir('none')
  const partial = `${file}.${runId}`
  writeFileSync(partial, Buffer.from(await dump.arrayBuffer()))
  renameSync(partial, file)
  return handle
}

async function deleteRedisKeys (prefix: string): Promise<void> {
  await deleteRedisKeysByPrefix(REDIS_URL as string, prefix)
}

export interface TestContext { teardown: (fn: () => unknown) => void }

/**
 * Test apps log everything, into this process's log capture (and into `options.logStream` too
 * when a test reads its own lines): when the process's tests end, no line may hold a secret
 * that a test sent or received (test/log-secrets.ts).
 */
export const TEST_LOG_LEVEL = 'trace'

/** The real app on this process's shared database; closed when the test ends. */
export async function build (test: TestContext, overrides: Partial<Config> = {}, options: BuildOptions = {}): Promise<FastifyInstance> {
  const { handle } = await sharedDatabase()
  const config = testConfig({ logLevel: TEST_LOG_LEVEL, ...overrides })
  for (const secret of [config.jwtSecret, config.apiKeyPepper, config.adminToken]) noteSecret(secret)
  const app = await buildApp(config, { database: handle, ...options, logStream: captureLogStream(options.logStream) })
  test.teardown(() => app.close())
  await app.ready()
  watchResponses(app, contractChecker(app.swagger(), "the app's /docs/json"))
  return app
}

// Every request a test injects and every answer it gets pass by here: the log check learns each
// key, token, password and cookie the suite has seen, and each answer is checked against the
// app's own OpenAPI document (test/support/contract.ts), so a drift fails the test that saw it.
function watchResponses (app: FastifyInstance, checker: ContractChecker): void {
  const inject = app.inject.bind(app)
  app.inject = function injectCheckingContract (options?: InjectOptions | string) {
    if (options === undefined) throw new Error('test apps take inject(options): the chained form is not checked against the contract')
    const request: InjectOptions = typeof options === 'string' ? { url: options } : options
    noteRequest(request as Parameters<typeof noteRequest>[0])
    return inject(request).then(res => {
      noteResponse({ headers: res.headers, body: res.body })
      assertKeepsContract(checker, { method: request.method ?? 'GET', url: requestPath(request), status: res.statusCode, headers: res.headers, body: res.body })
      return res
    })
  } as FastifyInstance['inject']
}

function requestPath (request: InjectOptions): string {
  const url = request.url ?? request.path
  if (typeof url === 'string') return url
  return url?.pathname ?? '/'
}

let counter = 0
export function uniqueSlug (base = 'org'): string {
  counter++
  return `${base}-${runId.replace('_', '-')}-${counter}`.toLowerCase().slice(0, 48)
}
export function uniqueEmail (base = 'user'): string {
  counter++
  return `${base}+${runId}-${counter}@example.test`
}

export const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` }

export async function inject (app: FastifyInstance, options: InjectOptions): Promise<LightMyRequestResponse> {
  return await app.inject(options)
}

export interface Fixture {
  org: { id: string, slug: string }
  user: { id: string, email: string, password: string }
}

/** An org with one user who is a member in the given role, made through the admin API. */
export async function createOrgWithMember (app: FastifyInstance, role: 'org_admin' | 'member' = 'org_admin'): Promise<Fixture> {
  const slug = uniqueSlug()
  const orgRes = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug, name: `Org ${slug}` } })
  if (orgRes.statusCode !== 201) throw new Error(`create org: ${orgRes.statusCode} ${orgRes.body}`)
  const org = orgRes.json().data.org
  const user = await createUser(app)
  await addMember(app, slug, user.id, role)
  return { org: { id: org.id, slug }, user }
}

export async function createUser (app: FastifyInstance, password = 'correct horse battery'): Promise<Fixture['user']> {
  const email = uniqueEmail()
  const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: adminHeaders, payload: { email, name: 'Test User', password } })
  if (res.statusCode !== 201) throw new Error(`create user: ${res.statusCode} ${res.body}`)
  return { id: res.json().data.user.id, email, password }
}

export async function addMember (app: FastifyInstance, slug: string, userId: string, role: 'org_admin' | 'member' = 'member'): Promise<void> {
  const res = await app.inject({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, payload: { userId, role } })
  if (res.statusCode !== 201) throw new Error(`add member: ${res.statusCode} ${res.body}`)
}

/** An access token for a fresh session, made without the login route (for tests of other routes). */
export async function sessionToken (app: FastifyInstance, input: { userId: string, orgId: string, slug: string, role: 'org_admin' | 'member' }): Promise<{ token: string, sessionId: string }> {
  const sessionId = newId('ses')
  await insertSession(app.db, { id: sessionId, orgId: input.orgId, userId: input.userId, expiresAt: new Date(Date.now() + 7 * 86400_000) })
  return { token: app.issueAccessToken({ ...input, sessionId }), sessionId }
}

/** An API key of the fixture's org, created through POST /org/api-keys by its org_admin. */
export async function createApiKey (app: FastifyInstance, fixture: Fixture, body: { name?: string, expiresAt?: string } = {}): Promise<{ key: string, id: string }> {
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const res = await app.inject({
    method: 'POST', url: '/api/v1/org/api-keys', headers: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug }, payload: { name: 'Test key', ...body }
  })
  if (res.statusCode !== 201) throw new Error(`create api key: ${res.statusCode} ${res.body}`)
  const { key, apiKey } = res.json().data
  return { key, id: apiKey.id }
}
