import type { BenchFixture } from './bootstrap.ts'
import type { HttpClient } from './http-client.ts'
import type { LoadRequest } from './load.ts'

export interface Target {
  /** short name for BENCH_TARGETS */
  key: string
  label: string
  /** the app request; the matching bare request is the same method, headers and body on /bare */
  request: Omit<LoadRequest, 'url'> & { path: string }
  /** null when a probe's answer is the one the benchmark means to measure, else what is wrong */
  check: (status: number, body: any) => string | null
}

export const PUBLIC_TARGETS = ['org', 'org-restricted', 'user', 'verify']
/** What exists before the /public routes do: proves the plumbing, including the query counter. */
export const PLUMBING_TARGETS = ['health', 'admin-orgs']

export function allTargets (fixture: BenchFixture, adminToken: string): Target[] {
  const keyHeaders = { 'x-api-key': fixture.apiKey, 'x-org-slug': fixture.org.slug }
  const ok = (test: (body: any) => boolean) => (status: number, body: any) =>
    status === 200 && test(body) ? null : `answered ${status} ${JSON.stringify(body).slice(0, 200)}`
  return [
    {
      key: 'org',
      label: 'GET /public/org',
      request: { method: 'GET', path: '/api/v1/public/org', headers: keyHeaders },
      check: ok(body => body?.data?.org?.id === fixture.org.id)
    },
    {
      // The same route with a key of three scopes and a 10-entry allowlist (§9): compared with 'org'.
      key: 'org-restricted',
      label: 'GET /public/org, scoped + allowlisted key',
      request: { method: 'GET', path: '/api/v1/public/org', headers: { 'x-api-key': fixture.restrictedApiKey, 'x-org-slug': fixture.org.slug } },
      check: ok(body => body?.data?.org?.id === fixture.org.id)
    },
    {
      key: 'user',
      label: 'GET /public/users/:userId',
      request: { method: 'GET', path: `/api/v1/public/users/${fixture.user.id}`, headers: keyHeaders },
      check: ok(body => body?.data?.user?.id === fixture.user.id)
    },
    {
      key: 'verify',
      label: 'POST /public/verify',
      request: { method: 'POST', path: '/api/v1/public/verify', headers: keyHeaders, body: JSON.stringify({ token: fixture.accessToken }) },
      check: ok(body => body?.data?.valid === true)
    },
    {
      key: 'health',
      label: 'GET /health',
      request: { method: 'GET', path: '/health', headers: {} },
      check: ok(body => body?.status === 'ok')
    },
    {
      key: 'admin-orgs',
      label: 'GET /admin/orgs',
      request: { method: 'GET', path: '/api/v1/admin/orgs', headers: { authorization: `Bearer ${adminToken}` } },
      check: ok(body => Array.isArray(body?.data?.orgs))
    }
  ]
}

/**
 * The targets this run measures: BENCH_TARGETS when set, else the /public routes that exist,
 * else the plumbing targets. Each one is probed once; a wrong answer stops the run.
 */
export async function selectTargets (http: HttpClient, targets: Target[], requested: string | undefined): Promise<{ selected: Target[], skipped: string[] }> {
  const wanted = requested === undefined || requested === '' ? PUBLIC_TARGETS : requested.split(',').map(s => s.trim())
  const unknown = wanted.filter(key => !targets.some(target => target.key === key))
  if (unknown.length > 0) throw new Error(`BENCH_TARGETS: unknown ${unknown.join(', ')}; known: ${targets.map(t => t.key).join(', ')}`)
  const selected: Target[] = []
  const skipped: string[] = []
  for (const key of wanted) {
    const target = targets.find(t => t.key === key) as Target
    const { method, path, headers, body } = target.request
    const response = await http({ method, url: path, headers, body: body === undefined ? undefined : JSON.parse(body) })
    if (response.status === 404 && String(response.body?.message).startsWith('Route ')) {
      skipped.push(target.label)
      continue
    }
    const problem = target.check(response.status, response.body)
    if (problem !== null) throw new Error(`probe of ${target.label} ${problem}`)
    selected.push(target)
  }
  if (selected.length === 0 && (requested === undefined || requested === '')) {
    return { selected: (await selectTargets(http, targets, PLUMBING_TARGETS.join(','))).selected, skipped }
  }
  return { selected, skipped }
}
