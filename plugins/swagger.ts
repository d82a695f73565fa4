import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { ErrorResponse, frameworkErrors } from '../schemas/common.ts'

async function swaggerPlugin (app: FastifyInstance): Promise<void> {
  app.addSchema(ErrorResponse)
  // What Fastify answers before a handler runs is part of every route's contract: documented
  // here once, so a route added later documents it without knowing (the tests check every answer
  // against the document).
  app.addHook('onRoute', route => {
    const response = route.schema?.response as Record<string, unknown> | undefined
    if (response === undefined || !route.url.startsWith('/api/v1/')) return
    const missing = Object.entries(frameworkErrors(route)).filter(([status]) => !(status in response))
    if (missing.length > 0) route.schema = { ...route.schema, response: { ...response, ...Object.fromEntries(missing) } }
  })
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tenantkey',
        version: '1.0.0',
        description: 'Self-hostable multi-tenant B2B auth: organizations, users, memberships, login tokens, ' +
          'and org-scoped API keys (`pk_live_…`) that let your backend verify user tokens and read org data ' +
          'through `/api/v1/public/*`. Every `/api/v1` success is `{ "status": "success", "data": … }`; every ' +
          'error is `{ "status": "error", "message", "code" }`.',
        license: { name: 'MIT', identifier: 'MIT' }
      },
      // Relative: the instance that serves this document (and Swagger UI's "Try it out") is the server.
      servers: [{ url: '/', description: 'The tenantkey instance serving this document' }],
      tags: [
        { name: 'Public', description: 'Server-to-server, authenticated by `X-API-Key` + `X-Org-Slug`. Rate-limited per key.' },
        { name: 'API keys', description: 'Create, list and revoke org API keys (org_admin only).' },
        { name: 'Auth', description: 'Login, refresh, logout, current user.' },
        { name: 'Org', description: 'The organization and its members.' },
        { name: 'Invitations', description: 'Org admins invite colleagues by email; the invitee accepts and is logged in.' },
        { name: 'Admin', description: 'Platform operator API, authenticated by `ADMIN_TOKEN`.' },
        { name: 'Operations', description: 'Liveness, readiness and Prometheus metrics.' }
      ],
      components: {
        securitySchemes: {
          apiKey: {
            type: 'apiKey',
            in: 'header',
            name: 'X-API-Key',
            description: 'An org API key from `POST /api/v1/org/api-keys`: `pk_live_` + 64 lowercase hex, e.g. ' +
              '`pk_live_a3f8b2c1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c75c030aba`. Server-side only; sent with `X-Org-Slug`.'
          },
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'User access token from /auth/login' },
          cookieAuth: { type: 'apiKey', in: 'cookie', name: 'access_token', description: 'Access-token cookie set by /auth/login' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'The platform ADMIN_TOKEN' },
          metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN, when set, for scraping /metrics' }
        }
      }
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
    }
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true, tryItOutEnabled: true },
    // No page may frame the docs (clickjacking "Try it out" with a pasted token): the CSP for
    // browsers that know frame-ancestors, X-Frame-Options for those that do not.
    staticCSP: "frame-ancestors 'none'; base-uri 'self'; object-src 'none'",
    uiHooks: {
      onRequest: (_request, reply, done) => {
        reply.header('x-frame-options', 'DENY')
        done()
      }
    }
  })
}

export default fp(swaggerPlugin, { name: 'swagger', fastify: '5.x' })
