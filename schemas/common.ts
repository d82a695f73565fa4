import { Type, type Static, type TSchema, type TObject, type TString, type TUnsafe } from '@sinclair/typebox'
import { idPattern, type IdPrefix } from '../src/ids.ts'

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
export const Email = Type.String({ format: 'email', maxLength: 254, description: 'Email address (unique, case-insensitive)', examples: ['ada@acme.test'] })
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

/** `{ status: "success", data }` — what every /api/v1 route answers on success. */
export function Success<T extends TObject> (data: T, description = 'Success'): TObject {
  return Type.Object({ status: Type.Literal('success'), data }, { description })
}

/** A success schema carrying an example body (`{ status: "success", data }`) for the OpenAPI document. */
export function withSuccessExample<T extends TSchema> (schema: T, data: unknown): T {
  return { ...schema, examples: [{ status: 'success', data }] }
}

const ERROR_DESCRIPTIONS: Record<number, [string, string]> = {
  400: ['Validation failed, malformed JSON or a missing header', 'validation_failed'],
  401: ['Missing or invalid credentials', 'unauthorized'],
  403: ['Authenticated but not allowed, or the organization is suspended', 'forbidden'],
  404: ['No such resource', 'not_found'],
  409: ['Conflicts with the current state', 'conflict'],
  413: ['Body larger than the limit (16 KiB)', 'payload_too_large'],
  415: ['Body is not application/json', 'unsupported_media_type'],
  429: ['Too many requests; see Retry-After', 'rate_limited'],
  503: ['A backing store does not answer', 'unavailable']
}

/** Error responses of a route, each the error envelope with an example. */
export function errors (...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {}
  for (const status of statuses) {
    const [description, code] = ERROR_DESCRIPTIONS[status] ?? ['Error', 'error']
    out[status] = Type.Ref(ErrorResponse, { description, examples: [{ status: 'error', message: description, code }] })
  }
  return out
}

export const OrgSlugHeader = Type.String({ description: 'Slug of the organization the request is about', examples: ['acme'] })
