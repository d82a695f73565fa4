import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { EMAIL_PATTERN } from '../schemas/common.ts'

interface RenderedError { statusCode: number, code: string, message: string }

// Fastify's own client errors, given a stable code and a message a person can act on.
const FASTIFY_CLIENT_ERRORS: Record<string, { code: string, message?: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'unsupported_media_type', message: 'Unsupported Content-Type: send application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'bad_request', message: 'Content-Length does not match the body' },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'payload_too_large', message: 'Request body is too large' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'invalid_json', message: 'Body is empty but Content-Type is application/json' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'invalid_json', message: 'Body is not valid JSON' },
  FST_ERR_CTP_INVALID_TYPE: { code: 'unsupported_media_type', message: 'Invalid Content-Type header' },
  FST_ERR_BAD_URL: { code: 'bad_request', message: 'Malformed URL' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'uri_too_long', message: 'A path parameter is too long' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'bad_request' }
}

// PostgreSQL connection failures (class 08, admin shutdown 57P01, cannot connect 57P03)
// and socket errors: the store is down, which is a 503, never a 500.
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '53300'])
const UNAVAILABLE_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connect ECONNREFUSED|Client has encountered a connection error|Connection is closed|terminating connection|PGlite is closed/i

export function isStoreUnavailable (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { code, message } = error as { code?: unknown, message?: unknown }
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message)
}

export function renderError (error: FastifyError): RenderedError {
  if (error.validation !== undefined) {
    return { statusCode: 400, code: 'validation_failed', message: validationMessage(error) }
  }
  const known = FASTIFY_CLIENT_ERRORS[error.code]
  if (known !== undefined) {
    return { statusCode: error.statusCode ?? 400, code: known.code, message: known.message ?? error.message }
  }
  if (error instanceof SyntaxError && (error.statusCode === 400 || error.message.includes('JSON'))) {
    return { statusCode: 400, code: 'invalid_json', message: 'Body is not valid JSON' }
  }
  const status = error.statusCode ?? 500
  if (status >= 400 && status < 500) {
    // @fastify/error upper-cases codes; ours are snake_case words, Fastify's own start with FST_.
    const code = typeof error.code === 'string' && /^[A-Za-z][A-Za-z0-9_]*$/.test(error.code) && !error.code.startsWith('FST_')
      ? error.code.toLowerCase()
      : 'bad_request'
    return { statusCode: status, code, message: error.message }
  }
  if (status === 503 || isStoreUnavailable(error)) {
    return { statusCode: 503, code: 'unavailable', message: 'Service temporarily unavailable: a backing store does not answer' }
  }
  return { statusCode: 500, code: 'internal_error', message: 'Internal Server Error' }
}

function validationMessage (error: FastifyError): string {
  const first = error.validation?.[0]
  if (first === undefined) return error.message
  const context = error.validationContext ?? 'request'
  const params = first.params as Record<string, unknown>
  const missing = typeof params?.missingProperty === 'string' ? params.missingProperty : undefined
  const path = (first.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.')
  if (missing !== undefined) {
    const field = path === '' ? missing : `${path}.${missing}`
    return context === 'headers' ? `Missing ${field} header` : `${context}.${field} is required`
  }
  if (path === '' && context === 'body' && first.keyword === 'type') return 'Request body must be a JSON object'
  const field = path === '' ? context : `${context}.${path}`
  // Ajv says only "must be equal to one of the allowed values": name them.
  if (first.keyword === 'enum' && Array.isArray(params?.allowedValues)) return `${field} must be one of: ${params.allowedValues.join(', ')}`
  // The email rule is a pattern too long to read in a message: say what it means.
  if (first.keyword === 'pattern' && params?.pattern === EMAIL_PATTERN) return `${field} must match format "email"`
  return `${field} ${first.message ?? 'is invalid'}`
}

async function envelope (app: FastifyInstance): Promise<void> {
  app.setErrorHandler(function errorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    const rendered = renderError(error)
    if (rendered.statusCode >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else if (rendered.statusCode !== 404 && rendered.statusCode !== 401) {
      request.log.info({ code: rendered.code, statusCode: rendered.statusCode }, rendered.message)
    }
    if (rendered.statusCode === 503) reply.header('retry-after', '5')
    return reply.code(rendered.statusCode).send({ status: 'error', message: rendered.message, code: rendered.code })
  })

  app.setNotFoundHandler(function notFound (request, reply) {
    return reply.code(404).send({ status: 'error', message: `Route ${request.method} ${request.url.split('?')[0]} not found`, code: 'not_found' })
  })
}

/**
 * Fastify's `frameworkErrors` option: a malformed URL or an overlong path parameter is
 * answered before routing, where the error handler does not run; render it the same way.
 */
export function frameworkErrors (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const rendered = renderError(error)
  // No onSend hook runs for these answers: the headers every response carries (app.ts), here.
  reply.header('x-request-id', request.id).header('x-content-type-options', 'nosniff').header('cache-control', 'no-store')
  reply.code(rendered.statusCode).send({ status: 'error', message: rendered.message, code: rendered.code })
}

export default fp(envelope, { name: 'envelope', fastify: '5.x' })

/**
 * preSerialization hook for an API scope: wraps what a route returns as `{ status: "success", data }`.
 * Callback style: on the hot path an async hook costs a promise and a microtask per request.
 */
// Our data is always an object; the one route that answers an array speaks GitHub's secret-scanning
// format, which is not ours to wrap.
export function wrapSuccess (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: null, payload: unknown) => void): void {
  done(null, reply.statusCode >= 400 || Array.isArray(payload) ? payload : { status: 'success', data: payload })
}
