import { hash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import jwt from '@fastify/jwt'
import type { Config } from '../src/config.ts'
import { findLiveSessionPrincipal, findOrgWithSessionPrincipal, type SessionPrincipal } from '../db/queries/sessions.ts'
import { findOrgBySlug } from '../db/queries/orgs.ts'
import { Forbidden, NotFound, OrgSuspended, Unauthorized } from '../src/errors.ts'
import { slugHeader } from './org-slug.ts'

export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60
/** how far ahead of this clock another instance's clock may be when it issues a token */
export const CLOCK_SKEW_SECONDS = 30

export interface AccessClaims {
  sub: string
  org: string
  slug: string
  role: 'org_admin' | 'member'
  sid: string
  typ: 'access'
  iat: number
  exp: number
  iss: string
  aud: string
}

export interface AuthContext extends SessionPrincipal {
  claims: AccessClaims
}

declare module 'fastify' {
  interface FastifyInstance {
    issueAccessToken: (input: { userId: string, orgId: string, slug: string, role: 'org_admin' | 'member', sessionId: string }) => string
    /** signature, algorithm, typ, iss, aud and expiry; null when any fails */
    verifyAccessToken: (token: string) => AccessClaims | null
    /** a verified token of that org whose session is live, with its user and membership; null otherwise */
    resolveAccessToken: (token: string, orgId: string) => Promise<AuthContext | null>
    /** onRequest guard after requireOrg: 401 without a valid token for this org */
    requireUser: (request: FastifyRequest) => Promise<void>
    /** onRequest guard: requireOrg then requireUser, the same answers in the same order, in one query */
    requireOrgUser: (request: FastifyRequest) => Promise<void>
    /** onRequest guard after requireUser: 403 unless the membership is active */
    requireActiveMember: (request: FastifyRequest) => Promise<void>
    /** onRequest guard after requireActiveMember: 403 unless the membership has that role */
    requireRole: (role: 'org_admin') => (request: FastifyRequest) => Promise<void>
  }
  interface FastifyRequest {
    auth: AuthContext | null
  }
}

const AUTHENTICATION_REQUIRED = 'Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie'
const INVALID_TOKEN = 'Invalid or expired access token'

const ID = /^[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}$/

/**
 * The user, membership and claims requireUser set, for the routes behind that guard. Read on a
 * route without it, it is a defect (500), never a silent null: what `request.auth!` used to assume, checked.
 */
export function guardedAuth (request: FastifyRequest): AuthContext {
  if (request.auth === null) throw new Error(`${request.method} ${request.routeOptions.url ?? request.url} reads request.auth without the requireUser guard`)
  return request.auth
}

// fast-jwt checks exp, nbf and (with maxAge) that iat is not too old, but not that iat lies
// in the past, nor the lifetime the token claims: a token "issued" in the future, or one
// whose exp is further from its iat than the service ever issues, was not made here (RFC 8725 §3.10).
function isPlausiblyIssued (p: Record<string, unknown>, nowSeconds: number): boolean {
  return typeof p.iat === 'number' && typeof p.exp === 'number' &&
    p.iat <= nowSeconds + CLOCK_SKEW_SECONDS &&
    p.exp > p.iat && p.exp - p.iat <= ACCESS_TOKEN_TTL_SECONDS
}

function isAccessClaims (payload: unknown): payload is AccessClaims {
  if (typeof payload !== 'object' || payload === null) return false
  const p = payload as Record<string, unknown>
  return p.typ === 'access' &&
    isPlausiblyIssued(p, Date.now() / 1000) &&
    typeof p.sub === 'string' && ID.test(p.sub) &&
    typeof p.org === 'string' && ID.test(p.org) &&
    typeof p.sid === 'string' && ID.test(p.sid) &&
    typeof p.slug === 'string' &&
    (p.role === 'org_admin' || p.role === 'member')
}

export function accessTokenFrom (request: FastifyRequest): string | null {
  const header = request.headers.authorization
  if (typeof header === 'string') {
    const match = /^Bearer +([^\s]+)\s*$/i.exec(header)
    return match === null ? null : match[1]
  }
  const cookie = request.cookies?.access_token
  return typeof cookie === 'string' && cookie !== '' ? cookie : null
}

async function authJwt (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  await app.register(jwt, {
    secret: config.jwtSecret,
    // @fastify/jwt's request decorators are not used: tokens are read and checked here.
    decoratorName: 'jwtPayload',
    // expiresIn is in seconds: @fastify/jwt converts a number to milliseconds for fast-jwt itself.
    sign: { algorithm: 'HS256', iss: config.jwtIssuer, aud: config.jwtAudience, expiresIn: ACCESS_TOKEN_TTL_SECONDS },
    verify: {
      // Pinned: rejects alg none, HS384/512 and RS/ES tokens signed with the secret as a key.
      algorithms: ['HS256'],
      allowedIss: config.jwtIssuer,
      allowedAud: config.jwtAudience,
      requiredClaims: ['sub', 'org', 'sid', 'typ', 'exp', 'iat', 'iss', 'aud'],
      // Seconds (@fastify/jwt converts): a token older than an access token's life is refused
      // whatever its exp says. nbf, when present, is checked by default.
      maxAge: ACCESS_TOKEN_TTL_SECONDS
    }
  })

  app.decorateRequest('auth', null)

  app.decorate('issueAccessToken', function issueAccessToken (input) {
    return app.jwt.sign({ sub: input.userId, org: input.orgId, slug: input.slug, role: input.role, sid: input.sessionId, typ: 'access' })
  })

  // Verified tokens are remembered until their exp, by a one-shot SHA-256 of the token, so a
  // backend verifying the same token on every request pays for the HMAC and the claim checks
  // once. (fast-jwt's own cache derives its key by decoding the header first: 7 % of a
  // /public/verify request in the profile.) Revocation is not a signature matter: sessions are
  // checked on every use. Refused tokens are not remembered.
  const verified = new LRUCache<string, AccessClaims>({ max: 10_000 })

  app.decorate('verifyAccessToken', function verifyAccessToken (token: string): AccessClaims | null {
    if (token.length > 4096) return null
    const digest = hash('sha256', token, 'base64')
    const remembered = verified.get(digest)
    // exp − iat ≤ 15 min was checked when it was verified, so exp also bounds its age.
    if (remembered !== undefined) return remembered.exp * 1000 > Date.now() ? remembered : null
    try {
      const payload = app.jwt.verify<object>(token)
      if (!isAccessClaims(payload)) return null
      verified.set(digest, payload)
      return payload
    } catch {
      return null
    }
  })

  app.decorate('resolveAccessToken', async function resolveAccessToken (token: string, orgId: string) {
    const claims = app.verifyAccessToken(token)
    if (claims === null || claims.org !== orgId) return null
    const principal = await findLiveSessionPrincipal(app.db, { sessionId: claims.sid, userId: claims.sub, orgId })
    return principal === null ? null : { ...principal, claims }
  })

  app.decorate('requireUser', async function requireUser (request: FastifyRequest) {
    const token = accessTokenFrom(request)
    if (token === null) throw new Unauthorized(AUTHENTICATION_REQUIRED)
    const org = request.org
    if (org === null) throw new Error('requireUser registered without requireOrg')
    const auth = await app.resolveAccessToken(token, org.id)
    if (auth === null) throw new Unauthorized(INVALID_TOKEN)
    request.auth = auth
  })

  // requireOrg then requireUser in one round trip: the org of X-Org-Slug and the session, user and
  // membership of the token, read together (db/queries/sessions.ts). Nothing is cached: a
  // suspension, logout, role change or removal is seen by the next request on every instance, as
  // with the two guards. The answers and their order are theirs: 400 for the header, 404 unknown
  // org, 403 suspended, then 401 without a token, or with one not of this org or whose session is
  // not live.
  app.decorate('requireOrgUser', async function requireOrgUser (request: FastifyRequest) {
    const slug = slugHeader(request)
    if (slug === null) throw new NotFound('Organization not found')
    const token = accessTokenFrom(request)
    const claims = token === null ? null : app.verifyAccessToken(token)
    const found = claims === null
      ? await findOrgBySlug(app.db, slug).then(org => org === null ? null : { org, principal: null })
      : await findOrgWithSessionPrincipal(app.db, slug, { sessionId: claims.sid, userId: claims.sub, orgId: claims.org })
    if (found === null) throw new NotFound('Organization not found')
    const { org, principal } = found
    if (org.status !== 'active') throw new OrgSuspended()
    request.org = org
    if (token === null) throw new Unauthorized(AUTHENTICATION_REQUIRED)
    if (claims === null || claims.org !== org.id || principal === null) throw new Unauthorized(INVALID_TOKEN)
    request.auth = { ...principal, claims }
  })

  app.decorate('requireActiveMember', async function requireActiveMember (request: FastifyRequest) {
    if (request.auth?.membership.status !== 'active') throw new Forbidden('Your membership in this organization is not active')
  })

  app.decorate('requireRole', function requireRole (role: 'org_admin') {
    return async function roleGuard (request: FastifyRequest) {
      if (request.auth?.membership.role !== role) throw new Forbidden(`This action requires the ${role} role`)
    }
  })
}

/**
 * The guards of an org_admin route, in their order: the org of X-Org-Slug and a user logged in to
 * it (one query), an active membership, the org_admin role. Added to `scope`, they guard every route it registers.
 */
export function guardOrgAdminRoutes (scope: FastifyInstance): void {
  scope.addHook('onRequest', scope.requireOrgUser)
  scope.addHook('onRequest', scope.requireActiveMember)
  scope.addHook('onRequest', scope.requireRole('org_admin'))
}

export default fp(authJwt, { name: 'auth-jwt', fastify: '5.x', dependencies: ['db', 'org-slug'] })
