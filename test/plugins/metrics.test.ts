import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, adminHeaders, createApiKey, createOrgWithMember, sessionToken, uniqueSlug, DATABASE_URL, REDIS_URL } from '../helper.ts'
import { API_KEY_OUTCOMES } from '../../plugins/metrics.ts'
import { generateApiKey } from '../../src/api-key-format.ts'

const METRICS_TOKEN = 'metrics-token-0123456789abcdef'

async function scrape (app: FastifyInstance, headers: Record<string, string> = {}): Promise<string> {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers })
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}: ${res.body}`)
  return res.body
}

/** The value of one sample line, e.g. sample(text, 'x_total{outcome="ok"}'); undefined when absent. */
function sample (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('/metrics answers the Prometheus text format', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(res.body, /# TYPE http_request_duration_seconds histogram/)
  t.match(res.body, /# TYPE tenantkey_api_key_verifications_total counter/)
  t.match(res.body, /# TYPE process_cpu_user_seconds_total counter/, 'process metrics are included')
})

t.test('request durations are labelled by route pattern and status, never by raw URL', async t => {
  const app = await build(t)
  const slug = uniqueSlug()
  await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug, name: 'Metrics Org' } })
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { plan: 'pro' } })
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${slug}`, headers: adminHeaders, payload: { plan: 'pro' } })
  await app.inject({ method: 'PATCH', url: '/api/v1/admin/orgs/no-such-org', headers: adminHeaders, payload: { plan: 'pro' } })
  await app.inject({ method: 'GET', url: `/scanner/${slug}/wp-login.php` })

  const text = await scrape(app)
  t.equal(sample(text, 'http_request_duration_seconds_count{method="PATCH",route="/api/v1/admin/orgs/:slug",status_code="200"}'), 2)
  t.equal(sample(text, 'http_request_duration_seconds_count{method="PATCH",route="/api/v1/admin/orgs/:slug",status_code="404"}'), 1)
  t.equal(sample(text, 'http_request_duration_seconds_count{method="POST",route="/api/v1/admin/orgs",status_code="201"}'), 1)
  t.equal(sample(text, 'http_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}'), 1)
  t.notMatch(text, slug, 'no raw URL (nor the slug in it) becomes a label')
  t.ok((sample(text, 'http_request_duration_seconds_bucket{le="+Inf",method="PATCH",route="/api/v1/admin/orgs/:slug",status_code="200"}') ?? 0) === 2)
})

t.test('API-key outcomes and rate-limit rejections are counted through app.metrics', async t => {
  const app = await build(t)
  const before = await scrape(app)
  for (const outcome of ['ok', 'invalid', 'revoked', 'expired', 'rate_limited']) {
    t.equal(sample(before, `tenantkey_api_key_verifications_total{outcome="${outcome}"}`), 0, `${outcome} starts at 0`)
  }

  app.metrics.apiKeyOutcome('ok')
  app.metrics.apiKeyOutcome('ok')
  app.metrics.apiKeyOutcome('revoked')
  app.metrics.rateLimited('api_key')

  const text = await scrape(app)
  t.equal(sample(text, 'tenantkey_api_key_verifications_total{outcome="ok"}'), 2)
  t.equal(sample(text, 'tenantkey_api_key_verifications_total{outcome="revoked"}'), 1)
  t.equal(sample(text, 'tenantkey_api_key_verifications_total{outcome="invalid"}'), 0)
  t.equal(sample(text, 'tenantkey_rate_limit_rejections_total{limiter="api_key"}'), 1)
})

t.test('the api_keys and orgs caches count the lookups of real /public requests', async t => {
  const app = await build(t)
  const fixture = await createOrgWithMember(app)
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const { key, id } = await createApiKey(app, fixture)
  const publicOrg = async (): Promise<number> => (await app.inject({
    method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': fixture.org.slug, 'x-api-key': key }
  })).statusCode
  const counts = async (cache: string): Promise<{ hit: number, miss: number, ratio: number | undefined }> => {
    const text = await scrape(app)
    return {
      hit: sample(text, `tenantkey_cache_requests_total{cache="${cache}",result="hit"}`) ?? 0,
      miss: sample(text, `tenantkey_cache_requests_total{cache="${cache}",result="miss"}`) ?? 0,
      ratio: sample(text, `tenantkey_cache_hit_ratio{cache="${cache}"}`)
    }
  }

  t.equal(await publicOrg(), 200)
  for (const cache of ['api_keys', 'orgs']) t.same(await counts(cache), { hit: 0, miss: 1, ratio: 0 }, `${cache}: the first request misses`)
  for (let i = 0; i < 7; i++) t.equal(await publicOrg(), 200)
  // With Redis an entry loaded before the org's epoch was read is trusted only after one more read.
  const misses = REDIS_URL === null ? 1 : 2
  for (const cache of ['api_keys', 'orgs']) {
    t.same(await counts(cache), { hit: 8 - misses, miss: misses, ratio: (8 - misses) / 8 }, `${cache}: then the cache answers`)
  }

  // A revocation moves the org's epoch: the cached key and org are stale, read again (misses).
  const revoke = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${id}`, headers: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug } })
  t.equal(revoke.statusCode, 200)
  t.equal(await publicOrg(), 401)
  for (const cache of ['api_keys', 'orgs']) t.equal((await counts(cache)).miss, misses + 1, `${cache}: a stale entry is a miss`)
})

t.test('the /public guard, the per-key limit and the login throttle count each outcome as it happens', async t => {
  const app = await build(t, { rateLimitMax: 2, apiKeyFailureMax: 3, loginFailureMax: 1 })
  const fixture = await createOrgWithMember(app)
  const slug = fixture.org.slug
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug, role: 'org_admin' })
  const publicOrg = async (key: string, remoteAddress: string): Promise<number> => (await app.inject({
    method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': slug, 'x-api-key': key }, remoteAddress
  })).statusCode
  const counts = async (): Promise<Record<string, number | undefined>> => {
    const text = await scrape(app)
    const out: Record<string, number | undefined> = {}
    for (const outcome of API_KEY_OUTCOMES) out[outcome] = sample(text, `tenantkey_api_key_verifications_total{outcome="${outcome}"}`)
    for (const limiter of ['api_key', 'api_key_failures', 'login']) out[`429:${limiter}`] = sample(text, `tenantkey_rate_limit_rejections_total{limiter="${limiter}"}`) ?? 0
    return out
  }
  t.same(await counts(), { ok: 0, invalid: 0, revoked: 0, expired: 0, rate_limited: 0, '429:api_key': 0, '429:api_key_failures': 0, '429:login': 0 })

  // ok twice, then over the per-key budget of 2
  const live = await createApiKey(app, fixture, { name: 'live' })
  t.equal(await publicOrg(live.key, '10.9.0.1'), 200)
  t.equal(await publicOrg(live.key, '10.9.0.1'), 200)
  t.equal(await publicOrg(live.key, '10.9.0.1'), 429)
  // revoked after a use: the cached copy is caught by the org epoch check
  const revoked = await createApiKey(app, fixture, { name: 'revoked' })
  t.equal(await publicOrg(revoked.key, '10.9.0.2'), 200)
  const revoke = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${revoked.id}`, headers: { authorization: `Bearer ${token}`, 'x-org-slug': slug } })
  t.equal(revoke.statusCode, 200)
  t.equal(await publicOrg(revoked.key, '10.9.0.2'), 401)
  // expired before its first use: refused on the database read
  const expired = await createApiKey(app, fixture, { name: 'expired' })
  await app.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', expired.id).execute()
  t.equal(await publicOrg(expired.key, '10.9.0.3'), 401)
  // three malformed keys from one address, then that address is refused before any lookup
  for (const key of ['pk_live_nope', 'not-a-key', live.key.slice(0, -1) + (live.key.endsWith('0') ? '1' : '0')]) t.equal(await publicOrg(key, '10.9.0.4'), 401)
  t.equal(await publicOrg(generateApiKey(), '10.9.0.4'), 429)
  // one failed login is the budget (LOGIN_FAILURE_MAX=1): the next attempt is throttled
  const login = async (): Promise<number> => (await app.inject({
    method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, payload: { email: fixture.user.email, password: 'not the password' }, remoteAddress: '10.9.0.5'
  })).statusCode
  t.equal(await login(), 401)
  t.equal(await login(), 429)

  t.same(await counts(), { ok: 3, invalid: 3, revoked: 1, expired: 1, rate_limited: 2, '429:api_key': 1, '429:api_key_failures': 1, '429:login': 1 })
})

t.test('each app counts its own requests', async t => {
  const first = await build(t)
  const second = await build(t)
  first.metrics.apiKeyOutcome('invalid')
  t.equal(sample(await scrape(first), 'tenantkey_api_key_verifications_total{outcome="invalid"}'), 1)
  t.equal(sample(await scrape(second), 'tenantkey_api_key_verifications_total{outcome="invalid"}'), 0)
})

t.test('database pool gauges report the PostgreSQL pool, and are absent on the embedded database', async t => {
  const app = await build(t)
  await app.inject({ method: 'GET', url: '/api/v1/admin/orgs', headers: adminHeaders })
  const text = await scrape(app)
  if (DATABASE_URL === null) {
    t.equal(sample(text, 'tenantkey_db_pool_connections'), undefined)
  } else {
    t.ok((sample(text, 'tenantkey_db_pool_connections') ?? 0) >= 1, 'at least one connection is open after a query')
    t.ok(sample(text, 'tenantkey_db_pool_idle_connections') !== undefined)
    // Background workers share the pool: how many wait at this instant is theirs to say, but the gauge is there.
    t.ok((sample(text, 'tenantkey_db_pool_waiting_clients') ?? -1) >= 0, 'waiting clients reported')
  }
})

t.test('with METRICS_TOKEN set, /metrics needs it as a bearer token', async t => {
  const app = await build(t, { metricsToken: METRICS_TOKEN })
  for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: METRICS_TOKEN }, { authorization: `Basic ${METRICS_TOKEN}` }]) {
    const res = await app.inject({ method: 'GET', url: '/metrics', headers })
    t.equal(res.statusCode, 401, JSON.stringify(Object.keys(headers)))
    t.same(res.json(), { status: 'error', message: 'Invalid metrics token', code: 'unauthorized' })
    t.equal(res.headers['www-authenticate'], 'Bearer realm="metrics"')
  }
  const ok = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
  t.equal(ok.statusCode, 200)
  t.match(ok.body, /http_request_duration_seconds/)
})
