import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fastJson from 'fast-json-stringify'
import * as schemas from '../../schemas/public.ts'
import type { Config } from '../../src/config.ts'
import type { ApiKeyScope } from '../../src/api-key-settings.ts'
import { idPattern } from '../../src/ids.ts'
import { NotFound } from '../../src/errors.ts'
import type { Org } from '../../db/queries/orgs.ts'
import { findOrgMember } from '../../db/queries/memberships.ts'
import { findLiveSessionPrincipal, type SessionPrincipal } from '../../db/queries/sessions.ts'
import { NONE, type EpochCache } from './freshness.ts'
import { createPublicGuard, type AuthenticatedApiKey } from './guard.ts'
import { createLastUsedRecorder } from './last-used.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** the key that authenticated this /public request, set by the guard */
    apiKey: AuthenticatedApiKey | null
    /** the org epoch the guard read for this request (null: unknown, trust no cache) */
    orgEpoch: string | null
  }
  interface FastifyContextConfig {
    /** the scope an API key needs for this /public route (§9) */
    scope?: ApiKeyScope
  }
}

/** The key the guard authenticated; an error naming the route if it did not run. */
export function guardedApiKey (request: FastifyRequest): AuthenticatedApiKey {
  if (request.apiKey === null) throw new Error(`${request.method} ${request.routeOptions.url ?? request.url} reads request.apiKey without the /public guard`)
  return request.apiKey
}

function keyOrg (request: FastifyRequest): Org {
  if (request.org === null || request.apiKey === null) throw new Error('a /public route ran without the guard')
  return request.org
}

const USER_ID = new RegExp(idPattern('usr'))
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'
const serializeVerifyAnswer = fastJson(schemas.verifyAnswerSerialization)

/**
 * Routes /public/*: what an org's backend calls with its API key. No CORS: keys never belong in a
 * browser. A request's walk: this file's onRequest hook → guard.ts (its steps) → freshness.ts
 * (caches and epochs) and budget.ts (@fastify/rate-limit) → db/queries for what is not cached.
 */
const publicRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const cache = app.publicCache
  const lastUsed = createLastUsedRecorder({ db: app.db, log: app.log })
  app.addHook('onClose', async () => { await lastUsed.flush() })
  app.decorateRequest('apiKey', null)
  app.decorateRequest('orgEpoch', null)

  // One hook, not several: each hook is a trip through Fastify's hook runner on the hottest path.
  app.addHook('onRequest', createPublicGuard(app, config, cache, app.keyBudgets, lastUsed))
  // Usage (§14): every answer to a request the key authenticated; a 401 means none did.
  app.addHook('onResponse', (request, reply, done) => {
    if (request.apiKey !== null && reply.statusCode !== 401) app.keyUsage.count(request.apiKey.id, reply.statusCode, request.tokenValid)
    done()
  })

  /** A cached answer stamped with this request's org epoch, or a database load stamped with it. */
  async function cached (request: FastifyRequest, entries: EpochCache<SessionPrincipal | typeof NONE>, key: string, loadFromDb: () => Promise<SessionPrincipal | null>): Promise<SessionPrincipal | null> {
    const hit = entries.get(key, request.orgEpoch)
    if (hit !== undefined) return hit === NONE ? null : hit
    const loaded = await loadFromDb()
    entries.set(key, loaded ?? NONE, request.orgEpoch)
    return loaded
  }

  app.post('/verify', { schema: schemas.verify, config: { scope: 'tokens:verify' } }, async (request, reply) => {
    const org = keyOrg(request)
    const claims = app.verifyAccessToken(request.body.token)
    const principal = claims === null || claims.org !== org.id
      ? null
      : await cached(request, cache.principals, `${org.id}:${claims.sid}:${claims.sub}`,
        () => findLiveSessionPrincipal(app.db, { sessionId: claims.sid, userId: claims.sub, orgId: org.id }))
    // Only for the answer: an error thrown above is serialized as the envelope, not with this.
    // A reply serializer skips Fastify's JSON content type, so the answer names its own.
    reply.serializer(serializeVerifyAnswer).type(JSON_CONTENT_TYPE)
    request.tokenValid = principal !== null
    if (principal === null) return { valid: false as const }
    return {
      valid: true as const,
      user: principal.user,
      membership: principal.membership,
      org: { id: org.id, name: org.name, slug: org.slug, plan: org.plan, status: org.status }
    }
  })

  app.get('/users/:userId', { schema: schemas.getUser, config: { scope: 'users:read' } }, async (request) => {
    const org = keyOrg(request)
    const { userId } = request.params
    const member = USER_ID.test(userId)
      ? await cached(request, cache.members, `${org.id}:${userId}`, () => findOrgMember(app.db, org.id, userId))
      : null
    if (member === null) throw new NotFound('User not found')
    return { user: member.user, membership: member.membership }
  })

  app.get('/org', { schema: schemas.getOrg, config: { scope: 'org:read' } }, async (request) => {
    return { org: keyOrg(request) }
  })
}

export default publicRoutes
