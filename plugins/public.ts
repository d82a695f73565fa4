import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/public.ts'
import type { Org } from '../db/queries/orgs.ts'
import { findOrgMember } from '../db/queries/memberships.ts'
import { idPattern } from '../src/ids.ts'
import { NotFound } from '../src/errors.ts'

const USER_ID = new RegExp(idPattern('usr'))

function keyOrg (request: FastifyRequest): Org {
  if (request.org === null || request.apiKey === null) throw new Error('public routes registered without requireApiKey')
  return request.org
}

/** Routes /public/*: what an org's backend calls with its API key. No CORS: keys never belong in a browser. */
const publicRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Key first, then its budget: the per-key count runs before the body is read, so every
  // authenticated response (400s included) carries the X-RateLimit-* headers.
  app.addHook('onRequest', app.requireApiKey)
  app.addHook('onRequest', app.rateLimitApiKey)

  app.post('/verify', { schema: schemas.verify }, async (request) => {
    const org = keyOrg(request)
    const auth = await app.resolveAccessToken(request.body.token, org.id)
    if (auth === null) return { valid: false as const }
    return {
      valid: true as const,
      user: auth.user,
      membership: auth.membership,
      org: { id: org.id, name: org.name, slug: org.slug, plan: org.plan, status: org.status }
    }
  })

  app.get('/users/:userId', { schema: schemas.getUser }, async (request) => {
    const org = keyOrg(request)
    const { userId } = request.params
    const member = USER_ID.test(userId) ? await findOrgMember(app.db, org.id, userId) : null
    if (member === null) throw new NotFound('User not found')
    return { user: member.user, membership: member.membership }
  })

  app.get('/org', { schema: schemas.getOrg }, async (request) => {
    return { org: keyOrg(request) }
  })
}

export default publicRoutes
