import { randomBytes } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from '../../src/config.ts'
import type { Database, UserRow } from '../../db/database.ts'
import * as schemas from '../../schemas/invites.ts'
import { sessionTokens } from '../auth.ts'
import { createInviteMailer, inviteLink, mailOutboxRetention, type InviteMailer } from './mail.ts'
import { startPeriodicJob, type PeriodicJobHandle } from '../../src/periodic-job.ts'
import {
  claimInvite, findInviteByTokenHash, findPendingInviteByEmail, insertInvite, isMemberEmail, listPendingInvites,
  lockPendingInvite, markInviteExpired, recentInvitationTimes, renewInvite, revokeInvite, setInviteAcceptedBy, type Invite
} from '../../db/queries/invites.ts'
import { insertMembership, lockOrgMemberships } from '../../db/queries/memberships.ts'
import { findUserByEmail, insertUserFromInvite, toUser } from '../../db/queries/users.ts'
import { recordEvent, userActor } from '../../db/queries/events.ts'
import { hashPassword } from '../../src/passwords.ts'
import { sha256Hex } from '../../src/secrets.ts'
import { newId } from '../../src/ids.ts'
import { Conflict, InvalidInvite, NotFound, RateLimited, ValidationFailed } from '../../src/errors.ts'
import { guardedOrg } from '../org-slug.ts'
import { guardOrgAdminRoutes, guardedAuth } from '../auth-jwt.ts'

export const INVITE_TTL_MS = 7 * 86400_000
export const INVITES_PER_ORG_PER_HOUR = 100

function newInviteToken (): string {
  return randomBytes(32).toString('base64url')
}

/**
 * §12 invitations: routes /org/members/invite and /org/invites (org_admin), /auth/accept-invite
 * (anyone holding a token), and the invitation mail when SMTP_URL is set.
 */
const invites: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const mailer: InviteMailer | null = config.smtpUrl === null
    ? null
    : createInviteMailer({ db: app.db, log: app.log.child({ component: 'invitation-mail' }), config: { ...config, smtpUrl: config.smtpUrl } })
  if (mailer !== null) {
    app.addHook('onReady', async () => mailer.start())
    app.addHook('onClose', async () => await mailer.stop())
  }
  let retention: PeriodicJobHandle | null = null
  app.addHook('onReady', async () => { retention = startPeriodicJob(app.db, app.log, mailOutboxRetention) })
  app.addHook('onClose', async () => retention?.stop())
  const { startSession } = sessionTokens(app, config)

  /** 429 once the org has sent INVITES_PER_ORG_PER_HOUR invitations in the last hour (call under the org lock). */
  async function refuseOverBudget (trx: Kysely<Database>, orgId: string, reply: FastifyReply): Promise<void> {
    const times = await recentInvitationTimes(trx, orgId, INVITES_PER_ORG_PER_HOUR)
    if (times.length < INVITES_PER_ORG_PER_HOUR) return
    const oldest = times[times.length - 1]
    const retryAfter = Math.max(1, Math.ceil((oldest.getTime() + 3600_000 - Date.now()) / 1000))
    reply.header('retry-after', String(retryAfter))
    throw new RateLimited(`Too many invitations: at most ${INVITES_PER_ORG_PER_HOUR} per organization per hour; try again in ${retryAfter} seconds`)
  }

  function refuseWithoutLink (org: { slug: string, appUrl: string | null }): void {
    if (mailer !== null && inviteLink(config, org, 'x') === null) throw new Conflict('Invitation mail needs a link: set the organization\'s appUrl or INVITE_URL')
  }

  /** The answer of invite and resend: the token only when no mailer delivers it. */
  function answer (invite: Invite, token: string): { invite: Invite, inviteToken?: string } {
    return mailer === null ? { invite, inviteToken: token } : { invite }
  }

  await app.register(async function orgAdminRoutes (scope) {
    const admin = scope.withTypeProvider<TypeBoxTypeProvider>()
    guardOrgAdminRoutes(admin)

    admin.post('/members/invite', { schema: schemas.inviteMember }, async (request, reply) => {
      const org = guardedOrg(request)
      const inviter = guardedAuth(request).user
      const email = request.body.email.trim().toLowerCase()
      const role = request.body.role ?? 'member'
      refuseWithoutLink(org)
      const token = newInviteToken()
      const invite = await app.db.transaction().execute(async trx => {
        // Serialises the org's invitations with its membership changes: the budget count, the
        // member check and the pending check all hold until this transaction commits.
        await lockOrgMemberships(trx, org.id)
        await refuseOverBudget(trx, org.id, reply)
        if (await isMemberEmail(trx, org.id, email)) throw new Conflict(`${email} is already a member of this organization`)
        const pending = await findPendingInviteByEmail(trx, org.id, email)
        if (pending !== undefined && pending.expires_at.getTime() > Date.now()) throw new Conflict(`${email} already has a pending invitation to this organization`)
        if (pending !== undefined) await markInviteExpired(trx, pending.id)
        const invite = await insertInvite(trx, {
          id: newId('inv'),
          orgId: org.id,
          email,
          role,
          tokenHash: sha256Hex(token),
          delivery: mailer === null ? 'api' : 'email',
          invitedBy: inviter.id,
          expiresAt: new Date(Date.now() + INVITE_TTL_MS)
        })
        await recordInvited(trx, invite, request)
        await mailer?.enqueue(trx, { id: invite.id, orgId: org.id, email }, token)
        return invite
      })
      mailer?.wake()
      request.log.info({ orgId: org.id, inviteId: invite.id, role, delivery: mailer === null ? 'api' : 'email' }, 'invitation created')
      return await reply.code(201).send(answer(invite, token))
    })

    admin.get('/invites', { schema: schemas.listInvites }, async (request) => {
      return { invites: await listPendingInvites(app.db, guardedOrg(request).id) }
    })

    admin.delete('/invites/:inviteId', { schema: schemas.revokeInvite }, async (request) => {
      const org = guardedOrg(request)
      const { inviteId } = request.params
      await app.db.transaction().execute(async trx => {
        const revoked = await revokeInvite(trx, org.id, inviteId, guardedAuth(request).user.id)
        if (revoked === undefined) throw new NotFound('Invitation not found or not pending')
        await mailer?.cancel(trx, inviteId)
        await recordEvent(trx, {
          type: 'invite.revoked',
          orgId: org.id,
          actor: userActor(guardedAuth(request).user),
          target: { type: 'invite', id: inviteId },
          data: { inviteId, email: revoked.email },
          ip: request.ip
        })
      })
      request.log.info({ orgId: org.id, inviteId }, 'invitation revoked')
      return { message: 'Invite revoked' }
    })

    admin.post('/invites/:inviteId/resend', { schema: schemas.resendInvite }, async (request, reply) => {
      const org = guardedOrg(request)
      const { inviteId } = request.params
      refuseWithoutLink(org)
      const token = newInviteToken()
      const invite = await app.db.transaction().execute(async trx => {
        await lockOrgMemberships(trx, org.id)
        const current = await lockPendingInvite(trx, org.id, inviteId)
        if (current === undefined) throw new NotFound('Invitation not found or not pending')
        await refuseOverBudget(trx, org.id, reply)
        if (await isMemberEmail(trx, org.id, current.email)) throw new Conflict(`${current.email} is already a member of this organization`)
        await mailer?.cancel(trx, inviteId)
        const invite = await renewInvite(trx, inviteId, {
          tokenHash: sha256Hex(token),
          delivery: mailer === null ? 'api' : 'email',
          expiresAt: new Date(Date.now() + INVITE_TTL_MS)
        })
        await recordInvited(trx, invite, request)
        await mailer?.enqueue(trx, { id: invite.id, orgId: org.id, email: invite.email }, token)
        return invite
      })
      mailer?.wake()
      request.log.info({ orgId: org.id, inviteId }, 'invitation resent')
      return answer(invite, token)
    })
  }, { prefix: '/org' })

  /** member.invited: for a new invitation and for each resend (an invitation was sent; the rate limit counts these). */
  async function recordInvited (trx: Kysely<Database>, invite: Invite, request: FastifyRequest): Promise<void> {
    await recordEvent(trx, {
      type: 'member.invited',
      orgId: guardedOrg(request).id,
      actor: userActor(guardedAuth(request).user),
      target: { type: 'invite', id: invite.id },
      data: { inviteId: invite.id, email: invite.email, role: invite.role, invitedBy: invite.invitedBy, expiresAt: invite.expiresAt },
      ip: request.ip
    })
  }

  await app.register(async function acceptRoute (scope) {
    const open = scope.withTypeProvider<TypeBoxTypeProvider>()
    open.addHook('onRequest', app.requireOrg)

    open.post('/accept-invite', { schema: schemas.acceptInvite }, async (request, reply) => {
      const org = guardedOrg(request)
      const tokenHash = sha256Hex(request.body.token)
      const found = await findInviteByTokenHash(app.db, tokenHash)
      // One answer for every unusable token, whatever made it so.
      if (found === undefined || found.org_id !== org.id || found.status !== 'pending' || found.expires_at.getTime() <= Date.now()) throw new InvalidInvite()

      const existing = await findUserByEmail(app.db, found.email)
      // The account that joins: the invited email's, or one made from the body.
      let account: { existing: UserRow } | { name: string, passwordHash: string }
      if (existing === undefined) {
        const { name, password } = request.body
        if (name === undefined || password === undefined) {
          const missing = [name === undefined && 'body.name', password === undefined && 'body.password'].filter(Boolean).join(' and ')
          throw new ValidationFailed(`${missing} ${missing.includes(' and ') ? 'are' : 'is'} required: no account has the invited email yet`)
        }
        account = { name: name.trim(), passwordHash: await hashPassword(password) }
      } else {
        account = { existing }
      }

      const { sessionId, body, userId } = await app.db.transaction().execute(async trx => {
        const invite = await claimInvite(trx, org.id, tokenHash)
        if (invite === undefined) throw new InvalidInvite()
        // The account may have appeared since the read above; then it is the one that joins.
        const user = 'existing' in account
          ? account.existing
          : await insertUserFromInvite(trx, { id: newId('usr'), email: invite.email, name: account.name, passwordHash: account.passwordHash, isEmailVerified: invite.delivery === 'email' })
        const membership = await insertMembership(trx, { id: newId('mem'), orgId: org.id, userId: user.id, role: invite.role })
        if (membership === null) throw new Conflict('You are already a member of this organization: log in instead')
        await setInviteAcceptedBy(trx, invite.id, user.id)
        await mailer?.cancel(trx, invite.id)
        const publicUser = toUser(user)
        await recordEvent(trx, {
          type: 'member.joined',
          orgId: org.id,
          actor: userActor(publicUser),
          target: { type: 'user', id: user.id },
          data: { user: { id: user.id, name: user.name, email: user.email }, membership: { role: membership.role, status: membership.status, joinedAt: membership.joinedAt } },
          ip: request.ip
        })
        const started = await startSession(trx, reply, request, { org, principal: { user: publicUser, membership: { role: membership.role, status: membership.status, joinedAt: membership.joinedAt } } })
        return { ...started, userId: user.id }
      })
      await app.publicCache.orgChanged(org.id)
      request.log.info({ orgId: org.id, userId, sessionId, created: !('existing' in account) }, 'invitation accepted')
      return body
    })
  }, { prefix: '/auth' })
}

export default invites
