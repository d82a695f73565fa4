import { Type } from '@sinclair/typebox'
import { ActiveStatus, Email, Membership, NoAuth, OrgRole, OrgSlugHeader, PublicUser, Success, errorResponse, errors, withSuccessExample } from './common.ts'

const tags = ['Auth']
const userSecurity: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]
const headers = Type.Object({ 'x-org-slug': OrgSlugHeader })

const EXAMPLE_USER = { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', name: 'Ada Lovelace', email: 'ada@acme.test', role: 'user', isEmailVerified: true }
const EXAMPLE_ACCESS_TOKEN = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfMDFKWjhRNEs3WDNXNU4yTTlCNlYxQzBEOEUifQ.c2lnbmF0dXJl'
const EXAMPLE_REFRESH_TOKEN = 'q3Jk9c0hVx2bT8sLw1mNf5aYp7eRu4iOz6gD0kHjC2E'

const RefreshToken = Type.String({
  minLength: 1,
  maxLength: 512,
  description: 'Opaque refresh token from login or the previous refresh. Single use: each refresh returns a new one',
  examples: [EXAMPLE_REFRESH_TOKEN]
})

const SET_COOKIE_HEADERS = {
  'Set-Cookie': {
    type: 'string',
    description: '`access_token` (15 minutes) and `refresh_token` (7 days), both `HttpOnly; SameSite=Lax; Path=/` and `Secure` unless COOKIE_SECURE=false'
  }
}

const AuthTokens = Type.Object({
  accessToken: Type.String({ description: 'JWT (HS256) valid for 15 minutes; send as `Authorization: Bearer …` or rely on the access_token cookie', examples: [EXAMPLE_ACCESS_TOKEN] }),
  refreshToken: Type.String({ description: 'Opaque, single-use refresh token valid for 7 days (also set as the refresh_token cookie)', examples: [EXAMPLE_REFRESH_TOKEN] }),
  user: PublicUser,
  membership: Type.Object({ role: OrgRole, status: ActiveStatus }, { description: "The user's membership in the organization" })
})
const EXAMPLE_TOKENS = { accessToken: EXAMPLE_ACCESS_TOKEN, refreshToken: EXAMPLE_REFRESH_TOKEN, user: EXAMPLE_USER, membership: { role: 'org_admin', status: 'active' } }

function signedIn (description: string) {
  return Success(AuthTokens, { description, headers: SET_COOKIE_HEADERS, examples: [{ status: 'success', data: EXAMPLE_TOKENS }] })
}

const tooManyFailures = errorResponse(429, ['Too many failed login attempts; try again in 840 seconds', 'rate_limited'])
tooManyFailures[429] = {
  ...tooManyFailures[429],
  description: 'Too many failed logins from this client for this email, or from this client overall',
  headers: { 'Retry-After': { type: 'integer', description: 'Seconds until another attempt is allowed', examples: [840] } }
}

const missingSlug = errorResponse(400, ['Missing X-Org-Slug header', 'validation_failed'])
const unknownOrg = errorResponse(404, ['Organization not found', 'not_found'])

export const login = {
  tags,
  security: NoAuth,
  operationId: 'login',
  summary: 'Log in to an organization',
  description: 'Checks the email and password and that the user is an active member of the organization named by `X-Org-Slug`, ' +
    'then starts a session: answers an access token (15 minutes) and a refresh token (7 days) and sets both as HttpOnly cookies. ' +
    'A wrong password and an unknown email answer the same 401 and take the same time. Failed attempts are limited per email+IP ' +
    '(`LOGIN_FAILURE_MAX` per 15 minutes) and per IP (5 × that); over either limit the answer is 429 with `Retry-After`, even for the right password.',
  headers,
  body: Type.Object({
    email: Email,
    password: Type.String({ minLength: 1, maxLength: 1024, description: 'The account password', examples: ['correct horse battery'] })
  }, { additionalProperties: false, examples: [{ email: 'ada@acme.test', password: 'correct horse battery' }] }),
  response: {
    200: signedIn('Logged in; cookies set'),
    ...errorResponse(400, ['Missing X-Org-Slug header', 'validation_failed'], ['body.email must match format "email"', 'validation_failed']),
    ...errorResponse(401, ['Invalid email or password', 'invalid_credentials']),
    ...errorResponse(403, ['You are not a member of this organization', 'forbidden'], ['Your membership in this organization is not active', 'forbidden'], ['Organization is suspended', 'org_suspended']),
    ...unknownOrg,
    ...tooManyFailures,
    ...errors(413, 415, 503)
  }
}

export const refresh = {
  tags,
  security: NoAuth,
  operationId: 'refreshSession',
  summary: 'Exchange a refresh token for new tokens',
  description: 'Takes the refresh token from the body `{ refreshToken }` or, when the body has none, the `refresh_token` cookie. ' +
    'Refresh tokens are opaque, stored only as SHA-256 hashes, and **rotated on every use**: the answer carries a new refresh token ' +
    'and the presented one is spent. Presenting a spent token again (reuse — a sign it was stolen) revokes the whole session and answers 401; ' +
    'so does a second concurrent refresh with the same token. A session lasts at most 30 days from login. ' +
    'A suspended member (or a member of a suspended org) is refused with 403 at once; a removed member gets 401.',
  headers,
  body: Type.Object({ refreshToken: Type.Optional(RefreshToken) }, { additionalProperties: false, examples: [{ refreshToken: EXAMPLE_REFRESH_TOKEN }] }),
  response: {
    200: signedIn('New access and refresh tokens; cookies set'),
    ...missingSlug,
    ...errorResponse(401, ['Invalid or expired refresh token', 'unauthorized'], ['Refresh token required: send the refresh_token cookie or { "refreshToken" }', 'unauthorized']),
    ...errorResponse(403, ['Your membership in this organization is not active', 'forbidden'], ['Organization is suspended', 'org_suspended']),
    ...unknownOrg,
    ...errors(413, 415, 503)
  }
}

export const logout = {
  tags,
  security: userSecurity,
  operationId: 'logout',
  summary: 'Log out',
  description: 'Revokes the session named by the access token (bearer or cookie) — or, when that is missing or expired, by the refresh token ' +
    '(body `{ refreshToken }` or cookie) — and clears the `access_token`, `refresh_token` and `partial_token` cookies. ' +
    'Idempotent: without a live session it still answers 200. After it, the access token is refused everywhere (`/auth/me` 401, `/public/verify` `valid: false`).',
  headers,
  body: Type.Object({ refreshToken: Type.Optional(RefreshToken) }, { additionalProperties: false, examples: [{}] }),
  response: {
    200: Success(Type.Object({ message: Type.String({ description: 'Always "Logged out successfully"', examples: ['Logged out successfully'] }) }), { description: 'Logged out; cookies cleared', examples: [{ status: 'success', data: { message: 'Logged out successfully' } }], headers: { 'Set-Cookie': { type: 'string', description: 'Expired access_token, refresh_token and partial_token cookies' } } }),
    ...missingSlug,
    ...errorResponse(403, ['Organization is suspended', 'org_suspended']),
    ...unknownOrg,
    ...errors(413, 415, 503)
  }
}

export const me = {
  tags,
  security: userSecurity,
  operationId: 'getCurrentUser',
  summary: 'The current user',
  description: 'The user behind the access token and their membership in this organization. A suspended member still gets 200 ' +
    '(with `membership.status: "suspended"`) so a client can tell them why they cannot act; every `/org` route refuses them with 403.',
  headers,
  response: {
    200: withSuccessExample(Success(Type.Object({ user: PublicUser, membership: Membership }), 'The current user and their membership'),
      { user: EXAMPLE_USER, membership: { role: 'org_admin', status: 'active', joinedAt: '2025-05-23T12:00:00.000Z' } }),
    ...missingSlug,
    ...errorResponse(401, ['Invalid or expired access token', 'unauthorized'], ['Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie', 'unauthorized']),
    ...errorResponse(403, ['Organization is suspended', 'org_suspended']),
    ...unknownOrg,
    ...errors(503)
  }
}
