import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Config } from '../src/config.ts'
import * as schemas from '../schemas/admin.ts'
import { findOrgBySlug, insertOrg, listOrgs, lockOrgBySlug, updateOrgBySlug, type Org } from '../db/queries/orgs.ts'
import { insertUser, findUserById } from '../db/queries/users.ts'
import { insertMembership } from '../db/queries/memberships.ts'
import { ADMIN_ACTOR, recordEvent } from '../db/queries/events.ts'
import { hashPassword } from '../src/passwords.ts'
import { newId } from '../src/ids.ts'
import { safeEqual } from '../src/secrets.ts'
import { Conflict, NotFound, Unauthorized } from '../src/errors.ts'
import { adminAuditEvents } from './events/routes.ts'

function sameRateLimit (a: Org['rateLimit'], b: Org['rateLimit']): boolean {
  return a === null || b === null ? a === b : a.max === b.max && a.windowSeconds === b.windowSeconds
}

/** Routes /admin/*: the platform operator's API, behind ADMIN_TOKEN. */
const admin: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const adminToken = config.adminToken
  app.addHook('onRequest', async function requireAdminToken (request: FastifyRequest) {
    // No token configured (production without ADMIN_TOKEN): the admin API does not exist.
    if (adminToken === null) throw new NotFound(`Route ${request.method} ${request.url.split('?')[0]} not found`)
    const match = /^Bearer +(\S+)\s*$/i.exec(request.headers.authorization ?? '')
    if (match === null || !safeEqual(match[1], adminToken)) throw new Unauthorized('Invalid admin token')
  })
  await app.register(adminAuditEvents)

  // Every admin write records its event with actor `admin`, in the transaction of the change (§3, §10).
  app.post('/orgs', { schema: schemas.createOrg }, async (request, reply) => {
    const { slug, name, plan, appUrl } = request.body
    const org = await app.db.transaction().execute(async trx => {
      const created = await insertOrg(trx, { id: newId('org'), slug, name: name.trim(), plan: plan ?? 'free', app_url: appUrl ?? null })
      if (created === null) throw new Conflict(`Organization slug "${slug}" is already taken`)
      await recordEvent(trx, { type: 'org.created', orgId: created.id, actor: ADMIN_ACTOR, target: { type: 'org', id: created.id }, data: { org: created }, ip: request.ip })
      return created
    })
    request.log.info({ orgId: org.id, slug }, 'organization created')
    return reply.code(201).send({ org })
  })

  app.get('/orgs', { schema: schemas.listOrgs }, async () => {
    return { orgs: await listOrgs(app.db) }
  })

  app.patch('/orgs/:slug', { schema: schemas.updateOrg }, async (request) => {
    const { name, plan, status, appUrl, rateLimit } = request.body
    const wanted: Partial<Pick<Org, 'name' | 'plan' | 'status' | 'appUrl' | 'rateLimit'>> = {
      ...(name !== undefined && { name: name.trim() }),
      ...(plan !== undefined && { plan }),
      ...(status !== undefined && { status }),
      ...(appUrl !== undefined && { appUrl }),
      ...(rateLimit !== undefined && { rateLimit })
    }
    const { org, changes } = await app.db.transaction().execute(async trx => {
      const before = await lockOrgBySlug(trx, request.params.slug)
      if (before === null) throw new NotFound('Organization not found')
      // Only what differs is a change: the same value sent again is neither written nor recorded.
      const changes = (['name', 'plan', 'status', 'appUrl', 'rateLimit'] as const).filter(field => wanted[field] !== undefined).filter(field => field === 'rateLimit'
        ? !sameRateLimit(wanted.rateLimit ?? null, before.rateLimit)
        : wanted[field] !== before[field])
      if (changes.length === 0) return { org: before, changes }
      const after = await updateOrgBySlug(trx, before.slug, {
        ...(changes.includes('name') && { name: wanted.name }),
        ...(changes.includes('plan') && { plan: wanted.plan }),
        ...(changes.includes('status') && { status: wanted.status }),
        ...(changes.includes('appUrl') && { app_url: wanted.appUrl }),
        ...(changes.includes('rateLimit') && { rate_limit_max: wanted.rateLimit?.max ?? null, rate_limit_window_seconds: wanted.rateLimit?.windowSeconds ?? null })
      })
      if (after === null) throw new NotFound('Organization not found')
      await recordEvent(trx, { type: 'org.updated', orgId: after.id, actor: ADMIN_ACTOR, target: { type: 'org', id: after.id }, data: { org: after, changes }, ip: request.ip })
      return { org: after, changes }
    })
    if (changes.length > 0) await app.publicCache.orgChanged(org.id)
    return { org }
  })

  app.post('/users', { schema: schemas.createUser }, async (request, reply) => {
    const { email, name, password } = request.body
    const passwordHash = await hashPassword(password)
    const user = await app.db.transaction().execute(async trx => {
      const created = await insertUser(trx, { id: newId('usr'), email: email.trim(), name: name.trim(), passwordHash })
      if (created === null) throw new Conflict('A user with this email already exists')
      // A user belongs to no org until added to one: the event is the operator's (GET /admin/audit-events).
      const { id, name: userName, email: userEmail } = created
      await recordEvent(trx, { type: 'user.created', orgId: null, actor: ADMIN_ACTOR, target: { type: 'user', id }, data: { user: { id, name: userName, email: userEmail } }, ip: request.ip })
      return created
    })
    return reply.code(201).send({ user })
  })

  app.post('/orgs/:slug/members', { schema: schemas.addMember }, async (request, reply) => {
    const org = await findOrgBySlug(app.db, request.params.slug)
    if (org === null) throw new NotFound('Organization not found')
    const user = await findUserById(app.db, request.body.userId)
    if (user === undefined) throw new NotFound('User not found')
    const membership = await app.db.transaction().execute(async trx => {
      const created = await insertMembership(trx, { id: newId('mem'), orgId: org.id, userId: user.id, role: request.body.role ?? 'member' })
      if (created === null) throw new Conflict('User is already a member of this organization')
      const { role, status, joinedAt } = created
      await recordEvent(trx, {
        type: 'member.joined',
        orgId: org.id,
        actor: ADMIN_ACTOR,
        target: { type: 'user', id: user.id },
        data: { user: { id: user.id, name: user.name, email: user.email }, membership: { role, status, joinedAt } },
        ip: request.ip
      })
      return created
    })
    await app.publicCache.orgChanged(org.id)
    return reply.code(201).send({ membership })
  })
}

export default admin
