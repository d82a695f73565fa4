import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/org.ts'
import { countActiveAdmins, deleteMembership, findMember, listMembers, lockOrgMemberships, updateMembership, type Member } from '../db/queries/memberships.ts'
import { revokeUserSessionsInOrg } from '../db/queries/sessions.ts'
import { recordEvent, userActor } from '../db/queries/events.ts'
import { Conflict, NotFound } from '../src/errors.ts'
import { guardedOrg } from './org-slug.ts'
import { guardedAuth } from './auth-jwt.ts'

const LAST_ADMIN = 'The last active org_admin of an organization cannot be demoted, suspended or removed'

function isActiveAdmin (member: Pick<Member, 'role' | 'status'>): boolean {
  return member.role === 'org_admin' && member.status === 'active'
}

/** Routes /org and /org/members: any active member reads, org_admins change memberships. */
const org: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.requireOrgUser)
  app.addHook('onRequest', app.requireActiveMember)

  app.get('', { schema: schemas.getOrg }, async (request) => {
    return { org: guardedOrg(request) }
  })

  app.get('/members', { schema: schemas.listMembers }, async (request) => {
    return { members: await listMembers(app.db, guardedOrg(request).id) }
  })

  await app.register(async function orgAdminOnly (scope) {
    const admin = scope.withTypeProvider<TypeBoxTypeProvider>()
    admin.addHook('onRequest', app.requireRole('org_admin'))

    admin.patch('/members/:userId', { schema: schemas.updateMember }, async (request) => {
      const orgId = guardedOrg(request).id
      const { userId } = request.params
      const { role, status } = request.body
      const { member, changes } = await app.db.transaction().execute(async trx => {
        await lockOrgMemberships(trx, orgId)
        const before = await findMember(trx, orgId, userId)
        if (before === null) throw new NotFound('Not a member of this organization')
        const after = { role: role ?? before.role, status: status ?? before.status }
        if (isActiveAdmin(before) && !isActiveAdmin(after) && await countActiveAdmins(trx, orgId) <= 1) throw new Conflict(LAST_ADMIN)
        // Only what differs is a change: the same role or status sent again is neither written nor recorded.
        const changes = (['role', 'status'] as const).filter(field => after[field] !== before[field])
        const member = { ...before, ...after }
        if (changes.length === 0) return { member, changes }
        await updateMembership(trx, orgId, userId, after)
        await recordEvent(trx, {
          type: 'member.updated',
          orgId,
          actor: userActor(guardedAuth(request).user),
          target: { type: 'user', id: userId },
          data: { user: { id: member.userId, email: member.email }, membership: { role: member.role, status: member.status, joinedAt: member.joinedAt }, changes },
          ip: request.ip
        })
        return { member, changes }
      })
      if (changes.length === 0) return { member }
      await app.publicCache.orgChanged(orgId)
      request.log.info({ orgId, userId, role: member.role, status: member.status }, 'membership updated')
      return { member }
    })

    admin.delete('/members/:userId', { schema: schemas.removeMember }, async (request) => {
      const orgId = guardedOrg(request).id
      const { userId } = request.params
      const sessionsRevoked = await app.db.transaction().execute(async trx => {
        await lockOrgMemberships(trx, orgId)
        const member = await findMember(trx, orgId, userId)
        if (member === null) throw new NotFound('Not a member of this organization')
        if (isActiveAdmin(member) && await countActiveAdmins(trx, orgId) <= 1) throw new Conflict(LAST_ADMIN)
        await deleteMembership(trx, orgId, userId)
        const revoked = await revokeUserSessionsInOrg(trx, orgId, userId, 'member_removed')
        const remover = guardedAuth(request).user
        await recordEvent(trx, {
          type: 'member.removed',
          orgId,
          actor: userActor(remover),
          target: { type: 'user', id: userId },
          data: { user: { id: member.userId, email: member.email }, removedBy: { id: remover.id, email: remover.email } },
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
