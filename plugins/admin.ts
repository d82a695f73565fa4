import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Config } from '../src/config.ts'
import * as schemas from '../schemas/admin.ts'
import { findOrgBySlug, insertOrg, listOrgs, updateOrgBySlug } from '../db/queries/orgs.ts'
import { insertUser, findUserById } from '../db/queries/users.ts'
import { insertMembership } from '../db/queries/memberships.ts'
import { hashPassword } from '../src/passwords.ts'
import { newId } from '../src/ids.ts'
import { safeEqual } from '../src/secrets.ts'
import { Conflict, NotFound, Unauthorized } from '../src/errors.ts'

/** Routes /admin/*: the platform operator's API, behind ADMIN_TOKEN. */
const admin: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const adminToken = config.adminToken
  app.addHook('onRequest', async function requireAdminToken (request: FastifyRequest) {
    // No token configured (production without ADMIN_TOKEN): the admin API does not exist.
    if (adminToken === null) throw new NotFound(`Route ${request.method} ${request.url.split('?')[0]} not found`)
    const match = /^Bearer +(\S+)\s*$/i.exec(request.headers.authorization ?? '')
    if (match === null || !safeEqual(match[1], adminToken)) throw new Unauthorized('Invalid admin token')
  })

  app.post('/orgs', { schema: schemas.createOrg }, async (request, reply) => {
    const { slug, name, plan, appUrl } = request.body
    const org = await insertOrg(app.db, { id: newId('org'), slug, name: name.trim(), plan: plan ?? 'free', app_url: appUrl ?? null })
    if (org === null) throw new Conflict(`Organization slug "${slug}" is already taken`)
    request.log.info({ orgId: org.id, slug }, 'organization created')
    return reply.code(201).send({ org })
  })

  app.get('/orgs', { schema: schemas.listOrgs }, async () => {
    return { orgs: await listOrgs(app.db) }
  })

  app.patch('/orgs/:slug', { schema: schemas.updateOrg }, async (request) => {
    const { name, plan, status, appUrl } = request.body
    const org = await updateOrgBySlug(app.db, request.params.slug, {
      ...(name !== undefined && { name: name.trim() }),
      ...(plan !== undefined && { plan }),
      ...(status !== undefined && { status }),
      ...(appUrl !== undefined && { app_url: appUrl })
    })
    if (org === null) throw new NotFound('Organization not found')
    await app.publicCache.orgChanged(org.id)
    return { org }
  })

  app.post('/users', { schema: schemas.createUser }, async (request, reply) => {
    const { email, name, password } = request.body
    const user = await insertUser(app.db, { id: newId('usr'), email: email.trim(), name: name.trim(), passwordHash: await hashPassword(password) })
    if (user === null) throw new Conflict('A user with this email already exists')
    return reply.code(201).send({ user })
  })

  app.post('/orgs/:slug/members', { schema: schemas.addMember }, async (request, reply) => {
    const org = await findOrgBySlug(app.db, request.params.slug)
    if (org === null) throw new NotFound('Organization not found')
    const user = await findUserById(app.db, request.body.userId)
    if (user === undefined) throw new NotFound('User not found')
    const membership = await insertMembership(app.db, { id: newId('mem'), orgId: org.id, userId: user.id, role: request.body.role ?? 'member' })
    if (membership === null) throw new Conflict('User is already a member of this organization')
    await app.publicCache.orgChanged(org.id)
    return reply.code(201).send({ membership })
  })
}

export default admin
