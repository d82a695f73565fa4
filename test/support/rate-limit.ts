import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { createOrgWithMember, createApiKey } from '../helper.ts'

/** The headers of a fresh org's fresh API key, for /public requests. */
export async function keyedOrg (app: FastifyInstance): Promise<Record<string, string>> {
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture)
  return { 'x-org-slug': fixture.org.slug, 'x-api-key': key }
}

export function getOrg (app: FastifyInstance, headers: Record<string, string>): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: '/api/v1/public/org', headers })
}

/** The X-RateLimit-* headers of a response, as numbers. */
export function limits (res: LightMyRequestResponse): { limit: number, remaining: number, reset: number } {
  return { limit: Number(res.headers['x-ratelimit-limit']), remaining: Number(res.headers['x-ratelimit-remaining']), reset: Number(res.headers['x-ratelimit-reset']) }
}
