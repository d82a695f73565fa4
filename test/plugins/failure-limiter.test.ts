import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createApiKey, createOrgWithMember, REDIS_URL, runId } from '../helper.ts'
import { generateApiKey } from '../../src/api-key-format.ts'
import { clientKey } from '../../plugins/failure-limiter.ts'

// Login throttling is the failure limiter's first user: these tests drive it through
// POST /auth/login, in process memory, in Redis, and with Redis unreachable.

let ipCounter = 0
/** A client address of this test alone, so per-IP budgets never leak between tests. */
function freshIp (): string {
  ipCounter++
  return `10.9.${Math.floor(ipCounter / 250)}.${ipCounter % 250 + 1}`
}

let ipv6Counter = 0
/** An IPv6 /64 of this test alone (2001:db8::/32 is for documentation). */
function freshIpv6Network (): string {
  ipv6Counter++
  return `2001:db8:${(process.pid % 0xffff).toString(16)}:${ipv6Counter.toString(16)}`
}

function statusCounts (responses: Array<{ statusCode: number }>): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const { statusCode } of responses) counts[statusCode] = (counts[statusCode] ?? 0) + 1
  return counts
}

function login (app: FastifyInstance, slug: string, email: string, password: string, remoteAddress: string) {
  return app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, payload: { email, password }, remoteAddress })
}

function assertThrottled (t: Test, res: Awaited<ReturnType<typeof login>>, windowSeconds: number): void {
  t.equal(res.statusCode, 429)
  t.match(res.json(), { status: 'error', code: 'rate_limited', message: /Too many failed login attempts/ })
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds, `Retry-After ${res.headers['retry-after']} within the window`)
}

function throttlingSuite (mode: string, redisUrl: string | null): void {
  t.test(mode, async t => {
    // One user for the whole suite (password hashing is the slow part); every subtest
    // uses client addresses of its own, so their budgets stay apart.
    const app = await build(t, { redisUrl, loginFailureMax: 2 })
    const { org, user } = await createOrgWithMember(app, 'member')

    t.test('failed logins per email+IP are limited, then 429 even for the right password', async t => {
      const ip = freshIp()
      for (let i = 0; i < 2; i++) {
        const res = await login(app, org.slug, user.email, 'wrong password!', ip)
        t.equal(res.statusCode, 401, `failure ${i + 1} is a plain 401`)
      }
      assertThrottled(t, await login(app, org.slug, user.email, user.password, ip), 900)
      assertThrottled(t, await login(app, org.slug, user.email.toUpperCase(), 'wrong password!', ip), 900)

      // The budget is per email+IP: the same email from another client still logs in.
      t.equal((await login(app, org.slug, user.email, user.password, freshIp())).statusCode, 200)
    })

    t.test('a success forgets the email+IP failures', async t => {
      const ip = freshIp()
      t.equal((await login(app, org.slug, user.email, 'wrong password!', ip)).statusCode, 401)
      t.equal((await login(app, org.slug, user.email, user.password, ip)).statusCode, 200)
      t.equal((await login(app, org.slug, user.email, 'wrong password!', ip)).statusCode, 401)
      t.equal((await login(app, org.slug, user.email, user.password, ip)).statusCode, 200, 'one failure since the success: not blocked')
    })

    t.test('30 concurrent wrong passwords for one email+IP: at most LOGIN_FAILURE_MAX answered 401, the rest 429', async t => {
      const strict = await build(t, { redisUrl, loginFailureMax: 3 })
      const ip = freshIp()
      const responses = await Promise.all(Array.from({ length: 30 }, () => login(strict, org.slug, user.email, 'wrong password!', ip)))
      const counts = statusCounts(responses)
      t.ok((counts[401] ?? 0) >= 1 && (counts[401] ?? 0) <= 3, `${counts[401] ?? 0} answered 401 (at most 3)`)
      t.equal((counts[401] ?? 0) + (counts[429] ?? 0), 30, `the rest 429: ${JSON.stringify(counts)}`)
      assertThrottled(t, await login(strict, org.slug, user.email, user.password, ip), 900)
    })

    t.test('30 concurrent wrong logins over many emails from one IP: at most the per-IP budget answered 401', async t => {
      // per IP: 5 × LOGIN_FAILURE_MAX = 5; each email is tried once, so only the per-IP budget can refuse
      const strict = await build(t, { redisUrl, loginFailureMax: 1 })
      const ip = freshIp()
      const responses = await Promise.all(Array.from({ length: 30 }, (_, i) => login(strict, org.slug, `spray-${i}-${runId}@example.test`, 'wrong password!', ip)))
      const counts = statusCounts(responses)
      t.ok((counts[401] ?? 0) >= 1 && (counts[401] ?? 0) <= 5, `${counts[401] ?? 0} answered 401 (at most 5)`)
      t.equal((counts[401] ?? 0) + (counts[429] ?? 0), 30, `the rest 429: ${JSON.stringify(counts)}`)
    })

    t.test('IPv6 clients are counted per /64: other addresses of the network share its budget', async t => {
      const network = freshIpv6Network()
      t.equal((await login(app, org.slug, user.email, 'wrong password!', `${network}::1`)).statusCode, 401)
      t.equal((await login(app, org.slug, user.email, 'wrong password!', `${network}:0:0:0:2`)).statusCode, 401)
      assertThrottled(t, await login(app, org.slug, user.email, user.password, `${network}:abcd:1234:5678:9abc`), 900)
      t.equal((await login(app, org.slug, user.email, user.password, `${freshIpv6Network()}::1`)).statusCode, 200, 'another /64 is another client')
    })

    t.test('API keys: 30 concurrent unknown keys from one IP: at most API_KEY_FAILURE_MAX answered 401, the rest 429', async t => {
      const strict = await build(t, { redisUrl, apiKeyFailureMax: 5 })
      const ip = freshIp()
      const guess = (key: string, remoteAddress: string) => strict.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': org.slug, 'x-api-key': key }, remoteAddress })
      // Well-formed keys with a valid checksum: each one needs a database lookup.
      const counts = statusCounts(await Promise.all(Array.from({ length: 30 }, () => guess(generateApiKey(), ip))))
      t.ok((counts[401] ?? 0) >= 1 && (counts[401] ?? 0) <= 5, `${counts[401] ?? 0} answered 401 (at most 5)`)
      t.equal((counts[401] ?? 0) + (counts[429] ?? 0), 30, `the rest 429: ${JSON.stringify(counts)}`)

      const network = freshIpv6Network()
      const v6 = statusCounts(await Promise.all(Array.from({ length: 12 }, (_, i) => guess(generateApiKey(), `${network}::${(i + 1).toString(16)}`))))
      t.ok((v6[401] ?? 0) <= 5 && (v6[429] ?? 0) >= 7, `IPv6: one /64, one budget: ${JSON.stringify(v6)}`)
    })

    t.test('API keys: a valid key looked up is not a failure (its reserved attempt is released)', async t => {
      const admin = await createOrgWithMember(app, 'org_admin')
      const { key } = await createApiKey(app, admin)
      const reader = await build(t, { redisUrl, apiKeyFailureMax: 2 }) // has cached nothing yet
      const ip = freshIp()
      const call = (apiKey: string) => reader.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': admin.org.slug, 'x-api-key': apiKey }, remoteAddress: ip })
      t.equal((await call(key)).statusCode, 200, 'the valid key, looked up in the database')
      t.equal((await call(generateApiKey())).statusCode, 401, 'first failure')
      t.equal((await call(generateApiKey())).statusCode, 401, 'second failure: the valid lookup did not count')
      t.equal((await call(generateApiKey())).statusCode, 429, 'then blocked')
    })

    t.test('failures over many emails from one IP are limited per IP', async t => {
      // per IP: 5 × LOGIN_FAILURE_MAX failures per window
      const strict = await build(t, { redisUrl, loginFailureMax: 1 })
      const ip = freshIp()
      for (let i = 0; i < 5; i++) {
        const res = await login(strict, org.slug, `nobody-${i}-${runId}@example.test`, 'wrong password!', ip)
        t.equal(res.statusCode, 401)
      }
      assertThrottled(t, await login(strict, org.slug, user.email, user.password, ip), 900)
      t.equal((await login(strict, org.slug, user.email, user.password, freshIp())).statusCode, 200)
    })
  })
}

throttlingSuite('in process memory', null)

if (REDIS_URL !== null) {
  throttlingSuite('in Redis', REDIS_URL)

  t.test('in Redis: every instance shares one failure budget, keyed without the email in clear', async t => {
    const first = await build(t, { redisUrl: REDIS_URL, loginFailureMax: 2 })
    const second = await build(t, { redisUrl: REDIS_URL, loginFailureMax: 2 })
    const { org, user } = await createOrgWithMember(first, 'member')
    const ip = freshIp()
    t.equal((await login(first, org.slug, user.email, 'wrong password!', ip)).statusCode, 401)
    t.equal((await login(second, org.slug, user.email, 'wrong password!', ip)).statusCode, 401)
    assertThrottled(t, await login(first, org.slug, user.email, user.password, ip), 900)
    assertThrottled(t, await login(second, org.slug, user.email, user.password, ip), 900)

    const keys = await first.redis!.keys(`tk-test-${runId}:failures:*`)
    t.ok(keys.length >= 2, 'counters live in Redis under the configured prefix')
    t.notOk(keys.some(key => key.includes(user.email) || key.includes('@')), 'no email address in a Redis key')
  })
}

t.test('Redis unreachable: logins still work and are throttled in process memory, never a 500', async t => {
  const app = await build(t, { redisUrl: 'redis://127.0.0.1:1', loginFailureMax: 2 })
  const { org, user } = await createOrgWithMember(app, 'member')
  const ip = freshIp()
  for (let i = 0; i < 2; i++) t.equal((await login(app, org.slug, user.email, 'wrong password!', ip)).statusCode, 401)
  assertThrottled(t, await login(app, org.slug, user.email, user.password, ip), 900)
  t.equal((await login(app, org.slug, user.email, user.password, freshIp())).statusCode, 200)
})

t.test('clientKey: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by /64', async t => {
  t.equal(clientKey('203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(clientKey('2001:db8:1:2::9'), clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff'))
  t.not(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'))
  t.equal(clientKey('not-an-address'), 'not-an-address')
})
