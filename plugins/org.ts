import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/org.ts'
import { countActiveAdmins, deleteMembership, findMember, listMembers, lockOrgMemberships, updateMembership, type Member } from '../db/queries/memberships.ts'
import { revokeUserSessionsInOrg } from '../db/queries/sessions.ts'
import { recordEvent, userActor } from '../db/queries/events.ts'
import { Conflict, NotFound } from '../src/errors.ts'

const LAST_ADMIN = 'The last active org_admin of an organization cannot be demoted, suspended or removed'

function isActiveAdmin (member: Pick<Member, 'role' | 'status'>): boolean {
  return member.role === 'org_admin' && member.status === 'active'
}

/** Routes /org and /org/members: any active member reads, org_admins change memberships. */
const org: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.requireOrg)
  app.addHook('onRequest', app.requireUser)
  app.addHook('onRequest', app.requireActiveMember)

  app.get('', { schema: schemas.getOrg }, async (request) => {
    return { org: request.org! }
  })

  app.get('/members', { schema: schemas.listMembers }, async (request) => {
    return { members: await listMembers(app.db, request.org!.id) }
  })

  await app.register(async function orgAdminOnly (scope) {
    const admin = scope.withTypeProvider<TypeBoxTypeProvider>()
    admin.addHook('onRequest', app.requireRole('org_admin'))

    admin.patch('/members/:userId', { schema: schemas.updateMember }, async (request) => {
      const orgId = request.org!.id
      const { userId } = request.params
      const { role, status } = request.body
      const member = await app.db.transaction().execute(async trx => {
        await lockOrgMemberships(trx, orgId)
        const before = await findMember(trx, orgId, userId)
        if (before === null) throw new NotFound('Not a member of this organization')
        const after = { role: role ?? before.role, status: status ?? before.status }
        if (isActiveAdmin(before) && !isActiveAdmin(after) && await countActiveAdmins(trx, orgId) <= 1) throw new Conflict(LAST_ADMIN)
        await updateMembership(trx, orgId, userId, { role, status })
        await recordEvent(trx, {
          type: 'member.updated',
          orgId,
          actor: userActor(request.auth!.user),
          target: { type: 'user', id: userId },
          data: { before: { role: before.role, status: before.status }, after },
          ip: request.ip
        })
        return { ...before, ...after }
      })
      await app.publicCache.orgChanged(orgId)
      request.log.info({ orgId, userId, role: member.role, status: member.status }, 'membership updated')
      return { member }
    })

    admin.delete('/members/:userId', { schema: schemas.removeMember }, async (request) => {
      const orgId = request.org!.id
      const { userId } = request.params
      const sessionsRevoked = await app.db.transaction().execute(async trx => {
        await lockOrgMemberships(trx, orgId)
        const member = await findMember(trx, orgId, userId)
        if (member === null) throw new NotFound('Not a member of this organization')
        if (isActiveAdmin(member) && await countActiveAdmins(trx, orgId) <= 1) throw new Conflict(LAST_ADMIN)
        await deleteMembership(trx, orgId, userId)
        const revoked = await revokeUserSessionsInOrg(trx, orgId, userId, 'member_removed')
        await recordEvent(trx, {
          type: 'member.removed',
          orgId,
          actor: userActor(request.auth!.user),
          target: { type: 'user', id: userId },
          data: { role: member.role, status: member.status, sessionsRevoked: revoked },
          ip: request.ip
        })
        return revoked
      })
      await app.publicCache.orgChanged(orgId)
      request.log.info({ orgId, userId, sessionsRevoked }, 'member removed')
      return { message: 'Member removed' }
    })
  })
}

export default org
