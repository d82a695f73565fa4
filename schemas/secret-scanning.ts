import { Type } from '@sinclair/typebox'
import { Success, errorResponse, errors, withSuccessExample } from './common.ts'

const tags = ['Leaked keys']
// Strings from outside land in audit events (jsonb): bounded, and refused when PostgreSQL cannot hold them.
const Source = Type.String({ minLength: 1, maxLength: 200, description: 'Where the key was found, e.g. `content`, `commit`, `issue_comment`', examples: ['content'] })
const FoundAt = Type.String({ minLength: 1, maxLength: 2048, description: 'A link to where the key was found', examples: ['https://github.com/octocat/hello/blob/main/.env'] })

const GithubMatch = Type.Object({
  token: Type.String({ maxLength: 1000, description: 'The string GitHub matched against the published pattern `pk_live_[0-9a-f]{64}`' }),
  type: Type.String({ maxLength: 200, description: 'The secret type this service registered with GitHub, echoed back as `token_type`', examples: ['tenantkey_api_key'] }),
  url: Type.Optional(FoundAt),
  source: Type.Optional(Source)
})

const GithubVerdict = Type.Object({
  token_hash: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 (hex) of the token' }),
  token_type: Type.String({ description: 'The `type` of the match' }),
  label: Type.Union([Type.Literal('true_positive'), Type.Literal('false_positive')], { description: '`true_positive` when the token is a key of this service (live, revoked or expired), else `false_positive`' })
})

const signatureErrors = errorResponse(401,
  ['Missing Github-Public-Key-Identifier or Github-Public-Key-Signature header', 'invalid_signature'],
  ['Unknown Github-Public-Key-Identifier', 'invalid_signature'],
  ['Invalid Github-Public-Key-Signature', 'invalid_signature'])

export const githubSecretScanning = {
  tags,
  security: [],
  operationId: 'githubSecretScanning',
  summary: 'GitHub secret scanning: revoke keys found in public code',
  description: "GitHub's secret-scanning partner endpoint. GitHub POSTs the strings that match this service's key " +
    'pattern in public repositories; each one that is a live key of this service is revoked at once (as `DELETE ' +
    '/org/api-keys/:keyId`, on every instance) and recorded as an `api_key.leaked` event (actor `system`), which webhooks ' +
    'deliver. The request is signed by GitHub: `Github-Public-Key-Signature` is a base64 ECDSA P-256 / SHA-256 signature ' +
    'of the raw body, by the key named in `Github-Public-Key-Identifier`, checked against the public keys in the file ' +
    'named by `GITHUB_SECRET_SCANNING_KEYS` (the shape of GitHub\'s public-keys document; reread when it changes). ' +
    'Without that variable the route answers 404. Up to 1,000 matches per request (bodies up to 1 MiB), looked up in one ' +
    "database query. The answer is GitHub's feedback format, not the envelope.",
  headers: Type.Object({
    'github-public-key-identifier': Type.Optional(Type.String({ description: 'The key_identifier of the public key that signed the body' })),
    'github-public-key-signature': Type.Optional(Type.String({ description: 'Base64 ECDSA P-256 / SHA-256 signature (DER) of the raw body' }))
  }),
  body: Type.Array(GithubMatch, { maxItems: 1000, description: 'The matches GitHub found', examples: [[{ token: 'pk_live_a3f8b2c1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c75c030aba', type: 'tenantkey_api_key', url: 'https://github.com/octocat/hello/blob/main/.env', source: 'content' }]] }),
  response: {
    200: Type.Array(GithubVerdict, {
      description: 'One verdict per match, in the order of the request',
      examples: [[{ token_hash: 'f0a8a42bdb0a6ef5b1e37b3bd79c8b0c6e3b7f5b2a1e5e0a4f1c0d9e8b7a6f5e', token_type: 'tenantkey_api_key', label: 'true_positive' }]]
    }),
    ...errorResponse(400, ['body/0/token must be string', 'validation_failed']),
    ...signatureErrors,
    ...errorResponse(404, ['Route POST /api/v1/secret-scanning/github not found', 'not_found']),
    ...errors(413, 415, 503)
  }
}

export const reportApiKey = {
  tags,
  security: [],
  operationId: 'reportApiKey',
  summary: 'Report a leaked API key',
  description: 'Anyone who finds a key of this service where it does not belong (a paste, a log, a public repository) ' +
    'can report it here, without credentials. A live key is revoked at once and recorded as `api_key.leaked` (actor ' +
    '`system`). The answer is always 202 with the same body, whatever the key — live, revoked, unknown or not a key at ' +
    'all — so this route tells nobody anything about a key. Limited to 10 reports per minute per client address (429).',
  body: Type.Object({
    key: Type.String({ minLength: 1, maxLength: 1000, description: 'The key as found', examples: ['pk_live_a3f8b2c1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c75c030aba'] }),
    source: Type.Optional(Source),
    url: Type.Optional(FoundAt)
  }, { additionalProperties: false }),
  response: {
    202: withSuccessExample(Success(Type.Object({ message: Type.Literal('Report received') }), 'Report received (whatever the key)'), { message: 'Report received' }),
    ...errorResponse(400, ['body.key is required', 'validation_failed']),
    ...errorResponse(429, ['Too many reports; try again in 60 seconds', 'rate_limited']),
    ...errors(413, 415, 503)
  }
}
