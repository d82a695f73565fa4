import { Type } from '@sinclair/typebox'
import { Membership, Org, OrgSlugHeader, PublicUser, Success, errorResponse, errors, withSuccessExample, type ErrorExample, type ErrorResponses } from './common.ts'

const tags = ['Public']
const security: Array<Record<string, string[]>> = [{ apiKey: [] }]
// X-API-Key is the `apiKey` security scheme of these operations, not a parameter: declared twice,
// Swagger UI would demand it in the form as well as under Authorize.
const headers = Type.Object({ 'x-org-slug': OrgSlugHeader })
const authNote = 'Send `X-API-Key` (the `apiKey` security scheme: an API key of this organization, `pk_live_` + 64 hex, ' +
  'server-side only) and `X-Org-Slug`. A missing, malformed, unknown, revoked or expired key, an unknown ' +
  'org, or a key of another org is 401 `Invalid API key` (code `invalid_api_key`), never saying which check failed; a ' +
  'suspended org is 403 `org_suspended` once the key is valid. After 30 failed keys (API_KEY_FAILURE_MAX) in a minute, ' +
  'a client IP gets 429 with `Retry-After` for keys this instance has not seen valid. Then, in this order: a client ' +
  'address outside the key\'s `allowedIps` is 403 `ip_not_allowed` (the message names the address; an IPv4-mapped IPv6 ' +
  'address matches IPv4 entries; the address is the one Fastify derives under TRUST_PROXY), a key without the ' +
  'route\'s scope is 403 `insufficient_scope` (the message names the scope). These 403s do not count against the ' +
  'budget and carry no `X-RateLimit-*` headers. Then the budget: the key\'s own `rateLimit`, else its org\'s, else ' +
  'the service default of 300 requests per 15 minutes (RATE_LIMIT_MAX, RATE_LIMIT_WINDOW); every response past the ' +
  'allowlist and scope carries `X-RateLimit-Limit` (the effective max), `X-RateLimit-Remaining` and `X-RateLimit-Reset` ' +
  '(the Unix time in seconds at which the effective window ends), and 429 with `Retry-After` beyond it. Every response ' +
  'authenticated by a key that has an `expiresAt` carries `X-API-Key-Expires-At` (Unix seconds). No CORS headers are ' +
  'sent: keys never belong in a browser.'

// On every response authenticated by a key that has an expiry, whatever its status.
const expiresAtHeader = {
  'X-API-Key-Expires-At': {
    type: 'integer',
    description: 'Unix time (seconds) at which the API key stops working; only for a key with an `expiresAt` (a key ' +
      'being rotated out has one: the end of its grace period)',
    examples: [1767225600]
  }
}
const rateLimitHeaders = {
  'X-RateLimit-Limit': { type: 'integer', description: "Requests allowed per window for this API key: its effective budget (the key's own, else its org's, else the service default)", examples: [300] },
  'X-RateLimit-Remaining': { type: 'integer', description: 'Requests left in the current window', examples: [247] },
  'X-RateLimit-Reset': { type: 'integer', description: 'Unix time (seconds) at which the current window ends', examples: [1716912000] },
  ...expiresAtHeader
}
const missingSlug: ErrorExample = ['Missing X-Org-Slug header', 'validation_failed']
const retryAfterHeader = { 'Retry-After': { type: 'integer', description: 'Seconds to wait before retrying', examples: [312] } }

/** A success response of a rate-limited route: the schema, its example and the rate-limit headers. */
function limited<T extends ReturnType<typeof Success>> (schema: T, data: unknown): T {
  return { ...withSuccessExample(schema, data), headers: rateLimitHeaders }
}

// The guard's answers, the same on every /public route. 429 is either the per-key limit (with the
// X-RateLimit-* headers) or the per-IP guard on failed keys.
function publicErrors (scope: string, route: string, ...extra: ErrorResponses[]): ErrorResponses {
  const out: ErrorResponses = {
    ...errorResponse(400, missingSlug),
    ...errorResponse(401, ['Invalid API key', 'invalid_api_key']),
    ...errorResponse(403,
      ['Organization is suspended', 'org_suspended'],
      ["Client address 198.51.100.23 is not on this API key's IP allowlist", 'ip_not_allowed'],
      [`This API key lacks the scope ${scope}, which ${route} needs`, 'insufficient_scope']),
    ...errorResponse(429,
      ['Rate limit exceeded (300 requests per 15 minutes per API key); retry in 312 seconds', 'rate_limited'],
      ['Too many failed API key attempts; try again in 42 seconds', 'rate_limited']),
    ...errors(503)
  }
  out[429] = {
    ...out[429],
    description: 'Over the per-key rate limit (with the X-RateLimit-* headers), or too many failed API keys from this IP',
    headers: { ...rateLimitHeaders, ...retryAfterHeader }
  }
  out[403] = {
    ...out[403],
    description: 'The org is suspended, the client address is not on the key\'s allowlist, or the key lacks the route\'s scope (none of them counted against the budget, no X-RateLimit-* headers)',
    headers: expiresAtHeader
  }
  Object.assign(out, ...extra)
  // Answers after authentication (a bad body, an unknown user) carry the budget's headers too.
  for (const status of [400, 404, 413, 415]) {
    if (out[status] !== undefined) out[status] = { ...out[status], headers: rateLimitHeaders }
  }
  return out
}

export const EXAMPLE_USER = { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', name: 'Ada Lovelace', email: 'ada@acme.test', role: 'user', isEmailVerified: true }
const EXAMPLE_MEMBERSHIP = { role: 'member', status: 'active', joinedAt: '2025-05-23T12:00:00.000Z' }
const EXAMPLE_ORG = { id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', name: 'Acme Inc.', slug: 'acme', plan: 'pro', status: 'active', appUrl: 'https://app.acme.test', createdAt: '2025-05-23T12:00:00.000Z' }

const VerifiedOrg = Type.Pick(Org, ['id', 'name', 'slug', 'plan', 'status'], { description: 'The organization the token and the key belong to' })

export const verify = {
  tags,
  security,
  operationId: 'publicVerifyToken',
  summary: 'Verify a user access token',
  description: 'Verifies a user access token (from /auth/login) for this org and returns the user, their membership and ' +
    'the org. Anything else — malformed, bad signature, expired, wrong `typ`, issued for another org, session ended by ' +
    'logout, user no longer a member — answers 200 `{ "valid": false }`. A suspended membership still verifies, with ' +
    '`membership.status: "suspended"`: deny access unless it is `active`, as the seed example does. ' + authNote,
  headers,
  body: Type.Object({
    token: Type.String({ description: 'The user access token (JWT) to verify', examples: ['eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…'] })
  }, { examples: [{ token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…' }] }),
  response: {
    200: Success(Type.Union([
      Type.Object({ valid: Type.Literal(true), user: PublicUser, membership: Membership, org: VerifiedOrg }, { description: 'The token is valid for this org' }),
      Type.Object({ valid: Type.Literal(false) }, { description: 'The token is not valid for this org' })
    ]), {
      description: 'Whether the token is valid for this org (always 200 once the key is accepted)',
      headers: rateLimitHeaders,
      examples: [
        { status: 'success', data: { valid: true, user: EXAMPLE_USER, membership: EXAMPLE_MEMBERSHIP, org: { id: EXAMPLE_ORG.id, name: EXAMPLE_ORG.name, slug: EXAMPLE_ORG.slug, plan: EXAMPLE_ORG.plan, status: EXAMPLE_ORG.status } } },
        { status: 'success', data: { valid: false } }
      ]
    }),
    ...publicErrors('tokens:verify', 'POST /api/v1/public/verify', errorResponse(400, ['body.token is required', 'validation_failed'], missingSlug), errors(413, 415))
  }
}

/**
 * What POST /public/verify's 200 is serialized with: the documented union flattened into one
 * object, so fast-json-stringify writes it without validating it against each branch first.
 * Same fields, same filtering of anything the schema does not name.
 */
export const verifyAnswerSerialization = Type.Object({
  status: Type.String(),
  data: Type.Object({
    valid: Type.Boolean(),
    user: Type.Optional(PublicUser),
    membership: Type.Optional(Membership),
    org: Type.Optional(VerifiedOrg)
  })
})

export const getUser = {
  tags,
  security,
  operationId: 'publicGetUser',
  summary: 'Get a user of your organization',
  description: "A user's profile and membership, when the user is a member of the API key's org (active or suspended). " +
    'Any other id — unknown, malformed, or a user who exists only in other orgs — is 404. ' + authNote,
  headers,
  params: Type.Object({ userId: Type.String({ maxLength: 64, description: 'User id', examples: [EXAMPLE_USER.id] }) }),
  response: {
    200: limited(Success(Type.Object({ user: PublicUser, membership: Membership })), { user: EXAMPLE_USER, membership: EXAMPLE_MEMBERSHIP }),
    ...publicErrors('users:read', 'GET /api/v1/public/users/:userId', errorResponse(404, ['User not found', 'not_found']))
  }
}

export const getOrg = {
  tags,
  security,
  operationId: 'publicGetOrg',
  summary: 'Get your organization',
  description: "The API key's organization. " + authNote,
  headers,
  response: {
    200: limited(Success(Type.Object({ org: Org })), { org: EXAMPLE_ORG }),
    ...publicErrors('org:read', 'GET /api/v1/public/org')
  }
}
