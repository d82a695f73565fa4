import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fastJson from 'fast-json-stringify'
import * as schemas from '../schemas/public.ts'
import type { Org } from '../db/queries/orgs.ts'
import { findOrgMember } from '../db/queries/memberships.ts'
import { findLiveSessionPrincipal, type SessionPrincipal } from '../db/queries/sessions.ts'
import { NONE } from './public-cache.ts'
import { guardedApiKey } from './api-key.ts'
import { idPattern } from '../src/ids.ts'
import { NotFound } from '../src/errors.ts'

const USER_ID = new RegExp(idPattern('usr'))
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'
const serializeVerifyAnswer = fastJson(schemas.verifyAnswerSerialization)

function keyOrg (request: FastifyRequest): Org {
  if (request.org === null || request.apiKey === null) throw new Error('public routes registered without requireApiKey')
  return request.org
}

/** Routes /public/*: what an org's backend calls with its API key. No CORS: keys never belong in a browser. */
const publicRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const cache = app.publicCache
  // The order of §9: key (401) → org suspended, allowlist, scope (403s, not counted, without
  // X-RateLimit-*) → budget (429) → the route. One hook, not several: each hook is a trip through
  // Fastify's hook runner on the hottest path.
  app.addHook('onRequest', async function guardPublicRequest (request, reply) {
    await app.requireApiKey(request, reply)
    // The 403 checks first on what the cache holds; when it allows the request and may well be
    // current, the count starts now, in the same tick as the org-epoch read (with Redis: one
    // round trip for both).
    let counted = app.apiKeyRefusal(request) === null && app.apiKeyMayBeCurrent(request) ? app.countApiKeyRequest(request) : null
    const countedBudget = guardedApiKey(request).budget
    let reloaded: boolean
    try {
      reloaded = await app.confirmApiKey(request)
    } catch (error) {
      if (counted !== null) await app.uncountApiKeyRequest(counted)
      throw error
    }
    const { expiresAtHeader, budget } = guardedApiKey(request)
    if (expiresAtHeader !== null) reply.header('x-api-key-expires-at', expiresAtHeader)
    if (reloaded || counted === null) {
      // What the key and org hold now decides: a refusal gives the count back, and so does a
      // changed budget (the request is counted again under the new one).
      const refusal = app.apiKeyRefusal(request)
      if (refusal !== null) {
        if (counted !== null) await app.uncountApiKeyRequest(counted)
        throw refusal
      }
      if (counted !== null && (budget.max !== countedBudget.max || budget.windowMs !== countedBudget.windowMs)) {
        await app.uncountApiKeyRequest(counted)
        counted = null
      }
    }
    await app.rateLimitApiKey(reply, counted ?? app.countApiKeyRequest(request))
    await app.recordApiKeyUse(request)
  })
  // Usage (§14): every answer to a request the key authenticated; a 401 means none did.
  app.addHook('onResponse', (request, reply, done) => {
    if (request.apiKey !== null && reply.statusCode !== 401) app.keyUsage.count(request.apiKey.id, reply.statusCode, request.tokenValid)
    done()
  })

  /** A cached answer stamped with this request's org epoch, or a database load stamped with it. */
  async function cached (request: FastifyRequest, entries: typeof cache.members, key: string, loadFromDb: () => Promise<SessionPrincipal | null>): Promise<SessionPrincipal | null> {
    const epoch = await request.orgEpoch
    const hit = entries.get(key, epoch)
    if (hit !== undefined) return hit === NONE ? null : hit
    const loaded = await loadFromDb()
    entries.set(key, loaded ?? NONE, epoch)
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
