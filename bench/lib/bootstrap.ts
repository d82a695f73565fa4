import { randomBytes } from 'node:crypto'
import type { HttpClient, HttpResponse } from './http-client.ts'

export interface BenchFixture {
  org: { id: string, slug: string }
  user: { id: string, email: string }
  accessToken: string
  apiKey: string
}

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
  const apiKey: string = expect(await http({ method: 'POST', url: '/api/v1/org/api-keys', headers: { 'x-org-slug': slug, authorization: `Bearer ${accessToken}` }, body: { name: 'bench' } }), 201, 'create API key').data.key
  return { org: { id: org.id, slug }, user: { id: user.id, email }, accessToken, apiKey }
}

function expect (response: HttpResponse, status: number, what: string): any {
  if (response.status !== status) throw new Error(`bench bootstrap: ${what} answered ${response.status}: ${JSON.stringify(response.body)}`)
  return response.body
}
