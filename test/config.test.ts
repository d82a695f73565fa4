import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.ts'

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
  const { config, generatedSecrets } = loadConfig({ NODE_ENV: 'production', JWT_SECRET: strong, API_KEY_PEPPER: strong })
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
