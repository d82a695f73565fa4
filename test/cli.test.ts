import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Kysely } from 'kysely'
import { createDatabase } from '../db/connect.ts'
import type { Database } from '../db/database.ts'
import { insertSession, isSessionLive } from '../db/queries/sessions.ts'
import { verifyPassword } from '../src/passwords.ts'
import { newId } from '../src/ids.ts'
import { DATABASE_URL, sharedDatabase, uniqueSlug, uniqueEmail } from './helper.ts'

// The CLI runs as the operator runs it: a child process reading its configuration from the
// environment. Embedded: a temporary DATA_DIR; with DATABASE_URL: this process's fresh database.
// Each case starts a Node process; on a loaded two-core machine that can take seconds.
t.setTimeout(600_000)
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

const PASSWORD = 'correct horse battery'

t.test('help lists every command; no command means help', async t => {
  for (const args of [['help'], []]) {
    const res = await cli(args)
    t.equal(res.code, 0)
    for (const command of ['migrate', 'create-org', 'reset-password', 'help']) t.match(res.stdout, `  ${command}`)
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

  const badSlug = await cli(['create-org', '--slug', 'Not A Slug', '--name', 'X', '--admin-email', uniqueEmail(), '--admin-name', 'Ada', '--admin-password', PASSWORD])
  t.equal(badSlug.code, 2)
  t.match(badSlug.stderr, '--slug: invalid value (expected: URL-safe organization identifier')

  const shortPassword = await cli(['create-org', '--slug', uniqueSlug(), '--name', 'X', '--admin-email', uniqueEmail(), '--admin-name', 'Ada', '--admin-password', 'short'])
  t.equal(shortPassword.code, 2)
  t.match(shortPassword.stderr, '--admin-password: invalid value (expected: At least 10 characters)')
  t.notMatch(shortPassword.stderr, 'short', 'the password is not echoed')

  if (databaseUrl === null) t.same(readdirSync(dataDir), [], 'nothing was written to DATA_DIR')
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

t.test('migrate brings the database up to date and says which database it used', async t => {
  const first = await cli(['migrate'])
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, databaseUrl === null ? `Database: embedded PGlite in ${dataDir}` : 'Database: PostgreSQL (DATABASE_URL)')
  const again = await cli(['migrate'])
  t.equal(again.code, 0)
  t.match(again.stdout, 'up to date')
})

t.test('create-org makes the org and its first org_admin, who can sign in with the password', async t => {
  const slug = uniqueSlug()
  const email = uniqueEmail('admin')
  const res = await cli(['create-org', '--slug', slug, '--name', 'Acme Inc.', '--plan', 'pro', '--admin-email', email, '--admin-name', 'Ada Lovelace', '--admin-password', PASSWORD])
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, new RegExp(`Created organization ${slug} \\(org_[0-9A-Z]{26}\\), plan pro`))
  t.match(res.stdout, `Created user ${email}`)

  await withDatabase(async db => {
    const row = await db.selectFrom('organizations as o')
      .innerJoin('memberships as m', 'm.org_id', 'o.id')
      .innerJoin('users as u', 'u.id', 'm.user_id')
      .select(['o.name as orgName', 'o.plan', 'o.status', 'u.email', 'u.name', 'u.password_hash', 'm.role', 'm.status as membershipStatus'])
      .where('o.slug', '=', slug).executeTakeFirstOrThrow()
    t.match(row, { orgName: 'Acme Inc.', plan: 'pro', status: 'active', email, name: 'Ada Lovelace', role: 'org_admin', membershipStatus: 'active' })
    t.ok(await verifyPassword(PASSWORD, row.password_hash), 'the stored hash verifies the password')
    t.notMatch(row.password_hash, PASSWORD)
  })

  const takenSlug = await cli(['create-org', '--slug', slug, '--name', 'Other', '--admin-email', uniqueEmail(), '--admin-name', 'Bob', '--admin-password', PASSWORD])
  t.equal(takenSlug.code, 1)
  t.match(takenSlug.stderr, `error: organization slug "${slug}" is already taken`)
})

t.test('create-org with an email already taken creates nothing (one transaction)', async t => {
  const email = uniqueEmail('taken')
  const first = await cli(['create-org', '--slug', uniqueSlug(), '--name', 'First', '--admin-email', email, '--admin-name', 'Ada', '--admin-password', PASSWORD])
  t.equal(first.code, 0, first.stderr)

  const slug = uniqueSlug()
  const res = await cli(['create-org', '--slug', slug, '--name', 'Second', '--admin-email', email.toUpperCase(), '--admin-name', 'Ada', '--admin-password', PASSWORD])
  t.equal(res.code, 1)
  t.match(res.stderr, 'already exists (nothing was created')
  const org = await withDatabase(db => db.selectFrom('organizations').select('id').where('slug', '=', slug).executeTakeFirst())
  t.equal(org, undefined, 'the org was rolled back')
})

t.test('reset-password sets the new password (read from stdin with "-"), ends the sessions and records it', async t => {
  const slug = uniqueSlug()
  const email = uniqueEmail('reset')
  t.equal((await cli(['create-org', '--slug', slug, '--name', 'Reset', '--admin-email', email, '--admin-name', 'Ada', '--admin-password', PASSWORD])).code, 0)
  const sessionId = newId('ses')
  const userId = await withDatabase(async db => {
    const user = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirstOrThrow()
    const org = await db.selectFrom('organizations').select('id').where('slug', '=', slug).executeTakeFirstOrThrow()
    await insertSession(db, { id: sessionId, orgId: org.id, userId: user.id, expiresAt: new Date(Date.now() + 86400_000) })
    return user.id
  })

  const newPassword = 'a much better passphrase'
  const res = await cli(['reset-password', '--email', email, '--password', '-'], { stdin: `${newPassword}\n` })
  t.equal(res.code, 0, res.stderr)
  t.equal(res.stdout.trim().split('\n').at(-1), `Password of ${email} (${userId}) reset; 1 session ended`)
  t.notMatch(res.stdout + res.stderr, newPassword)

  await withDatabase(async db => {
    const user = await db.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirstOrThrow()
    t.ok(await verifyPassword(newPassword, user.password_hash), 'the new password verifies')
    t.notOk(await verifyPassword(PASSWORD, user.password_hash), 'the old one does not')
    t.notOk(await isSessionLive(db, sessionId), 'the session was ended')
    const event = await db.selectFrom('audit_events').selectAll().where('target_id', '=', userId).where('action', '=', 'user.password_reset').executeTakeFirstOrThrow()
    t.match(event, { actor_type: 'system', actor_id: null, target_type: 'user' })
  })

  const unknown = await cli(['reset-password', '--email', uniqueEmail('nobody'), '--password', newPassword])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, 'error: no user with email')
})
