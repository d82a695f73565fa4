import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Type, type Static, type TLiteral, type TOptional, type TSchema, type TString, type TUnion } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { parse as parseDuration } from '@lukeed/ms'
import { makePrivateDir } from './private-dir.ts'

/**
 * What the documentation says of a variable, beside the check of its value. This schema is the one
 * source of the README's configuration table and of .env.example (`npm run config:docs` writes both;
 * a test fails while they are stale).
 */
export interface VariableDocs {
  /** what a valid value looks like, with its bounds: a bad value's message says "expected <description>" */
  description: string
  /** the value used when the variable is unset or empty, written as it would be in .env */
  default?: string
  /** when there is no default value: what leaving the variable unset means */
  unset?: string
  /** what the variable does */
  meaning: string
  /** never printed back, not even in an error message */
  secret?: true
}

/** An environment variable whose value is text checked by `check` (pattern, length). */
function text (check: { pattern?: string, minLength?: number, maxLength?: number }, docs: VariableDocs): TOptional<TString> {
  return Type.Optional(Type.String({ ...check, ...docs }))
}

/** An environment variable that is one of a few words. */
function oneOf<const W extends readonly string[]> (words: W, docs: VariableDocs): TOptional<TUnion<Array<TLiteral<W[number]>>>> {
  return Type.Optional(Type.Union(words.map(word => Type.Literal(word as W[number])), docs))
}

const WHOLE_NUMBER = (digits: number): string => `^[1-9][0-9]{0,${digits - 1}}$`
// Node's timers hold at most 2^31 - 1 ms (about 24.8 days).
const MAX_TIMER_MS = 2_147_483_647
const DURATION = 'milliseconds or a number with a unit (500ms, 30s, 15m, 1h), at most 24.8 days'

// The environment as strings, one entry per variable, each with what it expects and what it does.
// This module is the only reader of process.env: everything else receives a Config.
const EnvSchema = Type.Object({
  NODE_ENV: oneOf(['development', 'production', 'test'], {
    description: 'one of development, production, test',
    default: 'development',
    meaning: '`production` requires `JWT_SECRET` and `API_KEY_PEPPER` (never generates secrets), disables the admin API without `ADMIN_TOKEN`, and logs JSON even on a terminal'
  }),
  PORT: text({ pattern: '^[0-9]{1,5}$' }, { description: 'a TCP port number, 0-65535', default: '3000', meaning: 'TCP port to listen on' }),
  HOST: text({ minLength: 1 }, { description: 'an address to listen on, e.g. 0.0.0.0 or 127.0.0.1', default: '0.0.0.0', meaning: 'Listen address' }),
  DATABASE_URL: text({ pattern: '^postgres(ql)?://' }, {
    description: 'a postgres:// or postgresql:// connection URL',
    unset: 'embedded PGlite in `DATA_DIR`',
    meaning: 'PostgreSQL to use (required for several instances)'
  }),
  DATA_DIR: text({ minLength: 1 }, {
    description: 'a directory path',
    default: './data',
    meaning: 'The embedded database and generated secrets (`secrets.json`): created 0700, and every file in it is made private to the service\'s user at each start'
  }),
  REDIS_URL: text({ pattern: '^rediss?://' }, {
    description: 'a redis:// or rediss:// URL',
    unset: 'off (rate limits and caches per process)',
    meaning: 'Redis: rate limits and revocations shared across instances'
  }),
  REDIS_PREFIX: text({ pattern: '^[A-Za-z0-9:_-]{1,64}$' }, {
    description: '1 to 64 letters, digits, colons, underscores or hyphens',
    default: 'tenantkey:',
    meaning: 'Prefix of every Redis key and channel'
  }),
  JWT_SECRET: text({ minLength: 32 }, {
    description: 'a secret of at least 32 characters',
    unset: 'generated and kept in `DATA_DIR/secrets.json`; required in production',
    meaning: 'HS256 secret of the access tokens',
    secret: true
  }),
  JWT_ISSUER: text({ minLength: 1 }, { description: 'a non-empty string', default: 'tenantkey', meaning: '`iss` claim of access tokens' }),
  JWT_AUDIENCE: text({ minLength: 1 }, { description: 'a non-empty string', default: 'tenantkey', meaning: '`aud` claim of access tokens' }),
  API_KEY_PEPPER: text({ minLength: 32 }, {
    description: 'a secret of at least 32 characters',
    unset: 'generated and kept in `DATA_DIR/secrets.json`; required in production',
    meaning: 'HMAC pepper of API keys. Changing it invalidates every key',
    secret: true
  }),
  ADMIN_TOKEN: text({ minLength: 16 }, {
    description: 'a bearer token of at least 16 characters',
    unset: 'generated, printed once and kept in `DATA_DIR/secrets.json`; in production the admin API is disabled (404)',
    meaning: 'Bearer token of the admin API',
    secret: true
  }),
  RATE_LIMIT_MAX: text({ pattern: WHOLE_NUMBER(9) }, {
    description: 'a whole number of requests from 1 to 999999999',
    default: '300',
    meaning: '`/public/*` requests per key per window, for orgs without a budget of their own'
  }),
  RATE_LIMIT_WINDOW: text({ minLength: 1 }, { description: 'milliseconds or a number with a unit (60s, 15m, 1h, 1d), at most 365 days', default: '15m', meaning: 'The rate-limit window' }),
  API_KEY_FAILURE_MAX: text({ pattern: WHOLE_NUMBER(9) }, {
    description: 'a whole number of attempts from 1 to 999999999',
    default: '30',
    meaning: 'Failed API-key attempts per client IP per minute'
  }),
  LOGIN_FAILURE_MAX: text({ pattern: WHOLE_NUMBER(9) }, {
    description: 'a whole number of attempts from 1 to 999999999',
    default: '10',
    meaning: 'Failed logins per email+IP per 15 minutes'
  }),
  COOKIE_SECURE: oneOf(['true', 'false'], { description: 'true or false', default: 'true', meaning: '`false` allows the session cookies over plain http (local development)' }),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    description: 'one of fatal, error, warn, info, debug, trace, silent',
    default: 'info',
    meaning: 'Logs are JSON lines (pino); when stdout is a terminal and `NODE_ENV` is not `production` they are pretty-printed instead'
  }),
  TRUST_PROXY: text({ minLength: 1 }, {
    description: 'true, false, a hop count, or a comma-separated list of proxy addresses/CIDRs',
    default: 'false',
    meaning: 'Which proxies to trust for the client IP. When set, the proxy\'s `X-Request-Id` (1-128 characters of `A-Z a-z 0-9 . _ : + = / -`; otherwise one is generated) is the request id in the logs and the response'
  }),
  METRICS_TOKEN: text({ minLength: 16 }, {
    description: 'a bearer token of at least 16 characters',
    unset: '`/metrics` is open (keep it off public networks)',
    meaning: 'Bearer token that `GET /metrics` requires',
    secret: true
  }),
  REQUEST_TIMEOUT: text({ minLength: 1 }, {
    description: DURATION,
    default: '30s',
    meaning: 'A request (headers and body) must arrive whole within this time, or it is answered 408 and the connection closed'
  }),
  HEADERS_TIMEOUT: text({ minLength: 1 }, {
    description: `${DURATION}, and at most REQUEST_TIMEOUT`,
    unset: '`REQUEST_TIMEOUT`',
    meaning: 'The header block must arrive within this time (slow-header, "slowloris", clients)'
  }),
  CONNECTION_TIMEOUT: text({ minLength: 1 }, { description: DURATION, default: '60s', meaning: 'A connection with no activity for this long is closed' }),
  KEEP_ALIVE_TIMEOUT: text({ minLength: 1 }, {
    description: DURATION,
    default: '72s',
    meaning: 'An idle kept-alive connection is closed after this long (keep it above your load balancer\'s idle timeout)'
  }),
  SMTP_URL: text({ pattern: '^smtps?://' }, {
    description: 'an smtp:// or smtps:// URL, e.g. smtp://user:pass@host:587',
    unset: 'no mail (invitation tokens are returned by the API instead)',
    meaning: 'Mail server that sends invitations'
  }),
  MAIL_FROM: text({ minLength: 3, maxLength: 320 }, {
    description: 'an address of 3 to 320 characters, e.g. "Acme <no-reply@acme.test>"',
    default: 'tenantkey <no-reply@localhost>',
    meaning: 'From address of invitation mail'
  }),
  MAIL_RETRY_SCHEDULE: text({ minLength: 1 }, {
    description: '1 to 20 comma-separated delays, each 0, milliseconds or a number with a unit (5m), at most 24.8 days',
    default: '0,1m,5m,30m,2h,6h,12h,24h,24h,24h',
    meaning: 'The delay before each attempt to send an invitation mail (the first, then after each failure; about four of the invitation\'s seven days). After the last failure the mail is given up: resend the invitation'
  }),
  INVITE_URL: text({ pattern: '^https?://' }, {
    description: 'an http:// or https:// URL',
    unset: 'the org\'s `appUrl` + `/accept-invite`',
    meaning: 'The page that accepts invitations (the invitation link)'
  }),
  WEBHOOK_TIMEOUT: text({ minLength: 1 }, { description: DURATION, default: '10s', meaning: 'How long a webhook receiver has to answer' }),
  WEBHOOK_RETRY_SCHEDULE: text({ minLength: 1 }, {
    description: '1 to 20 comma-separated delays, each 0, milliseconds or a number with a unit (5m), at most 24.8 days',
    default: '0,1m,5m,30m',
    meaning: 'The delay before each attempt of a webhook delivery'
  }),
  WEBHOOK_ALLOW_PRIVATE: oneOf(['true', 'false'], {
    description: 'true or false',
    default: 'false',
    meaning: '`true` allows http:// and private, loopback and link-local webhook addresses (development and tests only)'
  }),
  GITHUB_SECRET_SCANNING_KEYS: text({ minLength: 1 }, {
    description: 'a path to a JSON file in the shape of GitHub\'s secret-scanning public-keys document',
    unset: '`POST /secret-scanning/github` answers 404',
    meaning: 'The keys that sign GitHub\'s secret-scanning alerts'
  }),
  AUDIT_RETENTION_DAYS: text({ pattern: WHOLE_NUMBER(5) }, {
    description: 'a whole number of days from 1 to 99999',
    default: '365',
    meaning: 'How long audit events are kept'
  })
})
/** Every variable of the environment, with its check and its documentation. */
export const ENVIRONMENT = EnvSchema.properties as unknown as Record<VariableName, TSchema & VariableDocs>
export type VariableName = keyof typeof EnvSchema.properties
type Env = Static<typeof EnvSchema>

export interface Config {
  nodeEnv: 'development' | 'production' | 'test'
  port: number
  host: string
  /** null: the embedded PGlite database in dataDir */
  databaseUrl: string | null
  /** a directory, or 'memory://' for an in-memory embedded database */
  dataDir: string
  redisUrl: string | null
  /** every Redis key and channel starts with this, so several deployments (or test runs) can share one Redis */
  redisPrefix: string
  jwtSecret: string
  jwtIssuer: string
  jwtAudience: string
  apiKeyPepper: string
  /** null: the admin API is disabled (404) */
  adminToken: string | null
  rateLimitMax: number
  rateLimitWindowMs: number
  apiKeyFailureMax: number
  apiKeyFailureWindowMs: number
  loginFailureMax: number
  loginFailureWindowMs: number
  cookieSecure: boolean
  logLevel: string
  trustProxy: boolean | number | string
  bodyLimit: number
  metricsToken: string | null
  /** a request (headers and body) must arrive whole within this many ms, or it is answered 408 and closed */
  requestTimeoutMs: number
  /** the header block must arrive within this many ms (slowloris); at most requestTimeoutMs */
  headersTimeoutMs: number
  /** a socket with no activity for this many ms is closed */
  connectionTimeoutMs: number
  /** an idle kept-alive socket is closed after this many ms */
  keepAliveTimeoutMs: number
  /** null: no mailer; invitation tokens are returned by the API (§12) */
  smtpUrl: string | null
  mailFrom: string
  /** null: the org's appUrl + /accept-invite */
  inviteUrl: string | null
  /** the delay before each attempt to send an invitation mail, the first usually 0 */
  mailRetryScheduleMs: number[]
  webhookTimeoutMs: number
  /** the delay before each attempt of a webhook delivery, the first usually 0 */
  webhookRetryScheduleMs: number[]
  /** development and tests: http:// and non-public addresses allowed for webhooks */
  webhookAllowPrivate: boolean
  /** null: POST /secret-scanning/github answers 404 */
  githubSecretScanningKeysFile: string | null
  auditRetentionDays: number
}

const SECRET_NAMES = ['JWT_SECRET', 'API_KEY_PEPPER', 'ADMIN_TOKEN'] as const
export type SecretName = typeof SECRET_NAMES[number]

export interface LoadedConfig {
  config: Config
  /** secrets the environment left unset, read from (or first written to) DATA_DIR/secrets.json */
  generatedSecrets: SecretName[]
  /** of those, the ones this very start generated: the admin token is printed only then */
  newSecrets: SecretName[]
  /** where generated secrets are kept; null when none is */
  secretsFile: string | null
  /** what start-up put right and an operator should hear of (files in DATA_DIR others could read) */
  warnings: string[]
}

export class ConfigError extends Error {
  constructor (readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

/** The variables that have no default value: unset, they mean something else (their `unset`). */
const WITHOUT_DEFAULT = ['DATABASE_URL', 'REDIS_URL', 'JWT_SECRET', 'API_KEY_PEPPER', 'ADMIN_TOKEN', 'METRICS_TOKEN', 'HEADERS_TIMEOUT', 'SMTP_URL', 'INVITE_URL', 'GITHUB_SECRET_SCANNING_KEYS'] as const
/** The environment with the defaults filled in */
type Settings = Required<Omit<Env, typeof WITHOUT_DEFAULT[number]>> & Env
for (const [name, docs] of Object.entries(ENVIRONMENT)) {
  if ((docs.default === undefined) !== (WITHOUT_DEFAULT as readonly string[]).includes(name)) throw new Error(`config.ts: ${name} needs a default, or to be listed in WITHOUT_DEFAULT with what unset means`)
}
const DEFAULTS = Object.fromEntries(Object.entries(ENVIRONMENT).flatMap(([name, docs]) => docs.default === undefined ? [] : [[name, docs.default]]))

/**
 * Reads and checks the environment once. An empty variable (`PORT=`) counts as unset, except that
 * production refuses an empty JWT_SECRET or API_KEY_PEPPER, naming it, like an unset one.
 */
export function loadConfig (environment: Record<string, string | undefined>): LoadedConfig {
  const raw: Record<string, string> = {}
  for (const name of Object.keys(ENVIRONMENT)) {
    const value = environment[name]
    if (value !== undefined && value !== '') raw[name] = value
  }
  const problems: string[] = []
  /** the variables already named in problems: one line each */
  const named = new Set<string>()
  const bad = (name: VariableName, expected = ENVIRONMENT[name].description): void => {
    problems.push(`${name}=${JSON.stringify(shown(name, raw[name] ?? ''))}: expected ${expected}`)
    named.add(name)
  }
  for (const error of Value.Errors(EnvSchema, raw)) {
    const name = error.path.slice(1) as VariableName
    if (!named.has(name)) bad(name)
  }
  const env = { ...DEFAULTS, ...raw } as Settings
  const nodeEnv = env.NODE_ENV
  const port = Number(env.PORT)
  if (port > 65535) bad('PORT')
  const msOf = (name: VariableName, value: string, max: number): number => {
    const ms = parseWindow(value)
    if (ms !== undefined && ms <= max) return Math.round(ms)
    if (!named.has(name)) bad(name)
    return 1
  }
  const rateLimitWindowMs = msOf('RATE_LIMIT_WINDOW', env.RATE_LIMIT_WINDOW, 365 * 24 * 3600_000)
  const timeouts = {
    requestTimeoutMs: msOf('REQUEST_TIMEOUT', env.REQUEST_TIMEOUT, MAX_TIMER_MS),
    connectionTimeoutMs: msOf('CONNECTION_TIMEOUT', env.CONNECTION_TIMEOUT, MAX_TIMER_MS),
    keepAliveTimeoutMs: msOf('KEEP_ALIVE_TIMEOUT', env.KEEP_ALIVE_TIMEOUT, MAX_TIMER_MS)
  }
  // Node refuses a header timeout longer than the request timeout, which bounds the headers anyway.
  const headersTimeoutMs = env.HEADERS_TIMEOUT === undefined ? timeouts.requestTimeoutMs : msOf('HEADERS_TIMEOUT', env.HEADERS_TIMEOUT, MAX_TIMER_MS)
  if (!named.has('REQUEST_TIMEOUT') && headersTimeoutMs > timeouts.requestTimeoutMs) bad('HEADERS_TIMEOUT', `at most REQUEST_TIMEOUT (${timeouts.requestTimeoutMs} ms)`)
  const webhookTimeoutMs = msOf('WEBHOOK_TIMEOUT', env.WEBHOOK_TIMEOUT, MAX_TIMER_MS)
  const webhookRetryScheduleMs = retrySchedule(env.WEBHOOK_RETRY_SCHEDULE)
  if (webhookRetryScheduleMs === undefined) bad('WEBHOOK_RETRY_SCHEDULE')
  const mailRetryScheduleMs = retrySchedule(env.MAIL_RETRY_SCHEDULE)
  if (mailRetryScheduleMs === undefined) bad('MAIL_RETRY_SCHEDULE')
  if (nodeEnv === 'production') {
    for (const name of ['JWT_SECRET', 'API_KEY_PEPPER'] as const) {
      const state = environment[name] === undefined ? 'unset' : environment[name] === '' ? 'empty' : null
      if (state !== null) problems.push(`${name} is required in production and is ${state}: expected ${ENVIRONMENT[name].description}`)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)

  const dataDir = env.DATA_DIR
  const secrets: Partial<Record<SecretName, string>> = { JWT_SECRET: env.JWT_SECRET, API_KEY_PEPPER: env.API_KEY_PEPPER, ADMIN_TOKEN: env.ADMIN_TOKEN }
  const keepsSecrets = nodeEnv !== 'production' && SECRET_NAMES.some(name => secrets[name] === undefined)
  const embeddedOnDisk = env.DATABASE_URL === undefined && !dataDir.startsWith('memory://')
  const loaded: Omit<LoadedConfig, 'config'> = { generatedSecrets: [], newSecrets: [], secretsFile: null, warnings: [] }
  // Before the embedded database or secrets.json writes a byte, and on every start.
  if (keepsSecrets || embeddedOnDisk) {
    loaded.warnings = makePrivateDir(secretsDir(dataDir)).map(({ path, mode }) =>
      `${path} could be read by other users (mode ${mode.toString(8).padStart(4, '0')}): made private to this user`)
  }
  if (keepsSecrets) {
    const kept = keptSecrets(secretsDir(dataDir))
    loaded.secretsFile = kept.file
    for (const name of SECRET_NAMES) {
      if (secrets[name] !== undefined) continue
      secrets[name] = kept.secrets[name]
      loaded.generatedSecrets.push(name)
      if (kept.generated.includes(name)) loaded.newSecrets.push(name)
    }
  }

  return {
    ...loaded,
    config: {
      nodeEnv,
      port,
      host: env.HOST,
      databaseUrl: env.DATABASE_URL ?? null,
      dataDir,
      redisUrl: env.REDIS_URL ?? null,
      redisPrefix: env.REDIS_PREFIX,
      jwtSecret: secrets.JWT_SECRET as string,
      jwtIssuer: env.JWT_ISSUER,
      jwtAudience: env.JWT_AUDIENCE,
      apiKeyPepper: secrets.API_KEY_PEPPER as string,
      adminToken: secrets.ADMIN_TOKEN ?? null,
      rateLimitMax: Number(env.RATE_LIMIT_MAX),
      rateLimitWindowMs,
      apiKeyFailureMax: Number(env.API_KEY_FAILURE_MAX),
      apiKeyFailureWindowMs: 60_000,
      loginFailureMax: Number(env.LOGIN_FAILURE_MAX),
      loginFailureWindowMs: 15 * 60_000,
      cookieSecure: env.COOKIE_SECURE !== 'false',
      logLevel: env.LOG_LEVEL,
      trustProxy: parseTrustProxy(env.TRUST_PROXY),
      bodyLimit: 16 * 1024,
      metricsToken: env.METRICS_TOKEN ?? null,
      ...timeouts,
      headersTimeoutMs,
      smtpUrl: env.SMTP_URL ?? null,
      mailFrom: env.MAIL_FROM,
      inviteUrl: env.INVITE_URL ?? null,
      mailRetryScheduleMs: mailRetryScheduleMs ?? [],
      webhookTimeoutMs,
      webhookRetryScheduleMs: webhookRetryScheduleMs ?? [],
      webhookAllowPrivate: env.WEBHOOK_ALLOW_PRIVATE === 'true',
      githubSecretScanningKeysFile: env.GITHUB_SECRET_SCANNING_KEYS ?? null,
      auditRetentionDays: Number(env.AUDIT_RETENTION_DAYS)
    }
  }
}

function parseWindow (value: string): number | undefined {
  if (/^[0-9]+$/.test(value)) return Number(value) > 0 ? Number(value) : undefined
  const ms = parseDuration(value)
  return ms !== undefined && ms > 0 ? ms : undefined
}

function retrySchedule (value: string): number[] | undefined {
  const delays = value.split(',').map(entry => entry.trim())
  if (delays.length === 0 || delays.length > 20) return undefined
  const parsed = delays.map(entry => /^0+$/.test(entry) ? 0 : parseWindow(entry))
  if (parsed.some(ms => ms === undefined || ms > MAX_TIMER_MS)) return undefined
  return parsed.map(ms => Math.round(ms as number))
}

function parseTrustProxy (value: string): boolean | number | string {
  if (value === 'false') return false
  if (value === 'true') return true
  if (/^[0-9]+$/.test(value)) return Number(value)
  return value
}

/** A value as an error message may show it: never a secret, nor the password in a URL. */
function shown (name: VariableName, value: string): string {
  if (ENVIRONMENT[name].secret === true) return `<${value.length} characters>`
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#@:]*):[^/?#@]*@/i, '$1:***@')
}

interface KeptSecrets {
  file: string
  secrets: Record<SecretName, string>
  /** generated by this call (not found in the file) */
  generated: SecretName[]
}

/** Where secrets.json is: DATA_DIR, or ./data when the embedded database is in memory. */
function secretsDir (dataDir: string): string {
  return dataDir.startsWith('memory://') ? resolve('./data') : resolve(dataDir)
}

// A generated pepper or JWT secret must survive a restart: a new pepper would silently
// invalidate every API key, a new JWT secret every session.
function keptSecrets (dir: string): KeptSecrets {
  const file = join(dir, 'secrets.json')
  let kept: Record<string, string> = {}
  if (existsSync(file)) {
    try {
      kept = JSON.parse(readFileSync(file, 'utf8'))
    } catch {
      throw new ConfigError([`${file} is not valid JSON: fix or delete it (deleting it invalidates every API key and session)`])
    }
  }
  const generated: SecretName[] = []
  for (const name of SECRET_NAMES) {
    if (typeof kept[name] !== 'string' || kept[name].length < 32) {
      kept[name] = randomBytes(32).toString('base64url')
      generated.push(name)
    }
  }
  if (generated.length > 0) {
    writeFileSync(file, JSON.stringify(kept, null, 2) + '\n', { mode: 0o600 })
    chmodSync(file, 0o600)
  }
  return { file, secrets: kept as Record<SecretName, string>, generated }
}
