import { Type } from '@sinclair/typebox'
import { Success, StringEnum, Timestamp, errorResponse, withSuccessExample } from './common.ts'
import { guardErrors, headers, roleNote, security } from './api-keys.ts'

const Count = (description: string) => Type.Integer({ minimum: 0, description })

export const UsageBucket = Type.Object({
  start: Timestamp,
  total: Count('Every /public request the key authenticated in this bucket'),
  success: Count('Answered 2xx'),
  clientError: Count('Answered 4xx other than 403 and 429 (e.g. 404 for an unknown user, 400 for a bad body)'),
  forbidden: Count('Answered 403: the caller\'s address is not in the allowlist, or the key lacks the route\'s scope'),
  rateLimited: Count('Answered 429: over the key\'s budget'),
  tokensValid: Count('POST /public/verify answers with valid: true'),
  tokensInvalid: Count('POST /public/verify answers with valid: false')
}, { description: 'One hour or day of a key\'s use, starting at `start` (UTC)' })

export const MAX_BUCKETS = 744

export const getApiKeyUsage = {
  tags: ['API keys'],
  security,
  operationId: 'getApiKeyUsage',
  summary: 'How a key is used',
  description: 'Counts of the /public requests a key authenticated, by outcome, in hourly or daily buckets (UTC), ' +
    'oldest first, one bucket for every hour or day of the range, zeros included. `since` and `until` default to the ' +
    `last 24 hours; \`since\` is rounded down to its bucket; at most ${MAX_BUCKETS} buckets (400 beyond). Requests ` +
    'refused with 401 are not counted (no key authenticated them). Each instance of the service adds its counts at ' +
    'least once a minute, so figures are within 60 s of the truth; buckets are kept 90 days. ' + roleNote,
  headers,
  params: Type.Object({ keyId: Type.String({ minLength: 1, maxLength: 64, description: 'API key id', examples: ['key_01JZ8Q4K7X3W5N2M9B6V1C0D8E'] }) }),
  querystring: Type.Object({
    since: Type.Optional(Type.String({ format: 'date-time', description: 'Start of the range, ISO 8601 (default: 24 hours before `until`)', examples: ['2025-05-23T00:00:00.000Z'] })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'End of the range (exclusive), ISO 8601 (default: now)', examples: ['2025-05-24T00:00:00.000Z'] })),
    granularity: Type.Optional(StringEnum(['hour', 'day'], { description: 'Bucket size: hour (default) or day' }))
  }, { additionalProperties: false }),
  response: {
    200: withSuccessExample(Success(Type.Object({ usage: Type.Array(UsageBucket) })), {
      usage: [{ start: '2025-05-23T12:00:00.000Z', total: 1204, success: 1170, clientError: 12, forbidden: 2, rateLimited: 20, tokensValid: 1100, tokensInvalid: 40 }]
    }),
    ...guardErrors,
    ...errorResponse(400, ['querystring.since must be before until', 'validation_failed'], [`querystring.since: the range holds more than ${MAX_BUCKETS} buckets`, 'validation_failed'], ['Missing X-Org-Slug header', 'validation_failed']),
    ...errorResponse(404, ['API key not found', 'not_found'], ['Organization not found', 'not_found'])
  }
}
