import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../src/config.ts'
import { hashApiKey, isWellFormedApiKey } from '../src/api-key-format.ts'
import { createLastUsedRecorder } from '../src/last-used-recorder.ts'
import { findApiKeyByHash, isApiKeyActive } from '../db/queries/api-keys.ts'
import { safeEqual } from '../src/secrets.ts'
import { InvalidApiKey, OrgSuspended } from '../src/errors.ts'
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
     */
    requireApiKey: (request: FastifyRequest) => Promise<void>
  }
}

async function apiKey (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const lastUsed = createLastUsedRecorder({ db: app.db, log: app.log })
  app.addHook('onClose', async () => { await lastUsed.flush() })

  app.decorateRequest('apiKey', null)

  app.decorate('requireApiKey', async function requireApiKey (request: FastifyRequest) {
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
  })
}

export default fp(apiKey, { name: 'api-key', fastify: '5.x', dependencies: ['db', 'org-slug'] })
