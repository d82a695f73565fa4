import { randomBytes } from 'node:crypto'
import type { HttpClient, HttpResponse } from './http-client.ts'

export interface BenchFixture {
  org: { id: string, slug: string }
  user: { id: string, email: string }
  accessToken: string
  apiKey: string
  /** a key with every scope and a 10-entry allowlist whose match (127.0.0.0/8) comes last: §9's checks at their dearest */
  restrictedApiKey: string
}

/** Nine entries the bench client never matches, then its own block: every entry of its family is tried. */
export const RESTRICTED_ALLOWED_IPS = [
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '198.51.100.7', '2001:db8::/32',
  '2001:db8:ffff::1', 'fd00::/8', '203.0.113.0/24', '100.64.0.0/10', '127.0.0.0/8'
]

const PASSWORD = 'bench-password-0123456789'

/**
 * An org, an org_admin user, an access token and an API key, made as an integrator would:
 * the admin API, POST /auth/login, POST /org/api-keys.
 */
export async function bootstrap (http: HttpClient, adminToken: string): Promise<BenchFixture> {
  const admin = { authorization: `Bearer ${adminToken}` }
  const suffix = randomBytes(4).toString('hex')
  const slug = `bench-${suffix}`
  const email = `bench-${suffix}@example.test`

  const org = expect(await http({ method: 'POST', url: '/api/v1/admin/orgs', headers: admin, body: { slug, name: 'Bench Org', plan: 'pro', appUrl: 'https://bench.example.test' } }), 201, 'create org').data.org
  const user = expect(await http({ method: 'POST', url: '/api/v1/admin/users', headers: admin, body: { email, name: 'Bench User', password: PASSWORD } }), 201, 'create user').data.user
  expect(await http({ method: 'POST', url: `/api/v1/admin/orgs/${slug}/members`, headers: admin, body: { userId: user.id, role: 'org_admin' } }), 201, 'add member')
  const accessToken: string = expect(await http({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, body: { email, password: PASSWORD } }), 200, 'login').data.accessToken
  const keyRoute = { method: 'POST' as const, url: '/api/v1/org/api-keys', headers: { 'x-org-slug': slug, authorization: `Bearer ${accessToken}` } }
  const apiKey: string = expect(await http({ ...keyRoute, body: { name: 'bench' } }), 201, 'create API key').data.key
  const restrictedApiKey: string = expect(await http({
    ...keyRoute,
    body: { name: 'bench restricted', scopes: ['tokens:verify', 'users:read', 'org:read'], allowedIps: RESTRICTED_ALLOWED_IPS }
  }), 201, 'create restricted API key').data.key
  return { org: { id: org.id, slug }, user: { id: user.id, email }, accessToken, apiKey, restrictedApiKey }
}

function expect (response: HttpResponse, status: number, what: string): any {
  if (response.status !== status) throw new Error(`bench bootstrap: ${what} answered ${response.status}: ${JSON.stringify(response.body)}`)
  return response.body
}
