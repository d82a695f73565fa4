import { createHmac, randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import { insertSession } from '../../db/queries/sessions.ts'
import { newId } from '../../src/ids.ts'
import type { HttpClient, HttpResponse } from './http-client.ts'

export interface BenchFixture {
  org: { id: string, slug: string }
  user: { id: string, email: string }
  accessToken: string
  apiKey: string
  /** how each credential was obtained: through the public HTTP API, or directly in the app process */
  via: { accessToken: 'http' | 'direct', apiKey: 'http' | 'direct' }
}

export interface PrincipalIds { userId: string, orgId: string, slug: string, role: 'org_admin' | 'member' }

/** What the bootstrap does inside the app process while /auth/login or /org/api-keys are not on main yet. */
export interface DirectFallback {
  accessToken: (input: PrincipalIds) => Promise<string>
  apiKey: (input: PrincipalIds) => Promise<string>
}

const PASSWORD = 'bench-password-0123456789'

/**
 * An org, an org_admin user, an access token and an API key, made through the HTTP API:
 * admin API, POST /auth/login, POST /org/api-keys. A route that does not exist yet answers
 * Fastify's "Route … not found" and the fallback makes that credential instead.
 */
export async function bootstrap (http: HttpClient, adminToken: string, fallback: DirectFallback): Promise<BenchFixture> {
  const admin = { authorization: `Bearer ${adminToken}` }
  const suffix = randomBytes(4).toString('hex')
  const slug = `bench-${suffix}`
  const email = `bench-${suffix}@example.test`

  const org = expect(await http({ method: 'POST', url: '/api/v1/admin/orgs', headers: admin, body: { slug, name: 'Bench Org', plan: 'pro', appUrl: 'https://bench.example.test' } }), 201, 'create org').data.org
  const user = expect(await http({ method: 'POST', url: '/api/v1/admin/users', headers: admin, body: { email, name: 'Bench User', password: PASSWORD } }), 201, 'create user').data.user
  expect(await http({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: admin, body: { userId: user.id, role: 'org_admin' } }), 201, 'add member')
  const ids: PrincipalIds = { userId: user.id, orgId: org.id, slug, role: 'org_admin' }

  let accessToken: string
  let tokenVia: BenchFixture['via']['accessToken'] = 'http'
  const login = await http({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, body: { email, password: PASSWORD } })
  if (isMissingRoute(login)) {
    accessToken = await fallback.accessToken(ids)
    tokenVia = 'direct'
  } else {
    accessToken = expect(login, 200, 'login').data.accessToken
  }

  let apiKey: string
  let keyVia: BenchFixture['via']['apiKey'] = 'http'
  const created = await http({ method: 'POST', url: '/api/v1/org/api-keys', headers: { 'x-org-slug': slug, authorization: `Bearer ${accessToken}` }, body: { name: 'bench' } })
  if (isMissingRoute(created)) {
    apiKey = await fallback.apiKey(ids)
    keyVia = 'direct'
  } else {
    apiKey = expect(created, 201, 'create API key').data.key
  }

  return { org: { id: org.id, slug }, user: { id: user.id, email }, accessToken, apiKey, via: { accessToken: tokenVia, apiKey: keyVia } }
}

function isMissingRoute (response: HttpResponse): boolean {
  return response.status === 404 && typeof response.body?.message === 'string' && response.body.message.startsWith('Route ')
}

function expect (response: HttpResponse, status: number, what: string): any {
  if (response.status !== status) throw new Error(`bench bootstrap: ${what} answered ${response.status}: ${JSON.stringify(response.body)}`)
  return response.body
}

/** A session and its access token, and an API key row, written straight into the app's database. */
export function directFallback (app: FastifyInstance, secrets: { apiKeyPepper: string }): DirectFallback {
  return {
    async accessToken (ids) {
      const sessionId = newId('ses')
      await insertSession(app.db, { id: sessionId, orgId: ids.orgId, userId: ids.userId, expiresAt: new Date(Date.now() + 86400_000) })
      return app.issueAccessToken({ ...ids, sessionId })
    },
    async apiKey (ids) {
      // The contract's format: pk_live_ + 56 random hex + CRC32 (8 hex) of everything before it.
      const body = `pk_live_${randomBytes(28).toString('hex')}`
      const key = body + crc32(body).toString(16).padStart(8, '0')
      await app.db.insertInto('api_keys').values({
        id: newId('key'),
        org_id: ids.orgId,
        name: 'bench',
        prefix: key.slice(0, 10),
        key_hash: createHmac('sha256', secrets.apiKeyPepper).update(key).digest('hex'),
        created_by: ids.userId
      }).execute()
      return key
    }
  }
}
