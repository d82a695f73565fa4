import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/public.ts'

function keyContext (request: FastifyRequest): { org: NonNullable<FastifyRequest['org']> } {
  if (request.org === null || request.apiKey === null) throw new Error('public routes registered without requireApiKey')
  return { org: request.org }
}

/** Routes /public/*: what an org's backend calls with its API key. */
const publicRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.requireApiKey)

  app.get('/org', { schema: schemas.getOrg }, async (request) => {
    return { org: keyContext(request).org }
  })
}

export default publicRoutes
