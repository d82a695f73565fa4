import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider, FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import cookie from '@fastify/cookie'
import type { DestinationStream } from 'pino'
import type { Config } from './config.ts'
import type { DatabaseHandle } from '../db/connect.ts'
import { ValidationFailed } from './errors.ts'
import { NOT_STORABLE, unstorablePath } from './unicode.ts'
import envelope, { frameworkErrors, wrapSuccess } from '../plugins/envelope.ts'
import swagger from '../plugins/swagger.ts'
import dbPlugin from '../plugins/db.ts'
import redisPlugin from '../plugins/redis.ts'
import failureLimiter from '../plugins/failure-limiter.ts'
import orgSlug from '../plugins/org-slug.ts'
import authJwt from '../plugins/auth-jwt.ts'
import publicCache from '../plugins/public-api/freshness.ts'
import keyBudgets from '../plugins/public-api/budget.ts'
import health from '../plugins/health.ts'
import drain from '../plugins/drain.ts'
import metrics, { metricsRoute } from '../plugins/metrics.ts'
import admin from '../plugins/admin.ts'
import auth from '../plugins/auth.ts'
import orgKeys from '../plugins/org-keys.ts'
import publicRoutes from '../plugins/public-api/index.ts'
import org from '../plugins/org.ts'
import { orgAuditEvents } from '../plugins/events/routes.ts'
import auditRetention from '../plugins/events/retention.ts'
import secretScanning from '../plugins/secret-scanning.ts'
import keyUsage, { keyUsageRoutes } from '../plugins/key-usage.ts'
import invites from '../plugins/invites/index.ts'
import webhooks from '../plugins/webhooks/index.ts'
import type { WebhookNetwork } from '../plugins/webhooks/sender.ts'

export interface BuildOptions {
  /** an already migrated database owned by the caller; otherwise one is opened from config */
  database?: DatabaseHandle
  /** where JSON log lines go (default stdout) */
  logStream?: DestinationStream
  /** human-readable, coloured log lines (pino-pretty in a worker thread) instead of JSON: for a terminal */
  prettyLogs?: boolean
  /** tests only: how webhook receivers' names resolve and which extra CA their certificates may chain to */
  webhookNetwork?: WebhookNetwork
}

// Never let a secret reach a log line, whatever a serializer or a handler logs. No path starts
// with a wildcard: pino then runs every child logger's bindings (a request id per request)
// through the redactor, ~1.4 µs per request; the objects that can carry a secret are named.
const SECRET_FIELDS = ['password', 'token', 'refreshToken', 'accessToken', 'key', 'apiKey']
export const REDACTED_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]',
  'res.headers["set-cookie"]', 'headers.authorization', 'headers.cookie', 'headers["x-api-key"]',
  ...SECRET_FIELDS,
  ...['body', 'data', 'payload', 'user', 'input', 'req.body'].flatMap(parent => SECRET_FIELDS.map(field => `${parent}.${field}`)),
  // Fastify logs a request Node's parser refused (oversized or malformed headers) with the raw
  // bytes received, credentials included (err.rawPacket, at trace level).
  'err.rawPacket'
]

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const logger: FastifyServerOptions['logger'] = {
    level: config.logLevel,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(options.logStream !== undefined && { stream: options.logStream }),
    ...(options.prettyLogs === true && options.logStream === undefined && {
      transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true } }
    })
  }
  const app = Fastify({
    logger,
    genReqId: requestIdGenerator(config.trustProxy),
    bodyLimit: config.bodyLimit,
    // A hop count is valid at run time (proxy-addr) though Fastify's types omit it.
    trustProxy: config.trustProxy as boolean | string,
    ...socketTimeouts(config),
    return503OnClosing: true,
    // A first embedded start makes the database (initdb, in a child process) and migrates it
    // inside the db plugin: seconds on a quiet machine, minutes on a slow or crowded one, where
    // Fastify's default of 10 s per plugin would abort the start.
    pluginTimeout: 600_000,
    frameworkErrors,
    ajv: { customOptions: { removeAdditional: true, coerceTypes: false, allErrors: false } }
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Every response, errors and 404s included (§1): the request id; nosniff; and no-store, since
  // tokens, keys and secrets must never sit in a cache (not on /docs, whose static files may be
  // cached; the docs plugin forbids framing them instead). One hook that already runs for every
  // response, so the cost is two header writes and a prefix test.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id)
    reply.header('x-content-type-options', 'nosniff')
    if (!request.url.startsWith('/docs')) reply.header('cache-control', 'no-store')
    done(null, payload)
  })

  // JSON is the only body type. An empty body with a JSON content type is treated as no body,
  // which is what curl and fetch send for a bodiless POST such as logout.
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (typeof body === 'string' && body.trim() === '') return done(null, undefined)
    // U+0000 and lone surrogates reach a parsed body only through \u escapes (the UTF-8 decoding
    // of the bytes makes U+FFFD of anything else): a body without one costs this scan alone.
    if (!(body as string).includes('\\u')) return parseJson(request, body as string, done)
    parseJson(request, body as string, (error, parsed) => {
      const path = error === null ? unstorablePath(parsed, 'body') : null
      if (path !== null) return done(new ValidationFailed(`${path} ${NOT_STORABLE}`), undefined)
      done(error, parsed)
    })
  })
  // The URL's part (path parameters, query string): a NUL arrives percent-encoded (%00); any
  // other refused string cannot be percent-encoded (invalid UTF-8 becomes U+FFFD), so a URL
  // without "%00" costs this test alone.
  app.addHook('preValidation', (request, _reply, done) => {
    if (!request.url.includes('%00') || !request.url.startsWith('/api/v1/')) return done()
    const path = unstorablePath(request.params, 'params') ?? unstorablePath(request.query, 'querystring')
    done(path === null ? undefined : new ValidationFailed(`${path} ${NOT_STORABLE}`))
  })

  await app.register(envelope)
  await app.register(drain)
  await app.register(dbPlugin, { config, database: options.database })
  await app.register(redisPlugin, { config })
  // Before every route (the docs' included), so each route's duration is measured under its pattern.
  await app.register(metrics, { config })
  await app.register(swagger)
  await app.register(failureLimiter, { config })
  await app.register(orgSlug)
  await app.register(authJwt, { config })
  await app.register(keyUsage)
  await app.register(auditRetention, { config })
  await app.register(publicCache, { config })
  await app.register(keyBudgets, { config })
  await app.register(health)
  await app.register(metricsRoute, { config })
  await app.register(apiV1, { prefix: '/api/v1', config, webhookNetwork: options.webhookNetwork })
  return app
}

interface SocketTimeouts {
  requestTimeout: number
  connectionTimeout: number
  keepAliveTimeout: number
  http: { requestTimeout: number, headersTimeout: number, connectionsCheckingInterval: number }
}

/**
 * Bound slow clients: the headers, then the whole request, must arrive in time (408 and close
 * otherwise), and idle sockets close. Node checks the first two every connectionsCheckingInterval
 * (30 s by default, which would let a slowloris client hold a socket for headersTimeout + 30 s):
 * check four times per headers timeout instead. (Exported for bench:floor, which pays what they cost.)
 */
export function socketTimeouts (config: Pick<Config, 'requestTimeoutMs' | 'headersTimeoutMs' | 'connectionTimeoutMs' | 'keepAliveTimeoutMs'>): SocketTimeouts {
  return {
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.connectionTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(config.headersTimeoutMs / 4)))
    }
  }
}

// Behind a proxy (TRUST_PROXY) the id it gave the request (X-Request-Id) follows the request
// into our log lines and back in the response, so one id traces it through both. It is
// checked before use (Fastify's requestIdHeader would take any value): it lands in every log
// line of the request, so it is short and of safe characters, or a fresh one is made.
const FORWARDED_REQUEST_ID = /^[A-Za-z0-9._:+=/-]{1,128}$/

function requestIdGenerator (trustProxy: Config['trustProxy']): (request: IncomingMessage) => string {
  if (trustProxy === false || trustProxy === 0) return () => randomUUID()
  return request => {
    const forwarded = request.headers['x-request-id']
    return typeof forwarded === 'string' && FORWARDED_REQUEST_ID.test(forwarded) ? forwarded : randomUUID()
  }
}

const apiV1: FastifyPluginAsyncTypebox<{ config: Config, webhookNetwork?: WebhookNetwork }> = async (app, { config, webhookNetwork }) => {
  app.addHook('preSerialization', wrapSuccess)
  await app.register(admin, { prefix: '/admin', config })
  await app.register(withUserSessions, { config, webhookNetwork })
  await app.register(publicRoutes, { prefix: '/public', config })
  await app.register(secretScanning, { config })
}

/** The routes of signed-in users: the only ones that read or set cookies, so only they pay for the cookie hooks. */
const withUserSessions: FastifyPluginAsyncTypebox<{ config: Config, webhookNetwork?: WebhookNetwork }> = async (app, { config, webhookNetwork }) => {
  await app.register(cookie)
  await app.register(auth, { prefix: '/auth', config })
  await app.register(orgKeys, { prefix: '/org', config })
  await app.register(keyUsageRoutes, { prefix: '/org' })
  await app.register(org, { prefix: '/org' })
  await app.register(orgAuditEvents, { prefix: '/org' })
  await app.register(invites, { config })
  await app.register(webhooks, { config, network: webhookNetwork })
}
