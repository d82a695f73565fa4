import { hash, randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import rateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import { Type } from '@sinclair/typebox'
import { socketTimeouts } from '../../src/app.ts'
import { loadConfig } from '../../src/config.ts'

// The contract's floor: what every answer of GET /public/org and POST /public/verify must do by the
// contract, done as plainly as Fastify allows. Every other route of this process is bare-server.ts's.
// Done: the app's timeouts and UUID request ids; X-Request-Id, nosniff and no-store on every answer;
// the key and org found from the key's SHA-256 in memory; the request counted by @fastify/rate-limit
// (createRateLimit, a store in memory: the stack's limiter, as the app uses it) and the three
// X-RateLimit-* headers; the token's SHA-256 looked up among verified tokens, the session's principal
// in memory; the envelope; usage counted per key and hour. Not done, because the app keeps them beyond
// the contract's letter: metrics, cache epochs, the guessing limit, the %00 check, scopes, allowlists.

export const FLOOR_KEY = `pk_live_${'a'.repeat(64)}`
export const FLOOR_SLUG = 'bench-org'
export const FLOOR_TOKEN = 'e'.repeat(300)

const ORG = { id: 'org_01JBZK8Q6C4Y0W7R3T5V9X2M4N', name: 'Bench Org', slug: FLOOR_SLUG, plan: 'free', status: 'active', appUrl: null, createdAt: '2026-12-01T02:00:00.000Z', rateLimit: null }
const KEY = { id: 'key_01JBZK8Q6C4Y0W7R3T5V9X2M4N', orgId: ORG.id }
const SESSION = { sub: 'usr_01JBZK8Q6C4Y0W7R3T5V9X2M4N', sid: 'ses_01JBZK8Q6C4Y0W7R3T5V9X2M4N', org: ORG.id, exp: 4_000_000_000 }
const PRINCIPAL = {
  user: { id: SESSION.sub, name: 'Bench User', email: 'bench@example.test', role: 'user', isEmailVerified: true },
  membership: { role: 'org_admin', status: 'active', joinedAt: '2026-12-01T02:00:00.000Z' }
}

const User = Type.Object({ id: Type.String(), name: Type.String(), email: Type.String(), role: Type.String(), isEmailVerified: Type.Boolean() })
const Membership = Type.Object({ role: Type.String(), status: Type.String(), joinedAt: Type.String() })
const OrgSummary = Type.Object({ id: Type.String(), name: Type.String(), slug: Type.String(), plan: Type.String(), status: Type.String() })
const Org = Type.Object({ ...OrgSummary.properties, appUrl: Type.Union([Type.String(), Type.Null()]), createdAt: Type.String(), rateLimit: Type.Null() })
const VerifyAnswer = Type.Object({ status: Type.String(), data: Type.Object({ valid: Type.Boolean(), user: Type.Optional(User), membership: Type.Optional(Membership), org: Type.Optional(OrgSummary) }) })

interface Window { current: number, endsAt: number }
type Floored = FastifyRequest & { floorKey?: string, floorOrg?: typeof ORG, floorKeyId?: string }

/** The floor's routes on `app`, under /api/v1/public like the app's. */
export async function addContractFloor (app: FastifyInstance): Promise<void> {
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('cache-control', 'no-store')
    done(null, payload)
  })
  const windows = new Map<string, Window>()
  class MemoryStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number): void {
      const now = Date.now()
      let window = windows.get(key)
      if (window === undefined || window.endsAt <= now) {
        window = { current: 0, endsAt: now + timeWindow }
        windows.set(key, window)
      }
      window.current++
      callback(null, { current: window.current, ttl: window.endsAt - now })
    }

    child (): FastifyRateLimitStore { return this }
  }
  await app.register(rateLimit, { global: false, store: MemoryStore, keyGenerator: request => (request as Floored).floorKey ?? '' })
  const limiter = app.createRateLimit({ max: 999_999_999, timeWindow: 900_000 })
  const keys = new Map([[hash('sha256', FLOOR_KEY, 'base64'), KEY]])
  const orgs = new Map([[FLOOR_SLUG, ORG]])
  const verifiedTokens = new Map([[hash('sha256', FLOOR_TOKEN, 'base64'), SESSION]])
  const principals = new Map([[`${ORG.id}:${SESSION.sid}:${SESSION.sub}`, PRINCIPAL]])
  const usage = new Map<string, number[]>()

  await app.register(async scope => {
    scope.addHook('onRequest', async (request: Floored, reply) => {
      const presented = request.headers['x-api-key']
      const slug = request.headers['x-org-slug']
      const key = typeof presented === 'string' ? keys.get(hash('sha256', presented, 'base64')) : undefined
      const org = typeof slug === 'string' ? orgs.get(slug) : undefined
      if (key === undefined || org === undefined || key.orgId !== org.id) {
        return await reply.code(401).send({ status: 'error', message: 'Invalid API key', code: 'invalid_api_key' })
      }
      request.floorOrg = org
      request.floorKeyId = key.id
      request.floorKey = `${org.id}/${key.id}`
      const limit = await limiter(request)
      if (limit.isAllowed) return
      reply.header('x-ratelimit-limit', limit.max)
      reply.header('x-ratelimit-remaining', limit.remaining)
      reply.header('x-ratelimit-reset', Math.round((Date.now() + limit.ttl) / 1000))
    })
    scope.addHook('onResponse', (request: Floored, reply, done) => {
      const now = Date.now()
      const id = `${now - now % 3_600_000}|${request.floorKeyId ?? ''}`
      let counts = usage.get(id)
      if (counts === undefined) {
        counts = [0, 0]
        usage.set(id, counts)
      }
      counts[0]++
      if (reply.statusCode < 300) counts[1]++
      done()
    })
    scope.get('/org', { schema: { response: { 200: Type.Object({ status: Type.String(), data: Type.Object({ org: Org }) }) } } },
      async (request: Floored) => ({ status: 'success', data: { org: request.floorOrg } }))
    scope.post('/verify', { schema: { body: Type.Object({ token: Type.String() }), response: { 200: VerifyAnswer } } }, async (request: Floored) => {
      const org = request.floorOrg ?? ORG
      const { token } = request.body as { token: string }
      const claims = verifiedTokens.get(hash('sha256', token, 'base64'))
      const principal = claims !== undefined && claims.exp * 1000 > Date.now() && claims.org === org.id
        ? principals.get(`${org.id}:${claims.sid}:${claims.sub}`)
        : undefined
      if (principal === undefined) return { status: 'success', data: { valid: false } }
      return { status: 'success', data: { valid: true, ...principal, org: { id: org.id, name: org.name, slug: org.slug, plan: org.plan, status: org.status } } }
    })
  }, { prefix: '/api/v1/public' })
}

/** Fastify as the app configures it where that costs per request: its socket timeouts (the defaults) and UUID request ids. */
export function floorFastify (logLevel: string): FastifyInstance {
  return Fastify({ logger: { level: logLevel }, genReqId: () => randomUUID(), ...socketTimeouts(loadConfig({}).config) })
}
