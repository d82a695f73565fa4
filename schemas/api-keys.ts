import { Type, type TUnsafe } from '@sinclair/typebox'
import { API_KEY_SCOPES, MAX_ALLOWED_IPS } from '../src/api-key-settings.ts'
import { Id, NullableString, OrgSlugHeader, StringEnum, Success, Timestamp, errorResponse, errors, withSuccessExample, type ErrorExample } from './common.ts'

// The seed page's examples. Its sample key is two hex short of the format; this one keeps
// its first characters and carries a valid checksum.
export const EXAMPLE_KEY = 'pk_live_a3f8b2c1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c75c030aba'
const EXAMPLE_KEY_ID = 'key_01JZ8Q4K7X3W5N2M9B6V1C0D8E'

const tags = ['API keys']
export const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]
export const headers = Type.Object({ 'x-org-slug': OrgSlugHeader })
export const roleNote = 'Requires an active membership with role `org_admin` in the organization of `X-Org-Slug` ' +
  '(401 without a valid access token, 403 for other roles or a suspended membership or organization).'

const missingSlug: ErrorExample = ['Missing X-Org-Slug header', 'validation_failed']
// The guards every route here passes: X-Org-Slug, the access token, an active org_admin membership.
export const guardErrors = {
  ...errorResponse(400, missingSlug),
  ...errorResponse(401, ['Invalid or expired access token', 'unauthorized'],
    ['Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie', 'unauthorized']),
  ...errorResponse(403, ['This action requires the org_admin role', 'forbidden'],
    ['Your membership in this organization is not active', 'forbidden'], ['Organization is suspended', 'org_suspended']),
  ...errorResponse(404, ['Organization not found', 'not_found']),
  ...errors(503)
}

const KeyId = Id('key', 'API key id')
const KeyName = Type.String({ minLength: 1, maxLength: 100, description: 'A label to identify this key, 1–100 characters; surrounding whitespace is trimmed and a blank name is rejected', examples: ['Production backend'] })
const Prefix = Type.String({ description: 'The first 10 characters of the key (`pk_live_` + 2 hex), safe to display', examples: ['pk_live_a3'] })
const ExpiresAt = NullableString(Timestamp, { description: 'When the key stops working, or null for a key that never expires. Every `/public` response authenticated by a key with an expiry carries it as `X-API-Key-Expires-At` (Unix seconds).', examples: [null] })
const LastUsedAt = NullableString(Timestamp, { description: 'Last successful use (set on first use, then kept within 60 s of the truth), or null if never used', examples: [null] })

const Scope = StringEnum(API_KEY_SCOPES, {
  description: 'What a key may call: `tokens:verify` (`POST /public/verify`), `users:read` (`GET /public/users/{userId}`), `org:read` (`GET /public/org`)'
})
const Scopes = Type.Array(Scope, {
  minItems: 1,
  uniqueItems: true,
  description: 'The `/public` routes this key may call, by scope: at least one, no duplicates. A route outside them answers 403 `insufficient_scope`. Default: all three.',
  examples: [['tokens:verify']]
})
const Description = NullableString(Type.String({ maxLength: 500 }), {
  description: 'What the key is for, at most 500 characters; surrounding whitespace is trimmed and a blank description is stored as null',
  examples: ['Checks access tokens for the billing service']
})
const RateLimitFields = {
  max: Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Requests allowed per window, 1–1,000,000', examples: [60] }),
  windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400, description: 'Window length in seconds, 1–86,400', examples: [60] })
}
/** `{ max, windowSeconds }` or null, as one JSON Schema type list (no anyOf: one clear validation error, a cheap serializer). */
export function NullableRateLimit (description: string): TUnsafe<{ max: number, windowSeconds: number } | null> {
  return Type.Unsafe<{ max: number, windowSeconds: number } | null>({
    ...Type.Object(RateLimitFields, { additionalProperties: false }),
    type: ['object', 'null'],
    description,
    examples: [{ max: 60, windowSeconds: 60 }]
  })
}
const KeyRateLimit = NullableRateLimit('The key\'s own budget on `/public`: at most `max` requests per `windowSeconds`; null → the organization\'s budget, ' +
  'else the service default (`RATE_LIMIT_MAX` per `RATE_LIMIT_WINDOW`). Its average rate (max / windowSeconds) may not exceed the organization\'s.')
const AllowedIp = Type.String({ minLength: 1, maxLength: 64, description: 'An IPv4 or IPv6 address or CIDR block', examples: ['203.0.113.0/24'] })
const AllowedIps = Type.Array(AllowedIp, {
  maxItems: MAX_ALLOWED_IPS,
  description: 'The client addresses that may use this key, at most 50 addresses or CIDR blocks, IPv4 or IPv6; empty → any address. ' +
    'Stored normalised: a block as its network address (`10.1.2.3/8` → `10.0.0.0/8`), an address or a one-address block ' +
    '(`/32`, `/128`) as the plain address (`203.0.113.7`), IPv6 in RFC 5952 form (`2001:db8::1`), an IPv4-mapped IPv6 entry as ' +
    'its IPv4 (`::ffff:10.0.0.1` → `10.0.0.1`); entries equal after normalising are kept once. An IPv4-mapped IPv6 caller ' +
    'matches IPv4 entries. Anything else → 400 naming the entry. On `/public`, a client address outside the list (the address ' +
    'Fastify derives under TRUST_PROXY) is 403 `ip_not_allowed`, checked before the scope and not counted against the budget.',
  examples: [['203.0.113.0/24', '2001:db8::1']]
})
const NullableKeyId = (description: string) => NullableString(KeyId, { description, examples: [null] })

export const ApiKey = Type.Object({
  id: KeyId,
  name: KeyName,
  prefix: Prefix,
  isActive: Type.Boolean({ description: 'false once the key is revoked or past expiresAt' }),
  createdAt: Timestamp,
  expiresAt: ExpiresAt,
  lastUsedAt: LastUsedAt,
  description: Description,
  scopes: Scopes,
  rateLimit: KeyRateLimit,
  allowedIps: Type.Array(Type.String({ description: 'A normalised address or CIDR block' }), { description: 'The addresses that may use the key, normalised; empty → any address', examples: [['203.0.113.0/24', '2001:db8::1']] }),
  // One object schema (no anyOf), typed as §9's union: `id` is there exactly when the type is user.
  createdBy: Type.Unsafe<{ type: 'user', id: string } | { type: 'admin' | 'system' }>(Type.Object({
    type: StringEnum(['user', 'admin', 'system'], { description: '`user`: an org admin through the API; `admin`: the platform operator; `system`: the service itself or the operator CLI' }),
    id: Type.Optional(Id('usr', 'The user who created the key; present only when type is `user`'))
  }, { description: 'Who created the key' })),
  revokedAt: NullableString(Timestamp, { description: 'When the key was revoked, or null', examples: [null] }),
  rotatedFromId: NullableKeyId('The key this one replaced by rotation, or null'),
  rotatedToId: NullableKeyId('The key that replaced this one by rotation, or null')
}, { description: 'An API key (never the raw key): the full key object of every key route' })

const EXAMPLE_API_KEY = {
  id: EXAMPLE_KEY_ID,
  name: 'Production backend',
  prefix: 'pk_live_a3',
  isActive: true,
  createdAt: '2025-05-23T12:00:00.000Z',
  expiresAt: null,
  lastUsedAt: null,
  description: null,
  scopes: ['tokens:verify', 'users:read', 'org:read'],
  rateLimit: null,
  allowedIps: [],
  createdBy: { type: 'user', id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8F' },
  revokedAt: null,
  rotatedFromId: null,
  rotatedToId: null
}
const EXAMPLE_RESTRICTED_KEY = {
  ...EXAMPLE_API_KEY,
  name: 'Billing service',
  description: 'Checks access tokens for the billing service',
  scopes: ['tokens:verify'],
  rateLimit: { max: 60, windowSeconds: 60 },
  allowedIps: ['203.0.113.0/24', '2001:db8::1']
}

const keyIdParams = Type.Object({ keyId: Type.String({ minLength: 1, maxLength: 64, description: 'API key id (anything else is 404)', examples: [EXAMPLE_KEY_ID] }) })
const keyNotFound: ErrorExample = ['API key not found', 'not_found']
const orgNotFound: ErrorExample = ['Organization not found', 'not_found']
const invalidScope: ErrorExample = ['body.scopes.0 must be one of: tokens:verify, users:read, org:read', 'validation_failed']
const invalidIp: ErrorExample = ['body.allowedIps.1 "10.0.0.300" is not an IPv4 or IPv6 address or CIDR block', 'validation_failed']
const tooFast: ErrorExample = ['body.rateLimit (1000 per 60 s) is faster than the organization\'s budget of 300 per 900 s: a key may not average more requests per second than its organization', 'validation_failed']
const settingsNote = ' `scopes` (default all three), `rateLimit` (default null: the organization\'s budget) and `allowedIps` (default empty: any address) ' +
  'restrict what the key may do on `/public` from the next request on every instance; an invalid value is 400 `validation_failed` naming the field.'

export const createApiKey = {
  tags,
  security,
  operationId: 'createApiKey',
  summary: 'Create an API key',
  description: 'Generates a new API key for this org. The raw `key` is in this response only: it is stored as ' +
    'HMAC-SHA256 under the server pepper and can never be retrieved again — copy it into your secrets manager now. ' +
    'Format: `pk_live_` + 64 lowercase hex, the last 8 being the CRC32 of the rest (secret-scanning regex ' +
    '`pk_live_[0-9a-f]{64}`). `expiresAt` (ISO 8601 with a time zone) must be in the future; omit it for a key that ' +
    'never expires.' + settingsNote + ' Recorded as `api_key.created`. ' + roleNote,
  headers,
  body: Type.Object({
    name: KeyName,
    expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'Expiry, ISO 8601 with a time zone, in the future. Omit for a key that never expires.', examples: ['2026-01-01T00:00:00.000Z'] })),
    description: Type.Optional(Description),
    scopes: Type.Optional(Scopes),
    rateLimit: Type.Optional(KeyRateLimit),
    allowedIps: Type.Optional(AllowedIps)
  }, {
    additionalProperties: false,
    examples: [
      { name: 'Production backend' },
      { name: 'Billing service', description: 'Checks access tokens for the billing service', scopes: ['tokens:verify'], rateLimit: { max: 60, windowSeconds: 60 }, allowedIps: ['203.0.113.0/24', '2001:db8::1'] }
    ]
  }),
  response: {
    201: withSuccessExample(Success(Type.Object({
      key: Type.String({ pattern: '^pk_live_[0-9a-f]{64}$', description: 'The raw key, shown once', examples: [EXAMPLE_KEY] }),
      apiKey: ApiKey
    }), 'API key created'), { key: EXAMPLE_KEY, apiKey: EXAMPLE_API_KEY }),
    ...guardErrors,
    ...errorResponse(400, ['body.name is required', 'validation_failed'], ['body.expiresAt must be in the future', 'validation_failed'],
      invalidScope, invalidIp, tooFast, missingSlug),
    ...errors(413, 415)
  }
}

export const listApiKeys = {
  tags,
  security,
  operationId: 'listApiKeys',
  summary: 'List API keys',
  description: 'Every key of this org, newest first, as full key objects. The raw key is never returned — only its prefix. Revoked and ' +
    'expired keys stay listed with `isActive: false`. ' + roleNote,
  headers,
  response: {
    200: withSuccessExample(Success(Type.Object({ apiKeys: Type.Array(ApiKey) })), {
      apiKeys: [{ ...EXAMPLE_RESTRICTED_KEY, lastUsedAt: '2025-05-23T14:35:00.000Z' }]
    }),
    ...guardErrors
  }
}

export const getApiKey = {
  tags,
  security,
  operationId: 'getApiKey',
  summary: 'Get an API key',
  description: 'One key of this org as the full key object (never the raw key). A key of another org, or an id this service never ' +
    'made, is 404. ' + roleNote,
  headers,
  params: keyIdParams,
  response: {
    200: withSuccessExample(Success(Type.Object({ apiKey: ApiKey })), { apiKey: EXAMPLE_RESTRICTED_KEY }),
    ...guardErrors,
    ...errorResponse(404, keyNotFound, orgNotFound)
  }
}

export const updateApiKey = {
  tags,
  security,
  operationId: 'updateApiKey',
  summary: 'Update an API key',
  description: 'Changes any of `name`, `description`, `scopes`, `rateLimit`, `allowedIps` and `expiresAt` (at least one field); ' +
    'the others keep their values. `null` clears `description`, `rateLimit` (back to the organization\'s budget) and `expiresAt` ' +
    '(never expires); a new `expiresAt` must be in the future. The change applies from the next `/public` request on every ' +
    'instance (a new `max` in the same window keeps the window\'s count; a new `windowSeconds` starts a fresh count). A revoked key cannot be changed: 409 `conflict`. Recorded as ' +
    '`api_key.updated` with the names of the fields that changed; a body that changes nothing records nothing.' + ' ' + roleNote,
  headers,
  params: keyIdParams,
  body: Type.Object({
    name: Type.Optional(KeyName),
    description: Type.Optional(Description),
    scopes: Type.Optional(Scopes),
    rateLimit: Type.Optional(KeyRateLimit),
    allowedIps: Type.Optional(AllowedIps),
    expiresAt: Type.Optional(NullableString(Type.String({ format: 'date-time' }), { description: 'New expiry, ISO 8601 with a time zone, in the future; null: never expires', examples: ['2026-01-01T00:00:00.000Z'] }))
  }, {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ scopes: ['tokens:verify'], allowedIps: ['203.0.113.0/24'] }, { rateLimit: null, expiresAt: null }]
  }),
  response: {
    200: withSuccessExample(Success(Type.Object({ apiKey: ApiKey })), { apiKey: EXAMPLE_RESTRICTED_KEY }),
    ...guardErrors,
    ...errorResponse(400, ['body must NOT have fewer than 1 properties', 'validation_failed'], invalidScope, invalidIp, tooFast,
      ['body.expiresAt must be in the future', 'validation_failed'], missingSlug),
    ...errorResponse(404, keyNotFound, orgNotFound),
    ...errorResponse(409, ['API key is revoked: it cannot be changed', 'conflict']),
    ...errors(413, 415)
  }
}

export const rotateApiKey = {
  tags,
  security,
  operationId: 'rotateApiKey',
  summary: 'Rotate an API key',
  description: 'Replaces a key without downtime. A new key is generated — its raw `key` is in this response only — with the old ' +
    'key\'s name, description, scopes, rateLimit, allowedIps and expiresAt (an expiring key\'s successor expires at the same ' +
    'time). The old key keeps working until `min(its expiresAt, now + gracePeriodSeconds)` (default 86,400 s, one day; at most ' +
    '2,592,000 s, 30 days), long enough to deploy the new key everywhere; with `gracePeriodSeconds: 0` it is revoked at once. ' +
    '`previous` shows when the old key stops, and every `/public` response to the old key says it in `X-API-Key-Expires-At`. The two keys name each other (`rotatedToId`, `rotatedFromId`). A key that is ' +
    'revoked, expired or already rotated cannot be rotated: 409 `conflict`; of two concurrent rotations of one key exactly ' +
    'one succeeds. Recorded as one `api_key.rotated` event (target: the old key; data: the new key and `previous`). ' + roleNote,
  headers,
  params: keyIdParams,
  body: Type.Object({
    gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_592_000, description: 'How long the old key keeps working, in seconds: 0 (revoked at once) to 2,592,000 (30 days). Default 86,400 (one day).', examples: [86_400] }))
  }, { additionalProperties: false, examples: [{ gracePeriodSeconds: 3600 }, {}] }),
  response: {
    201: withSuccessExample(Success(Type.Object({
      key: Type.String({ pattern: '^pk_live_[0-9a-f]{64}$', description: 'The new raw key, shown once', examples: [EXAMPLE_KEY] }),
      apiKey: ApiKey,
      previous: Type.Object({
        id: KeyId,
        expiresAt: NullableString(Timestamp, { description: 'When the old key stops working (the end of the grace period, or its own earlier expiry); null only with revokedAt set', examples: ['2025-05-24T12:00:00.000Z'] }),
        revokedAt: NullableString(Timestamp, { description: 'When the old key was revoked: now with gracePeriodSeconds 0, else null', examples: [null] })
      }, { description: 'The old key after the rotation' })
    }), 'API key rotated'), {
      key: EXAMPLE_KEY,
      apiKey: { ...EXAMPLE_RESTRICTED_KEY, id: 'key_01JZ9A2B3C4D5E6F7G8H9J0K1M', createdAt: '2025-06-01T09:00:00.000Z', rotatedFromId: EXAMPLE_KEY_ID },
      previous: { id: EXAMPLE_KEY_ID, expiresAt: '2025-06-02T09:00:00.000Z', revokedAt: null }
    }),
    ...guardErrors,
    ...errorResponse(400, ['body.gracePeriodSeconds must be <= 2592000', 'validation_failed'], missingSlug),
    ...errorResponse(404, keyNotFound, orgNotFound),
    ...errorResponse(409, ['API key is revoked: it cannot be rotated', 'conflict'], ['API key has expired: it cannot be rotated', 'conflict'],
      ['API key was already rotated (to key_01JZ9A2B3C4D5E6F7G8H9J0K1M): rotate that key instead', 'conflict']),
    ...errors(413, 415)
  }
}

export const revokeApiKey = {
  tags,
  security,
  operationId: 'revokeApiKey',
  summary: 'Revoke an API key',
  description: 'Immediately invalidates the key: once this answers, every request with it fails with 401, on every instance. ' +
    'Revoking an already revoked key answers 200 again (and records nothing); a key of another org is 404. Recorded as ' +
    '`api_key.revoked`. ' + roleNote,
  headers,
  params: keyIdParams,
  response: {
    200: withSuccessExample(Success(Type.Object({ message: Type.String({ description: 'Always "API key revoked"', examples: ['API key revoked'] }) })), { message: 'API key revoked' }),
    ...guardErrors,
    ...errorResponse(404, keyNotFound, orgNotFound)
  }
}
