import t from 'tap'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { ADMIN_TOKEN, adminHeaders, addMember, build, createOrgWithMember, createUser, sessionToken, uniqueSlug } from '../helper.ts'
import { operationsOf, requestFor, type FuzzRequest, type Pools } from './support/fuzz.ts'

// Property: whatever a client sends to whichever route, the answer is never a 5xx, every
// /api/v1 answer is the envelope, and the process keeps serving. Routes come from the
// OpenAPI document, so new routes are fuzzed as soon as they exist.
// `npm test` runs a short pass; `npm run fuzz` a long one (FUZZ_RUNS, FUZZ_SEED).
const RUNS = Number(process.env.FUZZ_RUNS ?? 200)
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED)
const SNAKE = /^[a-z][a-z0-9_]*$/

async function pools (app: FastifyInstance): Promise<{ pools: Pools, refresh: () => Promise<void> }> {
  const admin = await createOrgWithMember(app, 'org_admin')
  const member = await createUser(app)
  await addMember(app, admin.org.slug, member.id, 'member')
  const victimSlug = uniqueSlug('fuzz-victim')
  await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: adminHeaders, payload: { slug: victimSlug, name: 'Fuzz victim' } })
  const other = await createOrgWithMember(app, 'org_admin')
  const p: Pools = {
    adminToken: ADMIN_TOKEN,
    orgSlugs: [admin.org.slug],
    adminSlugs: [victimSlug],
    accessTokens: [],
    apiKeys: [],
    ids: { userId: [admin.user.id, member.id, other.user.id], keyId: [] }
  }
  // Fuzzed logouts, member removals and key revocations use credentials up: make fresh ones.
  const refresh = async (): Promise<void> => {
    const token = async (userId: string, role: 'org_admin' | 'member'): Promise<string> =>
      (await sessionToken(app, { userId, orgId: admin.org.id, slug: admin.org.slug, role })).token
    p.accessTokens = [await token(admin.user.id, 'org_admin'), await token(member.id, 'member'),
      (await sessionToken(app, { userId: other.user.id, orgId: other.org.id, slug: other.org.slug, role: 'org_admin' })).token]
    const created = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: { authorization: `Bearer ${p.accessTokens[0]}`, 'x-org-slug': admin.org.slug }, payload: { name: 'fuzz' } })
    if (created.statusCode === 201) {
      const { key, apiKey } = created.json().data
      p.apiKeys = [key]
      p.ids.keyId = [apiKey.id]
    }
  }
  await refresh()
  return { pools: p, refresh }
}

function clip (text: string): string {
  return text.length <= 200 ? text : `${text.slice(0, 120)}…(${text.length} chars)…${text.slice(-40)}`
}

function problemWith (request: FuzzRequest, res: { statusCode: number, body: string, headers: Record<string, unknown> }): string | null {
  if (res.statusCode >= 500) return `answered ${res.statusCode}: ${res.body.slice(0, 300)}`
  if (!request.url.startsWith('/api/v1')) return null
  let body: any
  try {
    body = JSON.parse(res.body)
  } catch {
    return `answered ${res.statusCode} with a body that is not JSON: ${res.body.slice(0, 200)}`
  }
  if (res.statusCode >= 400) {
    if (body?.status !== 'error' || typeof body.message !== 'string' || typeof body.code !== 'string' || !SNAKE.test(body.code)) {
      return `answered ${res.statusCode} without the error envelope: ${res.body.slice(0, 300)}`
    }
  } else if (body?.status !== 'success' || typeof body.data !== 'object' || body.data === null) {
    return `answered ${res.statusCode} without the success envelope: ${res.body.slice(0, 300)}`
  }
  return null
}

t.test('fuzzed requests to every documented route: never a 5xx, always the envelope, the process stays up', async t => {
  const app = await build(t)
  const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const operations = operationsOf(document)
  t.ok(operations.length >= 7, `${operations.length} documented operations`)
  const { pools: p, refresh } = await pools(app)

  const tried = new Map<string, number>()
  const statuses = new Map<number, number>()
  let sent = 0
  const property = fc.asyncProperty(
    fc.constantFrom(...operations).chain(operation => requestFor(operation, p).map(request => ({
      operation,
      request,
      // Counterexamples can be 16 KiB bodies: report them shortened.
      [fc.toStringMethod]: () => JSON.stringify({ ...request, url: clip(request.url), payload: request.payload === undefined ? undefined : clip(request.payload), headers: Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, clip(v)])) })
    }))),
    async ({ operation, request }) => {
      if (++sent % 50 === 0) await refresh()
      const res = await app.inject({ method: request.method as 'GET', url: request.url, headers: request.headers, payload: request.payload })
      const name = `${operation.method} ${operation.path}`
      tried.set(name, (tried.get(name) ?? 0) + 1)
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      const problem = problemWith(request, res)
      if (problem !== null) throw new Error(`${request.method} ${request.url.slice(0, 200)} ${problem}`)
    }
  )
  // Enough runs that every operation is drawn (missing one of 44 in 200 runs happened ~40% of the time).
  const runs = Math.max(RUNS, operations.length * 10)
  await fc.assert(property, { numRuns: runs, seed: SEED, endOnFailure: runs > 1000 })

  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'still serving')
  t.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 200, 'stores still answer')
  t.equal(tried.size, operations.length, 'every operation was tried')
  t.comment(`fuzz: ${sent} requests over ${operations.length} operations; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`)
})
