import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { sql, type Kysely } from 'kysely'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.ts'
import { createDatabase } from '../db/connect.ts'
import type { Database } from '../db/database.ts'
import { insertSession, isSessionLive } from '../db/queries/sessions.ts'
import { verifyPassword } from '../src/passwords.ts'
import { newId } from '../src/ids.ts'
import { ADMIN_TOKEN, DATABASE_URL, REDIS_URL, sharedDatabase, uniqueSlug, uniqueEmail, testConfig, sessionToken } from './helper.ts'
import { isEmail } from '../schemas/common.ts'
import { ISO } from './auth-helpers.ts'

// The CLI runs as the operator runs it: a child process reading its configuration from the
// environment. Embedded: a temporary DATA_DIR; with DATABASE_URL: this process's fresh database.
// Each case starts a Node process (and the embedded database in it); on a loaded two-core
// machine that can take many seconds. The cases below share one org to start as few as possible.
t.setTimeout(1_200_000)
const dataDir = mkdtempSync(join(tmpdir(), 'tenantkey-cli-'))
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
const databaseUrl = DATABASE_URL === null ? null : (await sharedDatabase()).url

interface Result { code: number, stdout: string, stderr: string }

function cli (args: string[], options: { env?: Record<string, string>, stdin?: string } = {}): Promise<Result> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'test',
    DATA_DIR: dataDir,
    ...(databaseUrl !== null && { DATABASE_URL: databaseUrl }),
    ...options.env
  }
  return new Promise(resolve => {
    const child = execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env, cwd: new URL('..', import.meta.url).pathname }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr })
    })
    child.stdin?.end(options.stdin ?? '')
  })
}

/** Opens the database the CLI used, only while no CLI runs (the embedded one allows one process). */
async function withDatabase<T> (fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  if (databaseUrl !== null) return await fn((await sharedDatabase()).handle.db)
  const handle = createDatabase({ databaseUrl: null, dataDir })
  try {
    return await fn(handle.db)
  } finally {
    await handle.close()
  }
}

/** The real app on the database the CLI used, for checking what a client sees. */
async function withApp<T> (fn: (app: FastifyInstance) => Promise<T>): Promise<T> {
  const handle = databaseUrl !== null ? (await sharedDatabase()).handle : createDatabase({ databaseUrl: null, dataDir })
  const app = await buildApp(testConfig({ redisUrl: null }), { database: handle })
  try {
    return await fn(app)
  } finally {
    await app.close()
    if (databaseUrl === null) await handle.close()
  }
}

const PASSWORD = 'correct horse battery'

t.test('help lists every command; no command means help', async t => {
  for (const args of [['help'], []]) {
    const res = await cli(args)
    t.equal(res.code, 0)
    for (const command of ['migrate', 'create-org', 'reset-password', 'revoke-key', 'usage', 'help']) t.match(res.stdout, `  ${command}`)
  }
})

t.test('usage mistakes exit 2 with a message naming the problem, before touching the database', async t => {
  const unknown = await cli(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, 'error: unknown command "frobnicate"')

  const missing = await cli(['create-org', '--slug', 'acme'])
  t.equal(missing.code, 2)
  t.match(missing.stderr, 'create-org needs --name, --admin-email, --admin-name, --admin-password')

  const unknownOption = await cli(['migrate', '--force'])
  t.equal(unknownOption.code, 2)
  t.match(unknownOption.stderr, "Unknown option '--force'")

  const badSlug = await cli(['create-org', '--slug', 'Not A Slug', '--name', 'X', '--admin-email', uniqueEmail(), '--admin-name', 'Ada', '--admin-password', 'short'])
  t.equal(badSlug.code, 2)
  t.match(badSlug.stderr, '--slug: invalid value (expected: URL-safe organization identifier')

  const badPassword = await cli(['reset-password', '--email', uniqueEmail(), '--password', 'short-pw'])
  t.equal(badPassword.code, 2)
  t.match(badPassword.stderr, '--password: invalid value (expected: At least 10 characters)')
  t.notMatch(badPassword.stderr, 'short-pw', 'the password is not echoed')

  if (databaseUrl === null) t.same(readdirSync(dataDir), [], 'nothing was written to DATA_DIR')
})

t.test('the CLI refuses the emails the API refuses (one rule: the Email schema), creating no admin who could never log in', async t => {
  const refused = ['josé@acme.test', 'a..b@acme.test', '.ada@acme.test', 'ada.@acme.test', 'ada@-acme.test', 'ada@acme']
  for (const address of refused.slice(0, 2)) {
    const res = await cli(['create-org', '--slug', uniqueSlug('mail'), '--name', 'X', '--admin-email', address, '--admin-name', 'Ada', '--admin-password', PASSWORD])
    t.equal(res.code, 2, `CLI refuses ${address}`)
    t.match(res.stderr, '--admin-email: invalid value (expected: Email address', address)
  }
  if (databaseUrl === null) t.same(readdirSync(dataDir), [], 'nothing was written to DATA_DIR')
  await withApp(async app => {
    for (const address of refused) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: { email: address, name: 'Ada', password: PASSWORD } })
      t.equal(res.statusCode, 400, `API refuses ${address}`)
      t.match(res.json(), { code: 'validation_failed', message: /email/ })
    }
  })
  const accepted = ["o'brien+tag@mail.acme-corp.test", 'ADA.Lovelace@Acme.TEST']
  for (const address of [...refused, ...accepted]) {
    t.equal(isEmail(address), accepted.includes(address), `isEmail(${address}) agrees with the API`)
  }
})

t.test('a bad configuration or an unreachable database exits 1 with a clear message', async t => {
  const badConfig = await cli(['migrate'], { env: { DATABASE_URL: 'mysql://localhost/x' } })
  t.equal(badConfig.code, 1)
  t.match(badConfig.stderr, 'Invalid configuration')
  t.match(badConfig.stderr, 'DATABASE_URL')

  const down = await cli(['migrate'], { env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } })
  t.equal(down.code, 1)
  t.match(down.stderr, /^error: .*ECONNREFUSED/m)
})

// One org for the rest of the file, made by the CLI itself.
const slug = uniqueSlug()
const email = uniqueEmail('admin')
let userId = ''
const sessionId = newId('ses')

t.test('migrate brings the database up to date and says which database it used', async t => {
  const res = await cli(['migrate'])
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, databaseUrl === null ? `Database: embedded PGlite in ${dataDir}` : 'Database: PostgreSQL (DATABASE_URL)')
  t.match(res.stdout, databaseUrl === null ? 'applied 20261129T0800_initial' : 'up to date')
})

t.test('create-org makes the org and its first org_admin in one transaction', async t => {
  const res = await cli(['create-org', '--slug', slug, '--name', 'Acme Inc.', '--plan', 'pro', '--admin-email', email, '--admin-name', 'Ada Lovelace', '--admin-password', PASSWORD])
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, new RegExp(`Created organization ${slug} \\(org_[0-9A-Z]{26}\\), plan pro`))
  t.match(res.stdout, `Created user ${email}`)

  const takenSlug = await cli(['create-org', '--slug', slug, '--name', 'Other', '--admin-email', uniqueEmail(), '--admin-name', 'Bob', '--admin-password', PASSWORD])
  t.equal(takenSlug.code, 1)
  t.match(takenSlug.stderr, `error: organization slug "${slug}" is already taken`)

  const secondSlug = uniqueSlug()
  const takenEmail = await cli(['create-org', '--slug', secondSlug, '--name', 'Second', '--admin-email', email.toUpperCase(), '--admin-name', 'Ada', '--admin-password', PASSWORD])
  t.equal(takenEmail.code, 1)
  t.match(takenEmail.stderr, 'already exists (nothing was created')

  await withDatabase(async db => {
    const row = await db.selectFrom('organizations as o')
      .innerJoin('memberships as m', 'm.org_id', 'o.id')
      .innerJoin('users as u', 'u.id', 'm.user_id')
      .select(['o.id as orgId', 'o.name as orgName', 'o.plan', 'o.status', 'u.id as userId', 'u.email', 'u.name', 'u.password_hash', 'm.role', 'm.status as membershipStatus'])
      .where('o.slug', '=', slug).executeTakeFirstOrThrow()
    t.match(row, { orgName: 'Acme Inc.', plan: 'pro', status: 'active', email, name: 'Ada Lovelace', role: 'org_admin', membershipStatus: 'active' })
    t.ok(await verifyPassword(PASSWORD, row.password_hash), 'the stored hash verifies the password')
    t.notMatch(row.password_hash, PASSWORD)
    t.equal(await db.selectFrom('organizations').select('id').where('slug', '=', secondSlug).executeTakeFirst(), undefined, 'the org whose admin email was taken was rolled back')
    userId = row.userId
    const events = await db.selectFrom('audit_events').selectAll()
      .where(eb => eb.or([eb('org_id', '=', row.orgId), eb('target_id', '=', row.userId)]))
      .orderBy('created_at').orderBy('id').execute()
    const system = { actor_type: 'system', actor_id: null, actor_email: null, ip: null }
    const who = { id: row.userId, name: 'Ada Lovelace', email }
    t.match(events, [
      { type: 'org.created', org_id: row.orgId, ...system, target_type: 'org', target_id: row.orgId, data: { org: { id: row.orgId, slug, name: 'Acme Inc.', plan: 'pro', status: 'active' } } },
      { type: 'user.created', org_id: null, ...system, target_type: 'user', target_id: row.userId, data: { user: who } },
      { type: 'member.joined', org_id: row.orgId, ...system, target_type: 'user', target_id: row.userId, data: { user: who, membership: { role: 'org_admin', status: 'active' } } }
    ], 'the admin API\'s three events, by the system')
    t.equal(events.length, 3)
    t.equal(await db.selectFrom('audit_events').select('id').where(sql<string>`data->'org'->>'slug'`, '=', secondSlug).executeTakeFirst(), undefined, 'the rolled-back org left no event')
    // a live session, for reset-password to end
    await insertSession(db, { id: sessionId, orgId: row.orgId, userId: row.userId, expiresAt: new Date(Date.now() + 86400_000) })
  })
})

t.test('reset-password sets the new password (read from stdin with "-"), ends the sessions and records it', async t => {
  const newPassword = 'a much better passphrase'
  const res = await cli(['reset-password', '--email', email, '--password', '-'], { stdin: `${newPassword}\n` })
  t.equal(res.code, 0, res.stderr)
  t.equal(res.stdout.trim().split('\n').at(-1), `Password of ${email} (${userId}) reset; 1 session ended`)
  t.notMatch(res.stdout + res.stderr, newPassword)

  const unknown = await cli(['reset-password', '--email', uniqueEmail('nobody'), '--password', newPassword])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, 'error: no user with email')

  await withDatabase(async db => {
    const user = await db.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirstOrThrow()
    t.ok(await verifyPassword(newPassword, user.password_hash), 'the new password verifies')
    t.notOk(await verifyPassword(PASSWORD, user.password_hash), 'the old one does not')
    t.notOk(await isSessionLive(db, sessionId), 'the session was ended')
    const event = await db.selectFrom('audit_events').selectAll().where('target_id', '=', userId).where('type', '=', 'user.password_reset').executeTakeFirstOrThrow()
    t.match(event, { actor_type: 'system', actor_id: null, target_type: 'user' })
  })
})

t.test('revoke-key revokes a key at once, is idempotent, and records the system as the actor', async t => {
  const { key, keyId } = await withApp(async app => {
    const org = await app.db.selectFrom('organizations').select('id').where('slug', '=', slug).executeTakeFirstOrThrow()
    const { token } = await sessionToken(app, { userId, orgId: org.id, slug, role: 'org_admin' })
    const created = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: { authorization: `Bearer ${token}`, 'x-org-slug': slug }, payload: { name: 'Production backend' } })
    t.equal(created.statusCode, 201, created.body)
    const { key, apiKey } = created.json().data
    const before = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-api-key': key, 'x-org-slug': slug } })
    t.equal(before.statusCode, 200, 'the key works before it is revoked')
    return { key: key as string, keyId: apiKey.id as string }
  })

  const malformed = await cli(['revoke-key', '--key-id', 'pk_live_not_an_id'])
  t.equal(malformed.code, 2)
  t.match(malformed.stderr, '--key-id: invalid value')

  const otherSlug = uniqueSlug()
  const wrongOrg = await cli(['revoke-key', '--key-id', keyId, '--org', otherSlug])
  t.equal(wrongOrg.code, 1)
  t.match(wrongOrg.stderr, `error: no API key ${keyId} in organization ${otherSlug}`)

  const revoked = await cli(['revoke-key', '--key-id', keyId, '--org', slug])
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(revoked.stdout, `Revoked API key ${keyId} ("Production backend", pk_live_`)
  t.notMatch(revoked.stdout, key, 'the raw key is never printed')

  const again = await cli(['revoke-key', '--key-id', keyId])
  t.equal(again.code, 0)
  t.match(again.stdout, 'was already revoked')

  await withApp(async app => {
    const after = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-api-key': key, 'x-org-slug': slug } })
    t.equal(after.statusCode, 401, 'the revoked key is refused')
    const events = await app.db.selectFrom('audit_events').selectAll().where('target_id', '=', keyId).where('type', '=', 'api_key.revoked').execute()
    t.equal(events.length, 1, 'one audit event, not one per call')
    t.match(events[0], { actor_type: 'system', actor_id: null, target_type: 'api_key' })
    t.match(events[0].data, { apiKey: { id: keyId, name: 'Production backend', isActive: false, revokedAt: ISO } }, 'data: the full key object as revoked')
    t.notOk(JSON.stringify(events[0].data).includes(key.slice(10)), 'never the key')
  })
})

t.test("usage plots a key's requests per hour, the refusals beside them", async t => {
  const keyId = await withApp(async app => {
    const org = await app.db.selectFrom('organizations').select('id').where('slug', '=', slug).executeTakeFirstOrThrow()
    const { token } = await sessionToken(app, { userId, orgId: org.id, slug, role: 'org_admin' })
    const created = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: { authorization: `Bearer ${token}`, 'x-org-slug': slug }, payload: { name: 'Plotted' } })
    const { key, apiKey } = created.json().data
    for (let i = 0; i < 3; i++) await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-api-key': key, 'x-org-slug': slug } })
    await app.inject({ method: 'GET', url: '/api/v1/public/users/usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', headers: { 'x-api-key': key, 'x-org-slug': slug } })
    return apiKey.id as string
  }) // closing the app flushes its counts

  const plotted = await cli(['usage', '--key-id', keyId, '--hours', '3'])
  t.equal(plotted.code, 0, plotted.stderr)
  const lines = plotted.stdout.trim().split('\n')
  t.match(lines[0], `API key ${keyId} ("Plotted", pk_live_`)
  t.equal(lines.length, 4, 'a title and one line per hour')
  t.match(lines[3], /^\d{4}-\d\d-\d\d \d\d:00 {2}█{40} 4 {2}\(4xx: 1\)$/, 'this hour: the longest bar, 4 requests, one refused with a 4xx')
  t.match(lines[1], /^\d{4}-\d\d-\d\d \d\d:00 +0$/, 'an hour without use')
  const bad = await cli(['usage', '--key-id', keyId, '--hours', '999'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, '--hours: invalid value')
})

t.test('revoke-key with REDIS_URL: a running instance that cached the key refuses it at once', {
  skip: DATABASE_URL === null || REDIS_URL === null ? 'needs DATABASE_URL and REDIS_URL: a server runs beside the CLI only on PostgreSQL' : false
}, async t => {
  const config = testConfig()
  const app = await buildApp(config, { database: (await sharedDatabase()).handle })
  t.teardown(() => app.close())
  const org = await app.db.selectFrom('organizations').select('id').where('slug', '=', slug).executeTakeFirstOrThrow()
  const { token } = await sessionToken(app, { userId, orgId: org.id, slug, role: 'org_admin' })
  const created = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: { authorization: `Bearer ${token}`, 'x-org-slug': slug }, payload: { name: 'Cached backend' } })
  t.equal(created.statusCode, 201, created.body)
  const { key, apiKey } = created.json().data
  const publicOrg = () => app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-api-key': key, 'x-org-slug': slug } })
  for (let i = 0; i < 2; i++) t.equal((await publicOrg()).statusCode, 200, 'the running instance has the key cached')

  const revoked = await cli(['revoke-key', '--key-id', apiKey.id], { env: { REDIS_URL: REDIS_URL as string, REDIS_PREFIX: config.redisPrefix } })
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(revoked.stdout, 'Running instances were told through Redis')
  t.equal((await publicOrg()).statusCode, 401, 'the next request on the running instance is refused')
})
