import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { adminHeaders, createOrgWithMember, sessionToken } from '../helper.ts'
import { nextIp } from '../auth-helpers.ts'

// Requests of the invitation tests (§12), shared by the API and the mail test files.

export interface OrgAdmin {
  org: { id: string, slug: string }
  admin: { id: string, email: string, password: string, token: string }
}

/** An org (with `appUrl` when given) and its org_admin with a session token. */
export async function orgWithAdmin (app: FastifyInstance, changes: { appUrl?: string, name?: string } = {}): Promise<OrgAdmin> {
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  if (Object.keys(changes).length > 0) {
    const res = await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${org.slug}`, headers: adminHeaders, payload: changes })
    if (res.statusCode !== 200) throw new Error(`update org: ${res.statusCode} ${res.body}`)
  }
  const { token } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'org_admin' })
  return { org, admin: { ...user, token } }
}

export function asUser (app: FastifyInstance, slug: string, token: string) {
  const headers = { 'x-org-slug': slug, authorization: `Bearer ${token}` }
  return {
    invite: (payload: object): Promise<LightMyRequestResponse> => app.inject({ method: 'POST', url: '/api/v1/org/members/invite', headers, payload }),
    list: (): Promise<LightMyRequestResponse> => app.inject({ method: 'GET', url: '/api/v1/org/invites', headers }),
    revoke: (id: string): Promise<LightMyRequestResponse> => app.inject({ method: 'DELETE', url: `/api/v1/org/invites/${id}`, headers }),
    resend: (id: string): Promise<LightMyRequestResponse> => app.inject({ method: 'POST', url: `/api/v1/org/invites/${id}/resend`, headers })
  }
}

export function asAdmin (app: FastifyInstance, { org, admin }: OrgAdmin) {
  return asUser(app, org.slug, admin.token)
}

export function accept (app: FastifyInstance, slug: string, payload: object): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/auth/accept-invite', headers: { 'x-org-slug': slug }, payload, remoteAddress: nextIp() })
}

export interface StoredEvent { type: string, actor_type: string, actor_id: string | null, actor_email: string | null, target_type: string, target_id: string, data: Record<string, unknown>, ip: string | null }

/** The org's audit events, oldest first. */
export async function eventsOf (app: FastifyInstance, orgId: string, type?: string): Promise<StoredEvent[]> {
  let query = app.db.selectFrom('audit_events').selectAll().where('org_id', '=', orgId)
  if (type !== undefined) query = query.where('type', '=', type)
  const rows = await query.orderBy('created_at', 'asc').orderBy('id', 'asc').execute()
  return rows.map(row => ({ ...row, data: typeof row.data === 'string' ? JSON.parse(row.data) : row.data }))
}

/** Moves an invitation's expiry into the past (the one clock the tests turn). */
export async function lapse (app: FastifyInstance, inviteId: string): Promise<void> {
  await app.db.updateTable('invites').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', inviteId).execute()
}
