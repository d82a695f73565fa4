import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../src/config.ts'
import { hashApiKey, isWellFormedApiKey } from '../src/api-key-format.ts'
import { createLastUsedRecorder } from '../src/last-used-recorder.ts'
import { findApiKeyByHash, isApiKeyActive } from '../db/queries/api-keys.ts'
import { safeEqual } from '../src/secrets.ts'
import { InvalidApiKey, OrgSuspended, RateLimited } from '../src/errors.ts'
import { slugHeader } from './org-slug.ts'

export interface AuthenticatedApiKey {
  id: string
  orgId: string
  /** display prefix (`pk_live_a3`), safe to log */
  prefix: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** the key that authenticated this /public request, set by requireApiKey */
    apiKey: AuthenticatedApiKey | null
  }
  interface FastifyInstance {
    /**
     * onRequest guard for /public: X-Org-Slug and X-API-Key must name a live key of that org.
     * Every key failure is the same 401 `Invalid API key`; a suspended org is 403 once the key is valid.
     * A client IP with API_KEY_FAILURE_MAX failures in the last minute is 429 before any database work.
     */
    requireApiKey: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

async function apiKey (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const lastUsed = createLastUsedRecorder({ db: app.db, log: app.log })
  app.addHook('onClose', async () => { await lastUsed.flush() })

  app.decorateRequest('apiKey', null)

  async function authenticate (request: FastifyRequest): Promise<void> {
    slugHeader(request) // a missing X-Org-Slug is 400 whatever the key
    const presented = request.headers['x-api-key']
    // Format and checksum first: a mistyped, truncated or invented key costs no I/O.
    if (!isWellFormedApiKey(presented)) throw new InvalidApiKey()
    await app.requireOrgForApiKey(request)
    const org = request.org
    if (org === null) throw new InvalidApiKey()

    const keyHash = hashApiKey(config.apiKeyPepper, presented)
    const key = await findApiKeyByHash(app.db, keyHash)
    if (key === undefined || !safeEqual(key.key_hash, keyHash) || key.org_id !== org.id || !isApiKeyActive(key)) {
      throw new InvalidApiKey()
    }
    if (org.status !== 'active') throw new OrgSuspended()
    request.apiKey = { id: key.id, orgId: key.org_id, prefix: key.prefix }
    await lastUsed.recordUse(key.id, key.last_used_at)
  }

  app.decorate('requireApiKey', async function requireApiKey (request: FastifyRequest, reply: FastifyReply) {
    // Guessing protection: an IP that keeps presenting bad keys is stopped before any lookup.
    const verdict = await app.failureLimiter.isBlocked('apiKey', request.ip)
    if (verdict.blocked) {
      reply.header('retry-after', verdict.retryAfterSeconds)
      throw new RateLimited(`Too many failed API key attempts; try again in ${verdict.retryAfterSeconds} seconds`)
    }
    try {
      await authenticate(request)
    } catch (error) {
      if (error instanceof InvalidApiKey) await app.failureLimiter.recordFailure('apiKey', request.ip)
      throw error
    }
  })
}

export default fp(apiKey, { name: 'api-key', fastify: '5.x', dependencies: ['db', 'org-slug', 'failure-limiter'] })
