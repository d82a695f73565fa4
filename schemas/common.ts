import { Type, type Static, type TSchema, type TString, type TUnsafe } from '@sinclair/typebox'
import { idPattern, type IdPrefix } from '../src/ids.ts'
import { NOT_STORABLE } from '../src/unicode.ts'

export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601 UTC timestamp with milliseconds', examples: ['2025-05-23T12:00:00.000Z'] })
// Response schemas avoid anyOf: fast-json-stringify picks an anyOf branch by running the validator
// on the value for every response, where a type list or an enum costs a typeof or nothing.

/** A string or null, as one JSON Schema type list (`["string", "null"]`) rather than an anyOf. */
export function NullableString<T extends TString> (schema: T, options: { description: string, examples?: unknown[] }): TUnsafe<Static<T> | null> {
  return Type.Unsafe<Static<T> | null>({ ...schema, type: ['string', 'null'], ...options })
}

/** One of a few strings, as a JSON Schema enum rather than an anyOf of literals. */
export function StringEnum<const T extends readonly string[]> (values: T, options: { description: string }): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options })
}

export const NullableTimestamp = NullableString(Timestamp, { description: 'ISO 8601 UTC timestamp with milliseconds, or null', examples: [null] })

export function Id (prefix: IdPrefix, description: string): TString {
  return Type.String({ pattern: idPattern(prefix), description, examples: [`${prefix}_01JZ8Q4K7X3W5N2M9B6V1C0D8E`] })
}

export const Slug = Type.String({
  pattern: '^[a-z0-9-]{3,48}$',
  minLength: 3,
  maxLength: 48,
  description: 'URL-safe organization identifier: lowercase letters, digits and hyphens, 3–48 characters',
  examples: ['acme']
})
/**
 * The one rule for an email address, for the API's schemas and the operator CLI alike (the CLI
 * checks values against these same schemas): ASCII dot-atoms before the @ (no leading, trailing
 * or doubled dot), DNS labels after it. `format: 'email'` alone left the rule to each validator:
 * the CLI's looser one created admins (`josé@acme.test`, `a..b@acme.test`) who could never log in.
 * Labels are bounded (≤ 63 characters), so the pattern cannot backtrack badly.
 */
const EMAIL_ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
const DNS_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
export const EMAIL_PATTERN = `^${EMAIL_ATOM}(?:\\.${EMAIL_ATOM})*@(?:${DNS_LABEL}\\.)+${DNS_LABEL}$`
const emailRegExp = new RegExp(EMAIL_PATTERN, 'u')
export function isEmail (value: string): boolean {
  return value.length <= 254 && emailRegExp.test(value)
}
export const Email = Type.String({ format: 'email', pattern: EMAIL_PATTERN, maxLength: 254, description: 'Email address (unique, case-insensitive)', examples: ['ada@acme.test'] })
export const OrgRole = StringEnum(['org_admin', 'member'], { description: 'Role in the organization' })
export const ActiveStatus = StringEnum(['active', 'suspended'], { description: 'active or suspended' })

export const Org = Type.Object({
  id: Id('org', 'Organization id'),
  slug: Slug,
  name: Type.String({ description: 'Display name', examples: ['Acme Inc.'] }),
  plan: Type.String({ description: 'Plan, e.g. free, pro, enterprise', examples: ['pro'] }),
  status: ActiveStatus,
  appUrl: NullableString(Type.String({ format: 'uri' }), { description: 'The org application URL, or null', examples: ['https://app.acme.test'] }),
  createdAt: Timestamp
}, { description: 'An organization (tenant)' })

export const PublicUser = Type.Object({
  id: Id('usr', 'User id'),
  name: Type.String({ description: 'Full name', examples: ['Ada Lovelace'] }),
  email: Type.String({ description: 'Email address', examples: ['ada@acme.test'] }),
  role: Type.String({ description: 'Global role (always user)', examples: ['user'] }),
  isEmailVerified: Type.Boolean({ description: 'Whether the email address is verified' })
}, { description: 'A user account' })

export const Membership = Type.Object({
  role: OrgRole,
  status: ActiveStatus,
  joinedAt: Timestamp
}, { description: "The user's membership in the organization" })

export const ErrorResponse = Type.Object({
  status: Type.Literal('error'),
  message: Type.String({ description: 'Human-readable explanation; validation errors name the offending field' }),
  code: Type.String({ description: 'Stable machine-readable snake_case code', examples: ['validation_failed'] })
}, { $id: 'ErrorResponse', description: 'Error envelope' })

/**
 * `{ status: "success", data }` — what every /api/v1 route answers on success. The schema is the
 * envelope (what is serialized and documented), its static type is `data`'s: a handler returns the
 * data and the envelope plugin wraps it (wrapSuccess), so tsc checks each handler's return value
 * against the documented response.
 */
export function Success<T extends TSchema> (data: T, options: string | SuccessOptions = 'Success'): TUnsafe<Static<T>> {
  return Type.Unsafe<Static<T>>(Type.Object({ status: Type.Literal('success'), data }, typeof options === 'string' ? { description: options } : options))
}

/** What a success response documents beside its body. */
export interface SuccessOptions {
  description: string
  headers?: Record<string, unknown>
  examples?: unknown[]
}

/** A success schema carrying an example body (`{ status: "success", data }`) for the OpenAPI document. */
export function withSuccessExample<T extends TSchema> (schema: T, data: unknown): T {
  return { ...schema, examples: [{ status: 'success', data }] }
}

/** What a status means, and a realistic answer for it when a route gives none of its own. */
const ERROR_DEFAULTS: Record<number, { description: string, example: ErrorExample }> = {
  400: { description: 'Validation failed, malformed JSON or a missing header', example: ['Missing X-Org-Slug header', 'validation_failed'] },
  401: { description: 'Missing or invalid credentials', example: ['Invalid or expired access token', 'unauthorized'] },
  403: { description: 'Authenticated but not allowed, or the organization is suspended', example: ['Organization is suspended', 'org_suspended'] },
  404: { description: 'No such resource', example: ['Organization not found', 'not_found'] },
  409: { description: 'Conflicts with the current state', example: ['Conflicts with the current state', 'conflict'] },
  413: { description: 'Body larger than the limit (16 KiB)', example: ['Request body is too large', 'payload_too_large'] },
  414: { description: 'A path parameter is longer than any valid value', example: ['A path parameter is too long', 'uri_too_long'] },
  415: { description: 'Body is not application/json', example: ['Unsupported Content-Type: send application/json', 'unsupported_media_type'] },
  429: { description: 'Too many requests; see Retry-After', example: ['Too many requests; try again in 60 seconds', 'rate_limited'] },
  503: { description: 'A backing store does not answer; retry after a few seconds', example: ['Service temporarily unavailable: a backing store does not answer', 'unavailable'] }
}

/** `[message, code]` of an error answer, exactly as the route sends it. */
export type ErrorExample = [message: string, code: string]

/**
 * One error response: the error envelope (a reference to ErrorResponse, wrapped in allOf so the
 * examples stay beside it in the OpenAPI document) with one realistic example per cause, named by
 * its code and summarised by its message in Swagger UI's example menu.
 */
/** An error response's schema: the envelope's static type, so a route's reply type stays exact. */
export type ErrorSchema = TUnsafe<Static<typeof ErrorResponse>>
export type ErrorResponses = Record<number, ErrorSchema>

export function errorResponse (status: number, ...examples: ErrorExample[]): ErrorResponses {
  const known = ERROR_DEFAULTS[status] ?? { description: 'Error', example: ['Error', 'error'] }
  const shown = examples.length > 0 ? examples : [known.example]
  const named: Record<string, { summary: string, value: Static<typeof ErrorResponse> }> = {}
  for (const [message, code] of shown) {
    let name = code
    for (let n = 2; name in named; n++) name = `${code}_${n}`
    named[name] = { summary: message, value: { status: 'error', message, code } }
  }
  return {
    [status]: Type.Unsafe<Static<typeof ErrorResponse>>({
      allOf: [Type.Ref(ErrorResponse)],
      description: known.description,
      'x-examples': named
    })
  }
}

/**
 * The errors Fastify itself may answer on an /api/v1 route before its handler runs, for the ones
 * a route schema leaves out: U+0000 in the query string (400, any route: §1), a malformed or
 * overlong path parameter (400, 414), a body that is not JSON, too large or of another type (400,
 * 413, 415; any method but GET and HEAD parses a body), and a store that does not answer (503).
 * The swagger plugin adds them to every route.
 */
export function frameworkErrors (route: { method: string | string[], url: string }): ErrorResponses {
  const statuses = [503]
  const badRequest: ErrorExample[] = [[`querystring.q ${NOT_STORABLE}`, 'validation_failed']]
  if (route.url.includes(':')) statuses.push(414)
  const methods = [route.method].flat()
  if (methods.some(method => method !== 'GET' && method !== 'HEAD')) {
    statuses.push(413, 415)
    badRequest.push(['Body is not valid JSON', 'invalid_json'])
  }
  return { ...errors(...statuses), ...errorResponse(400, ...badRequest) }
}

/** Error responses of a route with the default example of each status; override with errorResponse. */
export function errors (...statuses: number[]): ErrorResponses {
  return Object.assign({}, ...statuses.map(status => errorResponse(status)))
}

/**
 * The `security` of an operation anyone may call (login, refresh, health checks): said explicitly,
 * so the document states that no credential is needed rather than leaving it open.
 */
export const NoAuth: Array<Record<string, string[]>> = []

/**
 * 408: answered by the HTTP server itself, before any route runs, when a request has not arrived
 * whole within REQUEST_TIMEOUT (its headers within HEADERS_TIMEOUT); the connection is then closed.
 * Any route can get it; the routes outside /api/v1, which have no client error of their own, document it.
 */
export const RequestTimeoutResponse = {
  408: Type.Object({
    error: Type.Literal('Request Timeout', { description: 'The HTTP status text' }),
    message: Type.Literal('Client Timeout', { description: 'Always "Client Timeout"' }),
    statusCode: Type.Literal(408, { description: 'The HTTP status' })
  }, {
    description: 'The request did not arrive whole within REQUEST_TIMEOUT (or its headers within HEADERS_TIMEOUT); the connection is closed',
    examples: [{ error: 'Request Timeout', message: 'Client Timeout', statusCode: 408 }]
  })
}

export const OrgSlugHeader = Type.String({ description: 'Slug of the organization the request is about', examples: ['acme'] })
