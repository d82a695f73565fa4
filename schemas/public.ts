import { Type } from '@sinclair/typebox'
import { Org, OrgSlugHeader, Success, errors, withSuccessExample } from './common.ts'
import { EXAMPLE_KEY } from './api-keys.ts'

const tags = ['Public']
const security: Array<Record<string, string[]>> = [{ apiKey: [] }]
const headers = Type.Object({
  'x-org-slug': OrgSlugHeader,
  'x-api-key': Type.String({ description: 'An API key of that organization (`pk_live_` + 64 hex); server-side only', examples: [EXAMPLE_KEY] })
})
const authNote = 'Authenticated by `X-API-Key` + `X-Org-Slug`: a missing, malformed, unknown, revoked or expired key, or a key of ' +
  'another organization, is 401 `Invalid API key` (code `invalid_api_key`) without saying which check failed; a ' +
  'suspended organization is 403 once the key is valid. No CORS headers are sent: keys never belong in a browser.'

const EXAMPLE_ORG = { id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', name: 'Acme Inc.', slug: 'acme', plan: 'pro', status: 'active', appUrl: 'https://app.acme.test', createdAt: '2025-05-23T12:00:00.000Z' }

export const getOrg = {
  tags,
  security,
  operationId: 'publicGetOrg',
  summary: 'Get your organization',
  description: "The API key's organization. " + authNote,
  headers,
  response: {
    200: withSuccessExample(Success(Type.Object({ org: Org })), { org: EXAMPLE_ORG }),
    ...errors(400, 401, 403, 503)
  }
}
