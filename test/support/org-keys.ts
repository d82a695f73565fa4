import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { createOrgWithMember, sessionToken, type Fixture } from '../helper.ts'

// Requests of the /org/api-keys tests: an org admin's headers, the key routes, the key's events.

export interface OrgAdmin extends Fixture { headers: Record<string, string> }

/** A fresh org and a member of it in `role`, with the headers of a live session. */
export async function orgAdmin (app: FastifyInstance, role: 'org_admin' | 'member' = 'org_admin'): Promise<OrgAdmin> {
  const fixture = await createOrgWithMember(app, role)
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role })
  return { ...fixture, headers: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug } }
}

/** The key routes as `admin`, answering raw responses. */
export function keyRoutes (app: FastifyInstance, admin: OrgAdmin) {
  const base = '/api/v1/org/api-keys'
  return {
    create: (payload: object): Promise<LightMyRequestResponse> => app.inject({ method: 'POST', url: base, headers: admin.headers, payload }),
    list: (): Promise<LightMyRequestResponse> => app.inject({ method: 'GET', url: base, headers: admin.headers }),
    get: (id: string): Promise<LightMyRequestResponse> => app.inject({ method: 'GET', url: `${base}/${id}`, headers: admin.headers }),
    patch: (id: string, payload: object): Promise<LightMyRequestResponse> => app.inject({ method: 'PATCH', url: `${base}/${id}`, headers: admin.headers, payload }),
    rotate: (id: string, payload?: object): Promise<LightMyRequestResponse> => app.inject({ method: 'POST', url: `${base}/${id}/rotate`, headers: admin.headers, ...(payload !== undefined && { payload }) }),
    revoke: (id: string): Promise<LightMyRequestResponse> => app.inject({ method: 'DELETE', url: `${base}/${id}`, headers: admin.headers })
  }
}

/** A created key (201 or it throws): the raw key and the key object. */
export async function createdKey (app: FastifyInstance, admin: OrgAdmin, payload: object = {}): Promise<{ key: string, apiKey: Record<string, any> }> {
  const res = await keyRoutes(app, admin).create({ name: 'Test key', ...payload })
  if (res.statusCode !== 201) throw new Error(`create api key: ${res.statusCode} ${res.body}`)
  return res.json().data
}

/** The audit events about a key (as target), oldest first. */
export async function keyEvents (app: FastifyInstance, keyId: string) {
  return await app.db.selectFrom('audit_events').selectAll().where('target_id', '=', keyId).orderBy('created_at').orderBy('id').execute()
}

/** GET /public/org with a key, from a client address. */
export function publicOrg (app: FastifyInstance, admin: OrgAdmin, key: string, remoteAddress = '127.0.0.1'): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': admin.org.slug, 'x-api-key': key }, remoteAddress })
}
