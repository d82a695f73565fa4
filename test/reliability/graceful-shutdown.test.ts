import http from 'node:http'
import t from 'tap'
import { freshDatabase, needs, withClient } from './support/stores.ts'
import { startInstance } from './support/instances.ts'
import { request } from './support/http.ts'
import { createApiKey, keyHeaders, provisionTenant } from './support/provision.ts'

interface Outcome { sentBeforeSignal: boolean, status: number | null, closing: boolean, error: string | null, path: string }

// SIGTERM while clients are busy. The server keeps answering for a moment, each answer saying
// `Connection: close`; the clients here behave as a load balancer does with an instance that
// says it is going away: they finish what they sent and send it nothing new. Then the server
// stops accepting, finishes what it has, writes the API-key last-use times it was holding,
// and exits 0. Not one request may fail or be reset on the way.
t.test('SIGTERM under load: in-flight requests complete, no connection reset, pending lastUsedAt flushed', { skip: needs('postgres') }, async t => {
  const { url } = await freshDatabase(t)
  const app = await startInstance(t, 'A', { DATABASE_URL: url, RATE_LIMIT_MAX: '1000000' })
  const tenant = await provisionTenant(app.url)
  const { key, id: keyId } = await createApiKey(app.url, tenant)
  const headers = keyHeaders(tenant, key)
  t.equal((await request(app.url, { path: '/api/v1/public/org', headers })).status, 200, 'first use (written at once)')
  const lastUsedAt = (): Promise<Date | null> => withClient(url, async client =>
    (await client.query<{ last_used_at: Date | null }>('select last_used_at from api_keys where id = $1', [keyId])).rows[0].last_used_at)
  const firstUse = await lastUsedAt()
  t.ok(firstUse !== null, 'the first use is recorded at once')

  const agent = new http.Agent({ keepAlive: true, maxSockets: 24 })
  t.teardown(() => agent.destroy())
  const outcomes: Outcome[] = []
  let signalled = false
  const state = { stopping: false }
  const one = async (path: string, init: { method?: string, headers: Record<string, string>, body?: unknown }): Promise<Outcome> => {
    const sentBeforeSignal = !signalled
    try {
      const res = await request(app.url, { path, agent, ...init })
      return { sentBeforeSignal, status: res.status, closing: res.headers.connection === 'close', error: null, path }
    } catch (error) {
      return { sentBeforeSignal, status: null, closing: false, error: (error as NodeJS.ErrnoException).code ?? String(error), path }
    }
  }
  // Readers of /public/org (fast) and logins (slow: a password hash each), so that some
  // requests are surely in the middle of their work when the signal comes.
  const worker = async (kind: 'public' | 'login'): Promise<void> => {
    while (!state.stopping) {
      const outcome = kind === 'public'
        ? await one('/api/v1/public/org', { headers })
        : await one('/api/v1/auth/login', { method: 'POST', headers: { 'x-org-slug': tenant.slug }, body: { email: tenant.admin.email, password: tenant.admin.password } })
      outcomes.push(outcome)
      if (outcome.closing || outcome.error !== null) return
    }
  }
  const workers = [...Array.from({ length: 16 }, () => worker('public')), ...Array.from({ length: 4 }, () => worker('login'))]
  while (outcomes.filter(o => o.status === 200).length < 300) await new Promise(resolve => setTimeout(resolve, 20))
  signalled = true
  const exit = app.stop('SIGTERM')
  const { code } = await exit
  state.stopping = true
  await Promise.all(workers)

  const before = outcomes.filter(o => o.sentBeforeSignal)
  const after = outcomes.filter(o => !o.sentBeforeSignal)
  t.equal(code, 0, 'the process exits 0')
  t.same(outcomes.filter(o => o.error !== null), [], 'no request was reset or refused')
  t.same(outcomes.filter(o => o.status !== 200), [], 'every request, in flight at the signal or sent during the drain, was answered 200')
  t.ok(outcomes.filter(o => o.closing).length >= workers.length, 'every client was told Connection: close before the server stopped listening')
  const finalUse = await lastUsedAt()
  t.ok(finalUse !== null && firstUse !== null && finalUse > firstUse, `the last use held in memory was written at shutdown (${firstUse?.toISOString()} → ${finalUse?.toISOString()})`)
  t.comment(`shutdown under load: ${before.length} requests sent before SIGTERM, ${after.length} during the drain; ${outcomes.filter(o => o.status === 200).length} × 200, ${outcomes.filter(o => o.error !== null).length} resets or refusals`)
})
