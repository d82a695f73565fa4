import t from 'tap'
import { build } from '../helper.ts'
import { getOrg, keyedOrg, limits } from '../support/rate-limit.ts'

const WINDOW_MS = 15 * 60_000

t.test('300 per window per key: Remaining counts down by one, Reset is the constant epoch second the window ends, 301 → 429', async t => {
  const app = await build(t)
  const headers = await keyedOrg(app)
  const started = Date.now()
  const first = await getOrg(app, headers)
  t.equal(first.statusCode, 200)
  const { limit, remaining, reset } = limits(first)
  t.equal(limit, 300)
  t.equal(remaining, 299)
  t.ok(Number.isInteger(reset), 'Reset is whole seconds')
  t.ok(reset * 1000 >= started + WINDOW_MS - 1000 && reset * 1000 <= Date.now() + WINDOW_MS + 1000, 'Reset is the Unix second the window ends, not seconds to wait')

  let last = remaining
  const resets = new Set<number>([reset])
  let wrongSteps = 0
  for (let i = 2; i <= 300; i++) {
    const res = await getOrg(app, headers)
    if (res.statusCode !== 200) t.fail(`request ${i}: ${res.statusCode}`)
    const now = limits(res)
    if (now.remaining !== last - 1) wrongSteps++
    last = now.remaining
    resets.add(now.reset)
  }
  t.equal(wrongSteps, 0, 'each request takes exactly one')
  t.equal(last, 0)
  t.same([...resets], [reset], 'Reset is the same on every response of the window')

  const over = await getOrg(app, headers)
  t.equal(over.statusCode, 429)
  t.equal(over.json().status, 'error')
  t.equal(over.json().code, 'rate_limited')
  t.match(over.json().message, /retry in \d+ seconds/)
  const retryAfter = Number(over.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= WINDOW_MS / 1000 + 1, `Retry-After is seconds (${retryAfter})`)
  t.same(limits(over), { limit: 300, remaining: 0, reset }, 'the 429 carries the same three headers')
  t.ok(Math.abs(Math.floor(Date.now() / 1000) + retryAfter - reset) <= 1, 'Retry-After counts down to Reset')

  const anotherKey = await keyedOrg(app)
  const fresh = await getOrg(app, anotherKey)
  t.equal(fresh.statusCode, 200, 'a second key is unaffected')
  t.equal(limits(fresh).remaining, 299)
})

t.test('every authenticated response carries the headers, a failed one none and costs no budget', async t => {
  const app = await build(t)
  const headers = await keyedOrg(app)
  const invalidBody = await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers, payload: { token: 42 } })
  t.equal(invalidBody.statusCode, 400)
  t.equal(limits(invalidBody).remaining, 299, 'a 400 after authentication counts and says so')
  const notFound = await app.inject({ method: 'GET', url: '/api/v1/public/users/usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', headers })
  t.equal(notFound.statusCode, 404)
  t.equal(limits(notFound).remaining, 298)

  const badKey = await getOrg(app, { ...headers, 'x-api-key': headers['x-api-key'].slice(0, -1) + (headers['x-api-key'].endsWith('0') ? '1' : '0') })
  t.equal(badKey.statusCode, 401)
  for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after']) t.notOk(name in badKey.headers, name)
  t.equal(limits(await getOrg(app, headers)).remaining, 297)
})

t.test('a smaller configured budget and window', async t => {
  const app = await build(t, { rateLimitMax: 3, rateLimitWindowMs: 60_000 })
  const headers = await keyedOrg(app)
  const seen = []
  for (let i = 0; i < 4; i++) seen.push(await getOrg(app, headers))
  t.same(seen.map(res => res.statusCode), [200, 200, 200, 429])
  t.same(seen.map(res => limits(res).remaining), [2, 1, 0, 0])
  t.ok(limits(seen[0]).reset * 1000 <= Date.now() + 61_000, 'the window is a minute')
  t.match(seen[3].json().message, /3 requests per 1 minute/)
})

t.test('failed API keys per client IP: 429 before any database work', async t => {
  const app = await build(t, { apiKeyFailureMax: 3 })
  const headers = await keyedOrg(app)
  const attacker = '203.0.113.10'
  const guess = (key: string, remoteAddress = attacker) => app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { ...headers, 'x-api-key': key }, remoteAddress })
  for (let i = 0; i < 3; i++) {
    const res = await guess(`pk_live_${'0'.repeat(63)}${i}`)
    t.equal(res.statusCode, 401)
  }
  const before = app.database.stats.queries
  const blocked = await guess(headers['x-api-key'])
  t.equal(blocked.statusCode, 429, 'even the right key, once the IP is blocked')
  t.equal(blocked.json().code, 'rate_limited')
  t.match(blocked.json().message, /failed API key attempts/)
  const retryAfter = Number(blocked.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter} s`)
  t.equal(app.database.stats.queries, before, 'no database query for a blocked IP')
  t.equal((await guess(headers['x-api-key'], '198.51.100.7')).statusCode, 200, 'another IP is unaffected')
})
