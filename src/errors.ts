import createError from '@fastify/error'

// Domain errors: each has an HTTP status and a stable snake_case `code` that the
// error handler renders as `{ status: "error", message, code }`. `%s` takes a detail.
export const ValidationFailed = createError('validation_failed', '%s', 400)
export const BadRequest = createError('bad_request', '%s', 400)
// One answer for every unusable invitation token (unknown, expired, revoked, used, superseded, another org's).
export const InvalidInvite = createError('invalid_invite', 'Invalid or expired invitation', 400)
export const Unauthorized = createError('unauthorized', '%s', 401)
export const InvalidApiKey = createError('invalid_api_key', 'Invalid API key', 401)
export const InvalidCredentials = createError('invalid_credentials', 'Invalid email or password', 401)
export const Forbidden = createError('forbidden', '%s', 403)
// An API key that is valid but may not make this request (§9): not on its allowlist, or without the route's scope.
export const IpNotAllowed = createError('ip_not_allowed', '%s', 403)
export const InsufficientScope = createError('insufficient_scope', '%s', 403)
export const OrgSuspended = createError('org_suspended', 'Organization is suspended', 403)
export const NotFound = createError('not_found', '%s', 404)
export const Conflict = createError('conflict', '%s', 409)
export const RateLimited = createError('rate_limited', '%s', 429)
export const Unavailable = createError('unavailable', 'Service temporarily unavailable: a backing store does not answer', 503)
