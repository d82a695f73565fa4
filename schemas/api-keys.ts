import { Type } from '@sinclair/typebox'
import { Id, NullableString, OrgSlugHeader, Success, Timestamp, errorResponse, errors, withSuccessExample, type ErrorExample } from './common.ts'

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
const ExpiresAt = NullableString(Timestamp, { description: 'When the key stops working, or null for a key that never expires', examples: [null] })
const LastUsedAt = NullableString(Timestamp, { description: 'Last successful use (set on first use, then kept within 60 s of the truth), or null if never used', examples: [null] })

export const ApiKey = Type.Object({
  id: KeyId,
  name: KeyName,
  prefix: Prefix,
  createdAt: Timestamp,
  expiresAt: ExpiresAt,
  lastUsedAt: LastUsedAt
}, { description: 'An API key (never the raw key)' })

export const ListedApiKey = Type.Object({
  id: KeyId,
  name: KeyName,
  prefix: Prefix,
  isActive: Type.Boolean({ description: 'false once the key is revoked or past expiresAt' }),
  createdAt: Timestamp,
  expiresAt: ExpiresAt,
  lastUsedAt: LastUsedAt
}, { description: 'An API key as listed (never the raw key)' })

export const createApiKey = {
  tags,
  security,
  operationId: 'createApiKey',
  summary: 'Create an API key',
  description: 'Generates a new API key for this org. The raw `key` is in this response only: it is stored as ' +
    'HMAC-SHA256 under the server pepper and can never be retrieved again — copy it into your secrets manager now. ' +
    'Format: `pk_live_` + 64 lowercase hex, the last 8 being the CRC32 of the rest (secret-scanning regex ' +
    '`pk_live_[0-9a-f]{64}`). `expiresAt` (ISO 8601 with a time zone) must be in the future; omit it for a key that ' +
    'never expires. ' + roleNote,
  headers,
  body: Type.Object({
    name: KeyName,
    expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'Expiry, ISO 8601 with a time zone, in the future. Omit for a key that never expires.', examples: ['2026-01-01T00:00:00.000Z'] }))
  }, { additionalProperties: false, examples: [{ name: 'Production backend' }] }),
  response: {
    201: withSuccessExample(Success(Type.Object({
      key: Type.String({ pattern: '^pk_live_[0-9a-f]{64}$', description: 'The raw key, shown once', examples: [EXAMPLE_KEY] }),
      apiKey: ApiKey
    }), 'API key created'), {
      key: EXAMPLE_KEY,
      apiKey: { id: EXAMPLE_KEY_ID, name: 'Production backend', prefix: 'pk_live_a3', createdAt: '2025-05-23T12:00:00.000Z', expiresAt: null, lastUsedAt: null }
    }),
    ...guardErrors,
    ...errorResponse(400, ['body.name is required', 'validation_failed'], ['body.expiresAt must be in the future', 'validation_failed'], missingSlug),
    ...errors(413, 415)
  }
}

export const listApiKeys = {
  tags,
  security,
  operationId: 'listApiKeys',
  summary: 'List API keys',
  description: 'Every key of this org, newest first. The raw key is never returned — only its prefix. Revoked and ' +
    'expired keys stay listed with `isActive: false`. ' + roleNote,
  headers,
  response: {
    200: withSuccessExample(Success(Type.Object({ apiKeys: Type.Array(ListedApiKey) })), {
      apiKeys: [{ id: EXAMPLE_KEY_ID, name: 'Production backend', prefix: 'pk_live_a3', isActive: true, createdAt: '2025-05-23T12:00:00.000Z', expiresAt: null, lastUsedAt: '2025-05-23T14:35:00.000Z' }]
    }),
    ...guardErrors
  }
}

export const revokeApiKey = {
  tags,
  security,
  operationId: 'revokeApiKey',
  summary: 'Revoke an API key',
  description: 'Immediately invalidates the key: once this answers, every request with it fails with 401. ' +
    'Revoking an already revoked key answers 200 again; a key of another org is 404. ' + roleNote,
  headers,
  params: Type.Object({ keyId: Type.String({ minLength: 1, maxLength: 64, description: 'API key id', examples: [EXAMPLE_KEY_ID] }) }),
  response: {
    200: withSuccessExample(Success(Type.Object({ message: Type.String({ description: 'Always "API key revoked"', examples: ['API key revoked'] }) })), { message: 'API key revoked' }),
    ...guardErrors,
    ...errorResponse(404, ['API key not found', 'not_found'], ['Organization not found', 'not_found'])
  }
}
