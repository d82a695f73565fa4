import t from 'tap'
import { addContractFloor, floorFastify, FLOOR_KEY, FLOOR_SLUG, FLOOR_TOKEN } from '../../bench/lib/contract-floor.ts'

// The floor is a yardstick only if it does what the contract asks of every answer: these are the
// headers and bodies the app's own tests require of GET /public/org and POST /public/verify.
t.test('the contract floor answers as the contract requires', async t => {
  const app = floorFastify('silent')
  await addContractFloor(app)
  t.teardown(() => app.close())
  const headers = { 'x-api-key': FLOOR_KEY, 'x-org-slug': FLOOR_SLUG }

  const org = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers })
  t.equal(org.statusCode, 200)
  t.equal(org.json().status, 'success')
  t.equal(org.json().data.org.slug, FLOOR_SLUG)
  t.match(org.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'a UUID request id')
  t.equal(org.headers['x-content-type-options'], 'nosniff')
  t.equal(org.headers['cache-control'], 'no-store')
  t.equal(org.headers['x-ratelimit-limit'], '999999999')
  t.equal(org.headers['x-ratelimit-remaining'], '999999998')
  t.ok(Number(org.headers['x-ratelimit-reset']) > Date.now() / 1000, 'X-RateLimit-Reset: the Unix second the window ends')

  const verify = await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers, payload: { token: FLOOR_TOKEN } })
  t.equal(verify.statusCode, 200)
  t.same(verify.json().data, {
    valid: true,
    user: { id: 'usr_01JBZK8Q6C4Y0W7R3T5V9X2M4N', name: 'Bench User', email: 'bench@example.test', role: 'user', isEmailVerified: true },
    membership: { role: 'org_admin', status: 'active', joinedAt: '2026-12-01T02:00:00.000Z' },
    org: { id: 'org_01JBZK8Q6C4Y0W7R3T5V9X2M4N', name: 'Bench Org', slug: FLOOR_SLUG, plan: 'free', status: 'active' }
  })
  t.equal(verify.headers['x-ratelimit-remaining'], '999999997', 'every request counted')
  t.same((await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers, payload: { token: 'x' } })).json().data, { valid: false })

  const unknown = await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { ...headers, 'x-api-key': `pk_live_${'b'.repeat(64)}` } })
  t.equal(unknown.statusCode, 401)
  t.equal(unknown.json().code, 'invalid_api_key')
})
