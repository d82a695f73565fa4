import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, REDIS_URL, runId } from '../helper.ts'

// Login throttling is the failure limiter's first user: these tests drive it through
// POST /auth/login, in process memory, in Redis, and with Redis unreachable.

let ipCounter = 0
/** A client address of this test alone, so per-IP budgets never leak between tests. */
function freshIp (): string {
  ipCounter++
  return `10.9.${Math.floor(ipCounter / 250)}.${ipCounter % 250 + 1}`
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
