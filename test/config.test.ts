import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, ENVIRONMENT, loadConfig } from '../src/config.ts'

const strong = 'x'.repeat(32)

t.test('defaults: port 3000, embedded database in ./data, 300 per 15 minutes', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'))
  const { config } = loadConfig({ DATA_DIR: dir })
  t.equal(config.port, 3000)
  t.equal(config.databaseUrl, null)
  t.equal(config.rateLimitMax, 300)
  t.equal(config.rateLimitWindowMs, 900_000)
  t.equal(config.cookieSecure, true)
})

t.test('each bad value is named with what is expected', async t => {
  try {
    loadConfig({ PORT: 'abc', DATABASE_URL: 'mysql://x', RATE_LIMIT_WINDOW: 'soon', JWT_SECRET: 'short', COOKIE_SECURE: 'yes', NODE_ENV: 'test' })
    t.fail('should throw')
  } catch (error) {
    t.ok(error instanceof ConfigError)
    const message = (error as Error).message
    t.match(message, /PORT="abc": expected a TCP port number/)
    t.match(message, /DATABASE_URL="mysql:\/\/x": expected a postgres:\/\//)
    t.match(message, /RATE_LIMIT_WINDOW="soon"/)
    t.match(message, /JWT_SECRET="<5 characters>": expected a secret of at least 32 characters/)
    t.notMatch(message, /short/, 'a secret value is never printed')
    t.match(message, /COOKIE_SECURE="yes": expected true or false/)
  }
})

t.test('production requires JWT_SECRET and API_KEY_PEPPER, and an unset ADMIN_TOKEN disables the admin API', async t => {
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), /JWT_SECRET is required in production[\s\S]*API_KEY_PEPPER is required in production/)
  const { config, generatedSecrets } = loadConfig({ NODE_ENV: 'production', JWT_SECRET: strong, API_KEY_PEPPER: strong, DATA_DIR: mkdtempSync(join(tmpdir(), 'tk-config-')) })
  t.equal(config.adminToken, null)
  t.same(generatedSecrets, [])
})

t.test('unset secrets outside production are generated once and kept in DATA_DIR/secrets.json (0600)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'))
  const first = loadConfig({ DATA_DIR: dir })
  t.same(first.generatedSecrets, ['JWT_SECRET', 'API_KEY_PEPPER', 'ADMIN_TOKEN'])
  const second = loadConfig({ DATA_DIR: dir })
  t.equal(second.config.apiKeyPepper, first.config.apiKeyPepper, 'the pepper survives a restart')
  t.equal(second.config.jwtSecret, first.config.jwtSecret)
  t.equal(second.config.adminToken, first.config.adminToken)
  t.equal(statSync(join(dir, 'secrets.json')).mode & 0o777, 0o600)
  t.equal(JSON.parse(readFileSync(join(dir, 'secrets.json'), 'utf8')).API_KEY_PEPPER, first.config.apiKeyPepper)
  const explicit = loadConfig({ DATA_DIR: dir, ADMIN_TOKEN: 'a-token-of-16-chars-or-more' })
  t.equal(explicit.config.adminToken, 'a-token-of-16-chars-or-more')
  t.notOk(explicit.generatedSecrets.includes('ADMIN_TOKEN'))
})

t.test('durations and proxies', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'))
  t.equal(loadConfig({ DATA_DIR: dir, RATE_LIMIT_WINDOW: '1m' }).config.rateLimitWindowMs, 60_000)
  t.equal(loadConfig({ DATA_DIR: dir, RATE_LIMIT_WINDOW: '5000' }).config.rateLimitWindowMs, 5000)
  t.equal(loadConfig({ DATA_DIR: dir, TRUST_PROXY: '2' }).config.trustProxy, 2)
  t.equal(loadConfig({ DATA_DIR: dir, TRUST_PROXY: 'true' }).config.trustProxy, true)
})

t.test('timeouts: defaults as before, durations accepted, the header timeout at most the request timeout', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'))
  const defaults = loadConfig({ DATA_DIR: dir }).config
  t.match(defaults, { requestTimeoutMs: 30_000, headersTimeoutMs: 30_000, connectionTimeoutMs: 60_000, keepAliveTimeoutMs: 72_000 })
  const set = loadConfig({ DATA_DIR: dir, REQUEST_TIMEOUT: '2s', HEADERS_TIMEOUT: '1000', CONNECTION_TIMEOUT: '5s', KEEP_ALIVE_TIMEOUT: '1m' }).config
  t.match(set, { requestTimeoutMs: 2000, headersTimeoutMs: 1000, connectionTimeoutMs: 5000, keepAliveTimeoutMs: 60_000 })
  t.equal(loadConfig({ DATA_DIR: dir, REQUEST_TIMEOUT: '5s' }).config.headersTimeoutMs, 5000, 'the header timeout follows the request timeout')
  t.throws(() => loadConfig({ DATA_DIR: dir, REQUEST_TIMEOUT: '1s', HEADERS_TIMEOUT: '2s' }), /HEADERS_TIMEOUT="2s": expected at most REQUEST_TIMEOUT \(1000 ms\)/)
  t.throws(() => loadConfig({ DATA_DIR: dir, REQUEST_TIMEOUT: 'soon' }), /REQUEST_TIMEOUT="soon": expected milliseconds/)
  t.throws(() => loadConfig({ DATA_DIR: dir, KEEP_ALIVE_TIMEOUT: '100 days' }), /KEEP_ALIVE_TIMEOUT="100 days"/)
})

t.test('production: an empty JWT_SECRET or API_KEY_PEPPER stops start-up naming it, like an unset one', async t => {
  const problems = (environment: Record<string, string>): string[] => {
    try {
      loadConfig({ NODE_ENV: 'production', DATA_DIR: 'memory://', ...environment })
    } catch (error) {
      if (error instanceof ConfigError) return error.problems
      throw error
    }
    return []
  }
  t.same(problems({ JWT_SECRET: '', API_KEY_PEPPER: strong }), ['JWT_SECRET is required in production and is empty: expected a secret of at least 32 characters'])
  t.same(problems({ JWT_SECRET: strong, API_KEY_PEPPER: '' }), ['API_KEY_PEPPER is required in production and is empty: expected a secret of at least 32 characters'])
  t.same(problems({ API_KEY_PEPPER: strong }), ['JWT_SECRET is required in production and is unset: expected a secret of at least 32 characters'])
  t.same(problems({ JWT_SECRET: strong, API_KEY_PEPPER: 'short' }), ['API_KEY_PEPPER="<5 characters>": expected a secret of at least 32 characters'])
  t.same(problems({ JWT_SECRET: strong, API_KEY_PEPPER: strong, ADMIN_TOKEN: '' }), [], 'an empty ADMIN_TOKEN is unset: the admin API is off')
})

t.test('a bad value is told the bound it broke', async t => {
  const message = (environment: Record<string, string>): string => {
    try {
      loadConfig({ DATA_DIR: 'memory://', JWT_SECRET: strong, API_KEY_PEPPER: strong, ADMIN_TOKEN: strong, ...environment })
    } catch (error) {
      return (error as Error).message
    }
    return 'accepted'
  }
  t.match(message({ RATE_LIMIT_MAX: '1000000000' }), 'RATE_LIMIT_MAX="1000000000": expected a whole number of requests from 1 to 999999999')
  t.equal(message({ RATE_LIMIT_MAX: '999999999' }), 'accepted')
  t.match(message({ LOGIN_FAILURE_MAX: '0' }), 'from 1 to 999999999')
  t.match(message({ AUDIT_RETENTION_DAYS: '100000' }), 'AUDIT_RETENTION_DAYS="100000": expected a whole number of days from 1 to 99999')
  t.match(message({ KEEP_ALIVE_TIMEOUT: '25d' }), 'KEEP_ALIVE_TIMEOUT="25d": expected milliseconds or a number with a unit (500ms, 30s, 15m, 1h), at most 24.8 days')
  t.equal(message({ KEEP_ALIVE_TIMEOUT: '24d' }), 'accepted')
  t.match(message({ RATE_LIMIT_WINDOW: '400d' }), 'at most 365 days')
  t.match(message({ PORT: '65536' }), 'PORT="65536": expected a TCP port number, 0-65535')
  t.match(message({ REDIS_PREFIX: 'x'.repeat(65) }), '1 to 64 letters')
  t.match(message({ MAIL_FROM: 'x'.repeat(321) }), 'an address of 3 to 320 characters')
  t.match(message({ WEBHOOK_RETRY_SCHEDULE: Array(21).fill('1s').join(',') }), '1 to 20 comma-separated delays')
  t.match(message({ MAIL_RETRY_SCHEDULE: '0,soon' }), 'MAIL_RETRY_SCHEDULE="0,soon": expected 1 to 20 comma-separated delays')
  t.same(loadConfig({ DATA_DIR: 'memory://', JWT_SECRET: strong, API_KEY_PEPPER: strong, ADMIN_TOKEN: strong, MAIL_RETRY_SCHEDULE: '0, 30s,2h' }).config.mailRetryScheduleMs, [0, 30_000, 7_200_000])
})

t.test('an error never shows the password of a URL', async t => {
  t.throws(() => loadConfig({ DATA_DIR: 'memory://', DATABASE_URL: 'mysql://tenantkey:hunter2-secret@db:3306/x' }), { message: /DATABASE_URL="mysql:\/\/tenantkey:\*\*\*@db:3306\/x"/ })
  t.throws(() => loadConfig({ DATA_DIR: 'memory://', SMTP_URL: 'http://mailer:hunter2-secret@mail' }), { message: /^(?![\s\S]*hunter2)/ })
})

t.test('a generated secret is new only on the start that generates it', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'))
  const first = loadConfig({ DATA_DIR: dir })
  t.same(first.newSecrets, ['JWT_SECRET', 'API_KEY_PEPPER', 'ADMIN_TOKEN'], 'the first start generates them')
  t.equal(first.secretsFile, join(dir, 'secrets.json'))
  const second = loadConfig({ DATA_DIR: dir })
  t.same(second.newSecrets, [], 'a later start only reads them')
  t.same(second.generatedSecrets, ['JWT_SECRET', 'API_KEY_PEPPER', 'ADMIN_TOKEN'], 'and still says they are generated ones')
  t.equal(second.config.adminToken, first.config.adminToken)
})

t.test('DATA_DIR is 0700 and everything in it private, checked on every start; secrets.json is 0600 again after a chmod', async t => {
  const parent = mkdtempSync(join(tmpdir(), 'tk-config-'))
  const dir = join(parent, 'data')
  const first = loadConfig({ DATA_DIR: dir })
  t.equal(statSync(dir).mode & 0o777, 0o700, 'created 0700')
  t.equal(statSync(join(dir, 'secrets.json')).mode & 0o777, 0o600)
  t.same(first.warnings, [])
  // What an older version, a copy or a restore may leave behind.
  chmodSync(dir, 0o755)
  chmodSync(join(dir, 'secrets.json'), 0o644)
  mkdirSync(join(dir, 'pg_wal'), { mode: 0o755 })
  chmodSync(join(dir, 'pg_wal'), 0o755)
  writeFileSync(join(dir, 'pg_wal', '000000010000000000000001'), 'wal', { mode: 0o644 })
  chmodSync(join(dir, 'pg_wal', '000000010000000000000001'), 0o644)
  const second = loadConfig({ DATA_DIR: dir })
  for (const path of [dir, join(dir, 'pg_wal')]) t.equal(statSync(path).mode & 0o777, 0o700, `${path} is 0700 again`)
  for (const path of [join(dir, 'secrets.json'), join(dir, 'pg_wal', '000000010000000000000001')]) t.equal(statSync(path).mode & 0o777, 0o600, `${path} is 0600 again`)
  t.equal(second.warnings.length, 4, 'each is reported')
  t.match(second.warnings.join('\n'), `${join(dir, 'secrets.json')} could be read by other users (mode 0644): made private to this user`)
  // From now on this process creates files for its user only (PGlite writes 0644 otherwise).
  writeFileSync(join(dir, 'new-file'), 'x')
  t.equal(statSync(join(dir, 'new-file')).mode & 0o777, 0o600, 'umask 077')
  t.same(readdirSync(dir).sort(), ['new-file', 'pg_wal', 'secrets.json'])
})

t.test('with the embedded database on disk, DATA_DIR is made private in production too', async t => {
  const dir = join(mkdtempSync(join(tmpdir(), 'tk-config-')), 'data')
  mkdirSync(dir, { mode: 0o755 })
  chmodSync(dir, 0o755)
  const { warnings } = loadConfig({ NODE_ENV: 'production', JWT_SECRET: strong, API_KEY_PEPPER: strong, DATA_DIR: dir })
  t.equal(statSync(dir).mode & 0o777, 0o700)
  t.equal(warnings.length, 1)
})

t.test('every variable says what it expects, what it does, and its default or what unset means', async t => {
  for (const [name, docs] of Object.entries(ENVIRONMENT)) {
    t.ok(docs.description.length > 5, `${name}: what it expects`)
    t.ok(docs.meaning.length > 5, `${name}: what it does`)
    t.ok((docs.default === undefined) !== (docs.unset === undefined), `${name}: a default or what unset means, not both`)
  }
  // The defaults are values the variables accept: loading without any variable uses them all.
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'))
  const defaults = Object.fromEntries(Object.entries(ENVIRONMENT).flatMap(([name, docs]) => docs.default === undefined ? [] : [[name, docs.default]]))
  t.same(loadConfig({ ...defaults, DATA_DIR: dir }).config, loadConfig({ DATA_DIR: dir }).config)
})
