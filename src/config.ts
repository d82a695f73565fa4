import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { parse as parseDuration } from '@lukeed/ms'

// The environment as strings, one entry per variable, each with what it expects.
// This module is the only reader of process.env: everything else receives a Config.
const EnvSchema = Type.Object({
  NODE_ENV: Type.Optional(Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { description: 'one of development, production, test' })),
  PORT: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: 'a TCP port number, 0-65535' })),
  HOST: Type.Optional(Type.String({ minLength: 1, description: 'an address to listen on, e.g. 0.0.0.0 or 127.0.0.1' })),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'a postgres:// or postgresql:// connection URL (unset: embedded PGlite in DATA_DIR)' })),
  DATA_DIR: Type.Optional(Type.String({ minLength: 1, description: 'a directory for the embedded database and generated secrets' })),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'a redis:// or rediss:// URL' })),
  REDIS_PREFIX: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9:_-]{1,64}$', description: 'a key prefix of letters, digits, colon, underscore or hyphen (default tenantkey:)' })),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32, description: 'a secret of at least 32 characters' })),
  JWT_ISSUER: Type.Optional(Type.String({ minLength: 1, description: 'the iss claim of access tokens' })),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1, description: 'the aud claim of access tokens' })),
  API_KEY_PEPPER: Type.Optional(Type.String({ minLength: 32, description: 'a secret of at least 32 characters' })),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'a bearer token of at least 16 characters' })),
  RATE_LIMIT_MAX: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,8}$', description: 'a positive whole number of requests' })),
  RATE_LIMIT_WINDOW: Type.Optional(Type.String({ minLength: 1, description: 'milliseconds, or a duration such as 15m or "15 minutes"' })),
  API_KEY_FAILURE_MAX: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,8}$', description: 'a positive whole number of failed API-key attempts per IP per minute' })),
  LOGIN_FAILURE_MAX: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,8}$', description: 'a positive whole number of failed logins per email+IP per 15 minutes' })),
  COOKIE_SECURE: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'true or false' })),
  LOG_LEVEL: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l)), { description: 'one of fatal, error, warn, info, debug, trace, silent' })),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1, description: 'true, false, a hop count, or a comma-separated list of proxy addresses/CIDRs' })),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'a bearer token of at least 16 characters' })),
  REQUEST_TIMEOUT: Type.Optional(Type.String({ minLength: 1, description: 'milliseconds, or a duration such as 30s' })),
  HEADERS_TIMEOUT: Type.Optional(Type.String({ minLength: 1, description: 'milliseconds, or a duration such as 30s, at most REQUEST_TIMEOUT' })),
  CONNECTION_TIMEOUT: Type.Optional(Type.String({ minLength: 1, description: 'milliseconds, or a duration such as 60s' })),
  KEEP_ALIVE_TIMEOUT: Type.Optional(Type.String({ minLength: 1, description: 'milliseconds, or a duration such as 72s' })),
  SMTP_URL: Type.Optional(Type.String({ pattern: '^smtps?://', description: 'an smtp:// or smtps:// URL of the mail server for invitations, e.g. smtp://user:pass@host:587 (unset: invitation tokens are returned by the API instead)' })),
  MAIL_FROM: Type.Optional(Type.String({ minLength: 3, maxLength: 320, description: 'the From address of invitation mail, e.g. "Acme <no-reply@acme.test>"' })),
  INVITE_URL: Type.Optional(Type.String({ pattern: '^https?://', description: 'an http(s) URL of the page that accepts invitations (unset: the org\'s appUrl + /accept-invite)' })),
  WEBHOOK_TIMEOUT: Type.Optional(Type.String({ minLength: 1, description: 'milliseconds, or a duration such as 10s: how long a webhook receiver has to answer' })),
  WEBHOOK_RETRY_SCHEDULE: Type.Optional(Type.String({ minLength: 1, description: 'a comma-separated list of delays before each webhook attempt, such as 0,1m,5m,30m' })),
  WEBHOOK_ALLOW_PRIVATE: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'true or false: allow http:// and private, loopback and link-local webhook addresses (development and tests only)' })),
  GITHUB_SECRET_SCANNING_KEYS: Type.Optional(Type.String({ minLength: 1, description: 'a path to a JSON file in the shape of GitHub\'s secret-scanning public-keys document (unset: the GitHub endpoint answers 404)' })),
  AUDIT_RETENTION_DAYS: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,4}$', description: 'a positive whole number of days to keep audit events, at most 99999' }))
})
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
  webhookTimeoutMs: number
  /** the delay before each attempt of a webhook delivery, the first usually 0 */
  webhookRetryScheduleMs: number[]
  /** development and tests: http:// and non-public addresses allowed for webhooks */
  webhookAllowPrivate: boolean
  /** null: POST /secret-scanning/github answers 404 */
  githubSecretScanningKeysFile: string | null
  auditRetentionDays: number
}

export interface LoadedConfig {
  config: Config
  /** secrets that were generated or read from DATA_DIR/secrets.json because the environment left them unset */
  generatedSecrets: Array<'JWT_SECRET' | 'API_KEY_PEPPER' | 'ADMIN_TOKEN'>
}

export class ConfigError extends Error {
  constructor (readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const SECRET_NAMES = ['JWT_SECRET', 'API_KEY_PEPPER', 'ADMIN_TOKEN'] as const

export function loadConfig (environment: Record<string, string | undefined>): LoadedConfig {
  const raw: Record<string, string> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = environment[name]
    if (value !== undefined && value !== '') raw[name] = value
  }
  const problems: string[] = []
  for (const error of Value.Errors(EnvSchema, raw)) {
    const name = error.path.slice(1)
    const expected = (EnvSchema.properties as Record<string, { description?: string }>)[name]?.description ?? error.message
    problems.push(`${name}=${JSON.stringify(redactIfSecret(name, String(raw[name])))}: expected ${expected}`)
  }
  const env = raw as Env
  const nodeEnv = env.NODE_ENV ?? 'development'
  const port = env.PORT === undefined ? 3000 : Number(env.PORT)
  if (port > 65535) problems.push(`PORT=${env.PORT}: expected a TCP port number, 0-65535`)
  const rateLimitWindowMs = env.RATE_LIMIT_WINDOW === undefined ? 15 * 60_000 : parseWindow(env.RATE_LIMIT_WINDOW)
  if (rateLimitWindowMs === undefined) problems.push(`RATE_LIMIT_WINDOW=${JSON.stringify(env.RATE_LIMIT_WINDOW)}: expected milliseconds, or a duration such as 15m or "15 minutes"`)
  const timeouts = {
    requestTimeoutMs: duration('REQUEST_TIMEOUT', env.REQUEST_TIMEOUT, 30_000, problems),
    connectionTimeoutMs: duration('CONNECTION_TIMEOUT', env.CONNECTION_TIMEOUT, 60_000, problems),
    keepAliveTimeoutMs: duration('KEEP_ALIVE_TIMEOUT', env.KEEP_ALIVE_TIMEOUT, 72_000, problems)
  }
  // Node refuses a header timeout longer than the request timeout, which bounds the headers anyway.
  const headersTimeoutMs = duration('HEADERS_TIMEOUT', env.HEADERS_TIMEOUT, timeouts.requestTimeoutMs, problems)
  if (headersTimeoutMs > timeouts.requestTimeoutMs) problems.push(`HEADERS_TIMEOUT=${JSON.stringify(env.HEADERS_TIMEOUT)}: expected at most REQUEST_TIMEOUT (${timeouts.requestTimeoutMs} ms)`)
  const webhookTimeoutMs = duration('WEBHOOK_TIMEOUT', env.WEBHOOK_TIMEOUT, 10_000, problems)
  const webhookRetryScheduleMs = retrySchedule(env.WEBHOOK_RETRY_SCHEDULE ?? '0,1m,5m,30m')
  if (webhookRetryScheduleMs === undefined) problems.push(`WEBHOOK_RETRY_SCHEDULE=${JSON.stringify(env.WEBHOOK_RETRY_SCHEDULE)}: expected 1 to 20 comma-separated delays, each 0, milliseconds or a duration such as 5m (at most 24.8 days)`)
  if (nodeEnv === 'production') {
    if (env.JWT_SECRET === undefined && environment.JWT_SECRET === undefined) problems.push('JWT_SECRET is required in production: a secret of at least 32 characters')
    if (env.API_KEY_PEPPER === undefined && environment.API_KEY_PEPPER === undefined) problems.push('API_KEY_PEPPER is required in production: a secret of at least 32 characters')
  }
  if (problems.length > 0) throw new ConfigError(problems)

  const dataDir = env.DATA_DIR ?? './data'
  const generatedSecrets: LoadedConfig['generatedSecrets'] = []
  const secrets: Partial<Record<typeof SECRET_NAMES[number], string>> = {
    JWT_SECRET: env.JWT_SECRET, API_KEY_PEPPER: env.API_KEY_PEPPER, ADMIN_TOKEN: env.ADMIN_TOKEN
  }
  if (nodeEnv !== 'production' && SECRET_NAMES.some(name => secrets[name] === undefined)) {
    const kept = keptSecrets(dataDir)
    for (const name of SECRET_NAMES) {
      if (secrets[name] !== undefined) continue
      secrets[name] = kept[name]
      generatedSecrets.push(name)
    }
  }

  return {
    generatedSecrets,
    config: {
      nodeEnv,
      port,
      host: env.HOST ?? '0.0.0.0',
      databaseUrl: env.DATABASE_URL ?? null,
      dataDir,
      redisUrl: env.REDIS_URL ?? null,
      redisPrefix: env.REDIS_PREFIX ?? 'tenantkey:',
      jwtSecret: secrets.JWT_SECRET as string,
      jwtIssuer: env.JWT_ISSUER ?? 'tenantkey',
      jwtAudience: env.JWT_AUDIENCE ?? 'tenantkey',
      apiKeyPepper: secrets.API_KEY_PEPPER as string,
      adminToken: secrets.ADMIN_TOKEN ?? null,
      rateLimitMax: env.RATE_LIMIT_MAX === undefined ? 300 : Number(env.RATE_LIMIT_MAX),
      rateLimitWindowMs: rateLimitWindowMs as number,
      apiKeyFailureMax: env.API_KEY_FAILURE_MAX === undefined ? 30 : Number(env.API_KEY_FAILURE_MAX),
      apiKeyFailureWindowMs: 60_000,
      loginFailureMax: env.LOGIN_FAILURE_MAX === undefined ? 10 : Number(env.LOGIN_FAILURE_MAX),
      loginFailureWindowMs: 15 * 60_000,
      cookieSecure: env.COOKIE_SECURE !== 'false',
      logLevel: env.LOG_LEVEL ?? 'info',
      trustProxy: parseTrustProxy(env.TRUST_PROXY),
      bodyLimit: 16 * 1024,
      metricsToken: env.METRICS_TOKEN ?? null,
      ...timeouts,
      headersTimeoutMs,
      smtpUrl: env.SMTP_URL ?? null,
      mailFrom: env.MAIL_FROM ?? 'tenantkey <no-reply@localhost>',
      inviteUrl: env.INVITE_URL ?? null,
      webhookTimeoutMs,
      webhookRetryScheduleMs: webhookRetryScheduleMs as number[],
      webhookAllowPrivate: env.WEBHOOK_ALLOW_PRIVATE === 'true',
      githubSecretScanningKeysFile: env.GITHUB_SECRET_SCANNING_KEYS ?? null,
      auditRetentionDays: env.AUDIT_RETENTION_DAYS === undefined ? 365 : Number(env.AUDIT_RETENTION_DAYS)
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
  if (parsed.some(ms => ms === undefined || ms > 2_147_483_647)) return undefined
  return parsed.map(ms => Math.round(ms as number))
}

function duration (name: string, value: string | undefined, fallback: number, problems: string[]): number {
  if (value === undefined) return fallback
  const parsed = parseWindow(value)
  // Node's timers hold at most 2^31 - 1 ms (about 24.8 days).
  const ms = parsed === undefined ? undefined : Math.round(parsed)
  if (ms === undefined || ms < 1 || ms > 2_147_483_647) {
    problems.push(`${name}=${JSON.stringify(value)}: expected milliseconds, or a duration such as 30s`)
    return fallback
  }
  return ms
}

function parseTrustProxy (value: string | undefined): boolean | number | string {
  if (value === undefined || value === 'false') return false
  if (value === 'true') return true
  if (/^[0-9]+$/.test(value)) return Number(value)
  return value
}

function redactIfSecret (name: string, value: string): string {
  return /SECRET|PEPPER|TOKEN/.test(name) ? `<${value.length} characters>` : value
}

// A generated pepper or JWT secret must survive a restart: a new pepper would silently
// invalidate every API key, a new JWT secret every session.
function keptSecrets (dataDir: string): Record<typeof SECRET_NAMES[number], string> {
  const dir = dataDir.startsWith('memory://') ? resolve('./data') : resolve(dataDir)
  const file = join(dir, 'secrets.json')
  let kept: Record<string, string> = {}
  if (existsSync(file)) {
    try {
      kept = JSON.parse(readFileSync(file, 'utf8'))
    } catch {
      throw new ConfigError([`${file} is not valid JSON: fix or delete it (deleting it invalidates every API key and session)`])
    }
  }
  let changed = false
  for (const name of SECRET_NAMES) {
    if (typeof kept[name] !== 'string' || kept[name].length < 32) {
      kept[name] = randomBytes(32).toString('base64url')
      changed = true
    }
  }
  if (changed) {
    mkdirSync(dir, { recursive: true })
    writeFileSync(file, JSON.stringify(kept, null, 2) + '\n', { mode: 0o600 })
    chmodSync(file, 0o600)
  }
  return kept as Record<typeof SECRET_NAMES[number], string>
}
