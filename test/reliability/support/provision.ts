import { adminHeaders, uniqueEmail, uniqueSlug } from '../../helper.ts'
import { request } from './http.ts'

export interface Tenant {
  slug: string
  orgId: string
  admin: { id: string, email: string, password: string }
  /** an access token of the admin, from POST /auth/login */
  accessToken: string
}

async function ok (what: string, promise: ReturnType<typeof request>, expected = [200, 201]): Promise<any> {
  const res = await promise
  if (!expected.includes(res.status)) throw new Error(`${what}: ${res.status} ${res.body}`)
  return res.json().data
}

/** An org with an org_admin who has logged in, made through the HTTP API of a running instance. */
export async function provisionTenant (base: string): Promise<Tenant> {
  const slug = uniqueSlug('rel')
  const { org } = await ok('create org', request(base, { method: 'POST', path: '/api/v1/admin/orgs', headers: adminHeaders, body: { slug, name: `Org ${slug}` } }))
  const admin = await createMember(base, slug, 'org_admin')
  const accessToken = await login(base, slug, admin)
  return { slug, orgId: org.id, admin, accessToken }
}

export async function createMember (base: string, slug: string, role: 'org_admin' | 'member'): Promise<{ id: string, email: string, password: string }> {
  const email = uniqueEmail('rel')
  const password = 'correct horse battery staple'
  const { user } = await ok('create user', request(base, { method: 'POST', path: '/api/v1/admin/users', headers: adminHeaders, body: { email, name: 'Reliability', password } }))
  await ok('add member', request(base, { method: 'POST', path: `/api/v1/admin/orgs/${slug}/members`, headers: adminHeaders, body: { userId: user.id, role } }))
  return { id: user.id, email, password }
}

export async function login (base: string, slug: string, user: { email: string, password: string }): Promise<string> {
  const data = await ok('login', request(base, { method: 'POST', path: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, body: { email: user.email, password: user.password } }))
  return data.accessToken
}

export async function createApiKey (base: string, tenant: Tenant, name = 'reliability'): Promise<{ key: string, id: string }> {
  const data = await ok('create API key', request(base, { method: 'POST', path: '/api/v1/org/api-keys', headers: { authorization: `Bearer ${tenant.accessToken}`, 'x-org-slug': tenant.slug }, body: { name } }))
  return { key: data.key, id: data.apiKey.id }
}

export function keyHeaders (tenant: { slug: string }, key: string): Record<string, string> {
  return { 'x-org-slug': tenant.slug, 'x-api-key': key }
}
