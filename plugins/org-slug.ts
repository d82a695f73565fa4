import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { findOrgBySlug, type Org } from '../db/queries/orgs.ts'
import { NotFound, OrgSuspended, ValidationFailed } from '../src/errors.ts'
import { isStorable, NOT_STORABLE } from '../src/unicode.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** the organization named by X-Org-Slug, set by the org-slug guards */
    org: Org | null
  }
  interface FastifyInstance {
    /** onRequest guard for /auth and /org: 400 missing, 404 unknown, 403 suspended */
    requireOrg: (request: FastifyRequest) => Promise<void>
    findOrgBySlug: (slug: string) => Promise<Org | null>
  }
}

const SLUG = /^[a-z0-9-]{3,48}$/

/**
 * The organization requireOrg set, for the routes behind that guard. Read on a route without it,
 * it is a defect (500), never a silent null: what `request.org!` used to assume, checked.
 */
export function guardedOrg (request: FastifyRequest): Org {
  if (request.org === null) throw new Error(`${request.method} ${request.routeOptions.url ?? request.url} reads request.org without the requireOrg guard`)
  return request.org
}

/** 400 when X-Org-Slug is missing, repeated or holds U+0000 or a lone surrogate; null when it cannot be a slug (no org has it). */
export function slugHeader (request: FastifyRequest): string | null {
  const value = request.headers['x-org-slug']
  if (value === undefined || value === '') throw new ValidationFailed('Missing X-Org-Slug header')
  if (typeof value !== 'string') throw new ValidationFailed('X-Org-Slug header must be sent once')
  if (SLUG.test(value)) return value
  // No org has it; but a value the stores could not hold is refused as such (§1), whatever the route.
  if (!isStorable(value)) throw new ValidationFailed(`headers.x-org-slug ${NOT_STORABLE}`)
  return null
}

async function orgSlug (app: FastifyInstance): Promise<void> {
  app.decorateRequest('org', null)
  app.decorate('findOrgBySlug', (slug: string) => findOrgBySlug(app.db, slug))

  app.decorate('requireOrg', async function requireOrg (request: FastifyRequest) {
    const slug = slugHeader(request)
    const org = slug === null ? null : await app.findOrgBySlug(slug)
    if (org === null) throw new NotFound('Organization not found')
    if (org.status !== 'active') throw new OrgSuspended()
    request.org = org
  })
}

export default fp(orgSlug, { name: 'org-slug', fastify: '5.x', dependencies: ['db'] })
