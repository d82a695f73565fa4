import { parseArgs, type ParseArgsConfig } from 'node:util'
import { text } from 'node:stream/consumers'
import { FormatRegistry, type TObject } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { Kysely } from 'kysely'
import { loadConfig, ConfigError, type Config } from './config.ts'
import type { Database } from '../db/database.ts'
import * as adminSchemas from '../schemas/admin.ts'
import { isEmail } from '../schemas/common.ts'
import { hashPassword } from './passwords.ts'
import { idPattern, newId } from './ids.ts'

// The operator's tool for when the server is not running: `npm run cli -- <command> [options]`.
// It reads the same environment as the server (loadConfig), so it opens the same database.
// Database modules are imported only when a command needs them, so help and usage errors are quick.

/** A failure the operator can act on: printed as one line, exit code 1 (2 for a usage mistake). */
class CliError extends Error {
  constructor (message: string, readonly exitCode = 1) { super(message) }
}
const usage = (message: string): CliError => new CliError(`${message}\nRun \`npm run cli -- help\` for the commands and their options.`, 2)

type Options = NonNullable<ParseArgsConfig['options']>
type Values = Record<string, string | undefined>

interface Command {
  summary: string
  usage: string
  options: Options
  required: string[]
  /** checks the input (before any database work) and returns the work to do on the database */
  prepare: (values: Values) => Promise<(context: Context) => Promise<void>>
}
interface Context {
  db: Kysely<Database>
  print: (line: string) => void
  /** after a commit that changes what /public answers about these orgs: running instances stop trusting their caches */
  orgsChanged: (orgIds: string[]) => Promise<void>
}

const COMMANDS: Record<string, Command> = {
  migrate: {
    summary: 'Apply pending database migrations (every other command does this first too).',
    usage: 'migrate',
    options: {},
    required: [],
    prepare: async () => async () => {}
  },
  'create-org': {
    summary: 'Create an organization and its first org_admin (a new user), in one transaction.',
    usage: 'create-org --slug <slug> --name <name> [--plan <plan>] --admin-email <email> --admin-name <name> --admin-password <password|->',
    options: {
      slug: { type: 'string' },
      name: { type: 'string' },
      plan: { type: 'string' },
      'admin-email': { type: 'string' },
      'admin-name': { type: 'string' },
      'admin-password': { type: 'string' }
    },
    required: ['slug', 'name', 'admin-email', 'admin-name', 'admin-password'],
    prepare: async (values) => {
      const org = { slug: values.slug as string, name: (values.name as string).trim(), plan: values.plan ?? 'free' }
      const password = await passwordValue(values['admin-password'] as string)
      const user = { email: (values['admin-email'] as string).trim(), name: (values['admin-name'] as string).trim(), password }
      check(adminSchemas.createOrg.body, org, { slug: '--slug', name: '--name', plan: '--plan' })
      check(adminSchemas.createUser.body, user, { email: '--admin-email', name: '--admin-name', password: '--admin-password' })
      const passwordHash = await hashPassword(password)
      return async ({ db, print }) => {
        const [{ insertOrg }, { insertUser }, { insertMembership }, { recordEvent, SYSTEM_ACTOR }] = await Promise.all([
          import('../db/queries/orgs.ts'), import('../db/queries/users.ts'), import('../db/queries/memberships.ts'), import('../db/queries/events.ts')
        ])
        // The same events as the admin API's three calls, by the system (the operator at the console).
        const created = await db.transaction().execute(async trx => {
          const insertedOrg = await insertOrg(trx, { id: newId('org'), slug: org.slug, name: org.name, plan: org.plan, app_url: null })
          if (insertedOrg === null) throw new CliError(`organization slug "${org.slug}" is already taken`)
          const insertedUser = await insertUser(trx, { id: newId('usr'), email: user.email, name: user.name, passwordHash })
          if (insertedUser === null) throw new CliError(`a user with email ${user.email} already exists (nothing was created; an existing user joins an org through POST /api/v1/admin/orgs/:slug/members)`)
          const membership = await insertMembership(trx, { id: newId('mem'), orgId: insertedOrg.id, userId: insertedUser.id, role: 'org_admin' })
          if (membership === null) throw new CliError('the new user is already a member of the new organization (cannot happen)')
          const orgId = insertedOrg.id
          const who = { id: insertedUser.id, name: insertedUser.name, email: insertedUser.email }
          const { role, status, joinedAt } = membership
          await recordEvent(trx, { type: 'org.created', orgId, actor: SYSTEM_ACTOR, target: { type: 'org', id: orgId }, data: { org: insertedOrg }, ip: null })
          await recordEvent(trx, { type: 'user.created', orgId: null, actor: SYSTEM_ACTOR, target: { type: 'user', id: who.id }, data: { user: who }, ip: null })
          await recordEvent(trx, { type: 'member.joined', orgId, actor: SYSTEM_ACTOR, target: { type: 'user', id: who.id }, data: { user: who, membership: { role, status, joinedAt } }, ip: null })
          return { org: insertedOrg, user: insertedUser }
        })
        print(`Created organization ${created.org.slug} (${created.org.id}), plan ${created.org.plan}`)
        print(`Created user ${created.user.email} (${created.user.id}) as its org_admin`)
      }
    }
  },
  'reset-password': {
    summary: "Set a user's password and end all of their sessions.",
    usage: 'reset-password --email <email> --password <password|->',
    options: { email: { type: 'string' }, password: { type: 'string' } },
    required: ['email', 'password'],
    prepare: async (values) => {
      const email = (values.email as string).trim()
      const password = await passwordValue(values.password as string)
      check(adminSchemas.createUser.body.properties.password, password, '--password')
      const passwordHash = await hashPassword(password)
      return async ({ db, print, orgsChanged }) => {
        const [{ findUserByEmail, updateUserPassword }, { revokeAllUserSessions }, { recordEvent, SYSTEM_ACTOR }] = await Promise.all([
          import('../db/queries/users.ts'), import('../db/queries/sessions.ts'), import('../db/queries/events.ts')
        ])
        const user = await findUserByEmail(db, email)
        if (user === undefined) throw new CliError(`no user with email ${email}`)
        const ended = await db.transaction().execute(async trx => {
          await updateUserPassword(trx, user.id, passwordHash)
          const count = await revokeAllUserSessions(trx, user.id, 'password_reset')
          await recordEvent(trx, { type: 'user.password_reset', orgId: null, actor: SYSTEM_ACTOR, target: { type: 'user', id: user.id }, data: { via: 'cli', sessionsEnded: count }, ip: null })
          return count
        })
        const memberships = await db.selectFrom('memberships').select('org_id').where('user_id', '=', user.id).execute()
        await orgsChanged(memberships.map(membership => membership.org_id))
        print(`Password of ${user.email} (${user.id}) reset; ${ended} session${ended === 1 ? '' : 's'} ended`)
      }
    }
  },
  'revoke-key': {
    summary: 'Revoke an API key (recorded in the audit trail as done by the system).',
    usage: 'revoke-key --key-id <key_…> [--org <slug>]',
    options: { 'key-id': { type: 'string' }, org: { type: 'string' } },
    required: ['key-id'],
    prepare: async (values) => {
      const keyId = values['key-id'] as string
      const orgSlug = values.org
      if (!new RegExp(idPattern('key')).test(keyId)) throw usage('--key-id: invalid value (expected: an API key id, key_ followed by 26 characters, as GET /api/v1/org/api-keys lists)')
      return async ({ db, print, orgsChanged }) => {
        const [{ findApiKeyWithOrg, revokeApiKey, toApiKey }, { recordEvent, SYSTEM_ACTOR }] = await Promise.all([
          import('../db/queries/api-keys.ts'), import('../db/queries/events.ts')
        ])
        const key = await findApiKeyWithOrg(db, keyId)
        // With --org, a key of another org is as unknown as a key that does not exist.
        if (key === undefined || (orgSlug !== undefined && key.orgSlug !== orgSlug)) {
          throw new CliError(`no API key ${keyId}${orgSlug === undefined ? '' : ` in organization ${orgSlug}`}`)
        }
        const outcome = await db.transaction().execute(async trx => {
          const result = await revokeApiKey(trx, { orgId: key.orgId, keyId, revokedBy: null })
          if (result.outcome === 'revoked') {
            await recordEvent(trx, { type: 'api_key.revoked', orgId: key.orgId, actor: SYSTEM_ACTOR, target: { type: 'api_key', id: keyId }, data: { apiKey: toApiKey(result.row) }, ip: null })
          }
          return result.outcome
        })
        if (outcome === 'revoked') await orgsChanged([key.orgId])
        const described = `API key ${keyId} ("${key.name}", ${key.prefix}…) of ${key.orgSlug}`
        print(outcome === 'revoked' ? `Revoked ${described}` : `${described} was already revoked (${key.revokedAt?.toISOString() ?? 'just now'}); nothing to do`)
      }
    }
  },
  usage: {
    summary: "Plot an API key's requests per hour (§14) in the terminal: one bar per hour, refusals beside it.",
    usage: 'usage --key-id <key_…> [--hours <1-168, default 24>]',
    options: { 'key-id': { type: 'string' }, hours: { type: 'string' } },
    required: ['key-id'],
    prepare: async (values) => {
      const keyId = values['key-id'] as string
      if (!new RegExp(idPattern('key')).test(keyId)) throw usage('--key-id: invalid value (expected: an API key id, key_ followed by 26 characters, as GET /api/v1/org/api-keys lists)')
      const hours = values.hours === undefined ? 24 : Number(values.hours)
      if (!Number.isInteger(hours) || hours < 1 || hours > 168) throw usage('--hours: invalid value (expected: a whole number of hours, 1 to 168)')
      return async ({ db, print }) => {
        const [{ findApiKeyWithOrg }, { listHourlyUsage }] = await Promise.all([import('../db/queries/api-keys.ts'), import('../db/queries/usage.ts')])
        const key = await findApiKeyWithOrg(db, keyId)
        if (key === undefined) throw new CliError(`no API key ${keyId}`)
        const hourMs = 3_600_000
        const first = Date.now() - Date.now() % hourMs - (hours - 1) * hourMs
        const rows = new Map((await listHourlyUsage(db, keyId, new Date(first), new Date(first + hours * hourMs))).map(row => [row.hour.getTime(), row]))
        const peak = Math.max(1, ...[...rows.values()].map(row => row.total))
        print(`API key ${keyId} ("${key.name}", ${key.prefix}…) of ${key.orgSlug}: requests per hour (UTC), the last ${hours} hours`)
        for (let at = first; at < first + hours * hourMs; at += hourMs) {
          const row = rows.get(at)
          const total = row?.total ?? 0
          const refused = row === undefined ? '' : [[row.rateLimited, '429'], [row.forbidden, '403'], [row.clientError, '4xx']].filter(([n]) => n !== 0).map(([n, label]) => `${label}: ${n}`).join(', ')
          const bar = '█'.repeat(Math.round(total / peak * 40))
          print(`${new Date(at).toISOString().slice(0, 13).replace('T', ' ')}:00  ${bar.padEnd(40)} ${total}${refused === '' ? '' : `  (${refused})`}`)
        }
      }
    }
  }
}

function helpText (): string {
  const width = Math.max(...Object.keys(COMMANDS).map(name => name.length))
  return [
    'tenantkey operator CLI — works on the database of the current environment (DATABASE_URL, or the',
    'embedded database in DATA_DIR), for use while the server is not running.',
    '',
    'Usage: npm run cli -- <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}\n  ${' '.repeat(width)}  npm run cli -- ${command.usage}`),
    `  ${'help'.padEnd(width)}  Show this help.`,
    '',
    'A password given as "-" is read from standard input, which keeps it out of shell history and ps.',
    'Exit status: 0 done, 1 failed, 2 wrong usage.'
  ].join('\n')
}

async function passwordValue (value: string): Promise<string> {
  if (value !== '-') return value
  if (process.stdin.isTTY === true) throw usage('"-" reads the password from standard input: pipe it in, e.g. `printf %s "$PASSWORD" | npm run cli -- …`')
  return (await text(process.stdin)).replace(/\r?\n$/, '')
}

// The admin API's own schemas decide what is valid, so the CLI can create nothing the API would refuse
// (the Email schema's pattern is the rule; its format, which TypeBox needs registered, is the same one).
FormatRegistry.Has('email') || FormatRegistry.Set('email', isEmail)
FormatRegistry.Has('uri') || FormatRegistry.Set('uri', value => URL.canParse(value))

function check (schema: TObject | TObject['properties'][string], value: unknown, flags: Record<string, string> | string): void {
  const error = Value.Errors(schema, value).First()
  if (error === undefined) return
  const field = error.path.split('/')[1] ?? ''
  const flag = typeof flags === 'string' ? flags : flags[field] ?? `--${field}`
  const fieldSchema = (typeof flags === 'string' ? schema : (schema as TObject).properties[field]) as { description?: string } | undefined
  throw usage(`${flag}: invalid value (expected: ${fieldSchema?.description ?? error.message})`)
}

/**
 * Servers may be running on this database after all (several instances with PostgreSQL): with
 * REDIS_URL, move the orgs' epochs on as the server's own writes do, so every instance stops
 * trusting what it cached about them. The change itself is committed either way; without Redis
 * an instance's cache entries expire within 60 seconds.
 */
async function moveOrgEpochs (config: Config, orgIds: string[]): Promise<void> {
  if (config.redisUrl === null || orgIds.length === 0) return
  const [{ Redis }, { orgEpochKey }] = await Promise.all([import('ioredis'), import('../plugins/public-api/freshness.ts')])
  const redis = new Redis(config.redisUrl, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, retryStrategy: () => null })
  redis.on('error', () => {}) // reported below, once
  try {
    await redis.connect()
    await Promise.all(orgIds.map(orgId => redis.incr(orgEpochKey(config.redisPrefix, orgId))))
    console.log('Running instances were told through Redis (org epoch moved on)')
  } catch (error) {
    console.error(`warning: Redis unreachable (${(error as Error).message}): running instances may answer from their caches for up to 60 seconds`)
  } finally {
    redis.disconnect()
  }
}

function describeDatabase (config: Config): string {
  return config.databaseUrl === null ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL (DATABASE_URL)'
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(helpText())
    return 0
  }
  const command = COMMANDS[name]
  if (command === undefined) throw usage(`unknown command "${name}"`)
  let values: Values
  try {
    values = parseArgs({ args: rest, options: command.options, strict: true, allowPositionals: false }).values as Values
  } catch (error) {
    throw usage(`${(error as Error).message.split('\n')[0]} (usage: npm run cli -- ${command.usage})`)
  }
  const missing = command.required.filter(option => values[option] === undefined)
  if (missing.length > 0) throw usage(`${name} needs ${missing.map(option => `--${option}`).join(', ')} (usage: npm run cli -- ${command.usage})`)

  const work = await command.prepare(values)
  const { config } = loadConfig(process.env)
  const { createDatabase, migrateToLatest } = await import('../db/connect.ts')
  const database = createDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir })
  try {
    const applied = await migrateToLatest(database.db)
    if (applied.length > 0 || name === 'migrate') {
      console.log(`Database: ${describeDatabase(config)}; ${applied.length === 0 ? 'up to date' : `applied ${applied.join(', ')}`}`)
    }
    await work({ db: database.db, print: line => console.log(line), orgsChanged: orgIds => moveOrgEpochs(config, orgIds) })
  } finally {
    await database.close()
  }
  return 0
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (error) {
  if (error instanceof CliError) {
    console.error(`error: ${error.message}`)
    process.exitCode = error.exitCode
  } else if (error instanceof ConfigError) {
    console.error(error.message)
    process.exitCode = 1
  } else {
    console.error(`error: ${(error as Error).message}`)
    process.exitCode = 1
  }
}
