import { Type } from '@sinclair/typebox'
import { ActiveStatus, Email, Id, OrgRole, OrgSlugHeader, PublicUser, Success, Timestamp, errorResponse, errors, withSuccessExample, type ErrorExample, NoAuth } from './common.ts'

const tags = ['Invitations']
const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]
const headers = Type.Object({ 'x-org-slug': OrgSlugHeader })
const params = Type.Object({ inviteId: Id('inv', 'Invitation id') })

const EXAMPLE_TOKEN = 'Jm3vQ8xKp2LwT9sRb5nYc7dFh1gZa4eUo6iWk0tXqEs'
const EXAMPLE_INVITE = {
  id: 'inv_01JZ8Q4K7X3W5N2M9B6V1C0D8E',
  email: 'grace@acme.test',
  role: 'member',
  status: 'pending',
  expiresAt: '2025-05-30T12:00:00.000Z',
  createdAt: '2025-05-23T12:00:00.000Z',
  invitedBy: { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', email: 'ada@acme.test' }
}

export const Invite = Type.Object({
  id: Id('inv', 'Invitation id'),
  email: Type.String({ description: 'Who is invited (lower-cased)', examples: ['grace@acme.test'] }),
  role: OrgRole,
  status: Type.Literal('pending', { description: 'Always pending: accepted, revoked and expired invitations are not shown' }),
  expiresAt: { ...Timestamp, description: 'When the invitation stops working: 7 days after it was sent (or last resent)' },
  createdAt: Timestamp,
  invitedBy: Type.Object({
    id: Id('usr', 'The inviter\'s user id'),
    email: Type.String({ description: 'The inviter\'s email', examples: ['ada@acme.test'] })
  }, { description: 'The org_admin who sent the invitation' })
}, { description: 'A pending invitation to join the organization' })

const InviteToken = Type.String({
  description: 'Only when the server has no mailer (`SMTP_URL` unset): the invitation token, in this answer only (stored as a SHA-256 hash). ' +
    'Deliver it to the invitee yourself, e.g. as `<your app>/accept-invite?org=<slug>&token=<inviteToken>`. With a mailer it is never returned: ' +
    'it is in the emailed link only.',
  examples: [EXAMPLE_TOKEN]
})

const noMailerNote = '\n\n**Delivery.** With `SMTP_URL` set, the invitation is emailed from `MAIL_FROM` after the change commits (never ' +
  'delaying or failing this request; a failing mail server is retried on `MAIL_RETRY_SCHEDULE`) with the link `INVITE_URL` ' +
  '(default: the org\'s `appUrl` + `/accept-invite`) + `?org=<slug>&token=<token>`, and the token appears in no API answer. ' +
  '**Without `SMTP_URL`** (development, or operators who deliver invitations themselves) nothing is mailed and the answer carries ' +
  '`inviteToken`, once: it is never shown again (a resend makes a new one).'
const roleNote = ' Requires an active `org_admin` of `X-Org-Slug` (401 without a valid access token, 403 otherwise).'

const missingSlug: ErrorExample = ['Missing X-Org-Slug header', 'validation_failed']
const unknownOrg: ErrorExample = ['Organization not found', 'not_found']
const guardErrors = {
  ...errorResponse(400, missingSlug),
  ...errorResponse(401, ['Invalid or expired access token', 'unauthorized'],
    ['Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie', 'unauthorized']),
  ...errorResponse(403, ['This action requires the org_admin role', 'forbidden'],
    ['Your membership in this organization is not active', 'forbidden'], ['Organization is suspended', 'org_suspended']),
  ...errorResponse(404, unknownOrg),
  ...errors(503)
}

const tooMany = errorResponse(429, ['Too many invitations: at most 100 per organization per hour; try again in 1260 seconds', 'rate_limited'])
tooMany[429] = {
  ...tooMany[429],
  description: 'The organization sent 100 invitations (new or resent) in the last hour',
  headers: { 'Retry-After': { type: 'integer', description: 'Seconds until the oldest of those leaves the hour', examples: [1260] } }
}

const alreadyMember: ErrorExample = ['grace@acme.test is already a member of this organization', 'conflict']
const noLink: ErrorExample = ['Invitation mail needs a link: set the organization\'s appUrl or INVITE_URL', 'conflict']

function inviteAnswer (description: string) {
  return withSuccessExample(Success(Type.Object({ invite: Invite, inviteToken: Type.Optional(InviteToken) }), description), { invite: EXAMPLE_INVITE, inviteToken: EXAMPLE_TOKEN })
}

export const inviteMember = {
  tags,
  security,
  operationId: 'inviteMember',
  summary: 'Invite someone by email',
  description: 'Invites an email address to join the organization with `role` (`member` by default, or `org_admin`). The invitation ' +
    'is valid 7 days; its token is random (32 bytes), stored only as a SHA-256 hash and works once. 409 when the email belongs to a ' +
    'member of this organization or already has a pending invitation here (revoke or resend that one). At most 100 invitations — new ' +
    'or resent — per organization per hour: beyond, 429 with `Retry-After`. Recorded as `member.invited`.' + roleNote + noMailerNote,
  headers,
  body: Type.Object({
    email: Email,
    role: Type.Optional(OrgRole)
  }, { additionalProperties: false, examples: [{ email: 'grace@acme.test' }, { email: 'grace@acme.test', role: 'org_admin' }] }),
  response: {
    201: inviteAnswer('Invitation created (and its mail queued, when a mailer is configured)'),
    ...guardErrors,
    ...errorResponse(400, missingSlug, ['body.email must match format "email"', 'validation_failed']),
    ...errorResponse(409, alreadyMember, ['grace@acme.test already has a pending invitation to this organization', 'conflict'], noLink),
    ...tooMany,
    ...errors(413, 415)
  }
}

export const listInvites = {
  tags,
  security,
  operationId: 'listInvites',
  summary: 'List pending invitations',
  description: 'The organization\'s pending, unexpired invitations, newest first (never a token).' + roleNote,
  headers,
  response: {
    200: withSuccessExample(Success(Type.Object({ invites: Type.Array(Invite) }), 'The pending invitations'), { invites: [EXAMPLE_INVITE] }),
    ...guardErrors
  }
}

export const revokeInvite = {
  tags,
  security,
  operationId: 'revokeInvite',
  summary: 'Revoke an invitation',
  description: 'Revokes a pending invitation: its token stops working at once and its mail, if not sent yet, is not sent. 404 when the ' +
    'invitation is not pending (accepted, revoked, expired, or another organization\'s). Recorded as `invite.revoked`.' + roleNote,
  headers,
  params,
  response: {
    200: withSuccessExample(Success(Type.Object({ message: Type.String({ description: 'Always "Invite revoked"', examples: ['Invite revoked'] }) }), 'Invitation revoked'), { message: 'Invite revoked' }),
    ...guardErrors,
    ...errorResponse(400, missingSlug, ['params.inviteId must match pattern "^inv_[0-9A-HJKMNP-TV-Z]{26}$"', 'validation_failed']),
    ...errorResponse(404, ['Invitation not found or not pending', 'not_found'], unknownOrg)
  }
}

export const resendInvite = {
  tags,
  security,
  operationId: 'resendInvite',
  summary: 'Resend an invitation',
  description: 'Sends a pending invitation again — also one that has lapsed, which this renews: same id, a **new token** (the previous ' +
    'one stops working, and its mail, if not sent yet, is dropped), `expiresAt` 7 days from now. Counts against the 100 invitations per ' +
    'organization per hour (429 with `Retry-After`). 404 when the invitation was accepted, revoked, replaced by a newer invitation of the ' +
    'same email, or is another organization\'s; 409 when the email has become a member meanwhile. Recorded as `member.invited` again ' +
    '(same `inviteId`, the new `expiresAt`, the actor who resent it), since an invitation was sent.' + roleNote + noMailerNote,
  headers,
  params,
  response: {
    200: inviteAnswer('Invitation sent again with a new token'),
    ...guardErrors,
    ...errorResponse(400, missingSlug, ['params.inviteId must match pattern "^inv_[0-9A-HJKMNP-TV-Z]{26}$"', 'validation_failed']),
    ...errorResponse(404, ['Invitation not found or not pending', 'not_found'], unknownOrg),
    ...errorResponse(409, alreadyMember, noLink),
    ...tooMany,
    ...errors(413, 415)
  }
}

const EXAMPLE_ACCESS_TOKEN = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfMDFKWjhRNEs3WDNXNU4yTTlCNlYxQzBEOEUifQ.c2lnbmF0dXJl'
const EXAMPLE_REFRESH_TOKEN = 'q3Jk9c0hVx2bT8sLw1mNf5aYp7eRu4iOz6gD0kHjC2E'

export const acceptInvite = {
  tags,
  security: NoAuth,
  operationId: 'acceptInvite',
  summary: 'Accept an invitation',
  description: 'Spends an invitation token of the organization named by `X-Org-Slug` and logs the invitee in: the answer and the cookies ' +
    'are those of `POST /auth/login`, and the invitee is now an `active` member with the invitation\'s role. If no account has the ' +
    'invitation\'s email, `name` and `password` (at least 10 characters) are required and the account is created — with ' +
    '`isEmailVerified: true` when the invitation was emailed (following the link proves the mailbox), false when the token came from ' +
    'the API answer; otherwise the existing account joins (`name` and `password` are then ignored). Any unusable token — unknown, ' +
    'expired, revoked, already used, replaced by a resend, or another organization\'s — is the same 400 `invalid_invite`. A token works ' +
    'once: of concurrent accepts exactly one succeeds. 409 when the account is already a member (the invitation stays pending). ' +
    'Recorded as `member.joined` (actor: the new member).\n\n' +
    'The token is the invitee\'s credential for this organization: whoever holds it joins as the invited email. With a mailer only ' +
    'the mailbox gets it; without one (`inviteToken` in the API answer), deliver it only to the invitee.',
  headers,
  body: Type.Object({
    token: Type.String({ minLength: 1, maxLength: 512, description: 'The invitation token: the `token` parameter of the emailed link, or `inviteToken`', examples: [EXAMPLE_TOKEN] }),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'Full name for a new account (required when no account has the invited email)', examples: ['Grace Hopper'] })),
    password: Type.Optional(Type.String({ minLength: 10, maxLength: 1024, description: 'Password for a new account, at least 10 characters (required when no account has the invited email)', examples: ['correct horse battery staple'] }))
  }, { additionalProperties: false, examples: [{ token: EXAMPLE_TOKEN, name: 'Grace Hopper', password: 'correct horse battery staple' }, { token: EXAMPLE_TOKEN }] }),
  response: {
    200: Success(Type.Object({
      accessToken: Type.String({ description: 'JWT (HS256) valid for 15 minutes, as login', examples: [EXAMPLE_ACCESS_TOKEN] }),
      refreshToken: Type.String({ description: 'Opaque, single-use refresh token valid for 7 days, as login', examples: [EXAMPLE_REFRESH_TOKEN] }),
      user: PublicUser,
      membership: Type.Object({ role: OrgRole, status: ActiveStatus }, { description: 'The new membership' })
    }), {
      description: 'Joined and logged in; cookies set as login',
      headers: { 'Set-Cookie': { type: 'string', description: '`access_token` (15 minutes) and `refresh_token` (7 days), as login' } },
      examples: [{
        status: 'success',
        data: {
          accessToken: EXAMPLE_ACCESS_TOKEN,
          refreshToken: EXAMPLE_REFRESH_TOKEN,
          user: { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8F', name: 'Grace Hopper', email: 'grace@acme.test', role: 'user', isEmailVerified: true },
          membership: { role: 'member', status: 'active' }
        }
      }]
    }),
    ...errorResponse(400, ['Invalid or expired invitation', 'invalid_invite'], missingSlug,
      ['body.name and body.password are required: no account has the invited email yet', 'validation_failed'],
      ['body.password must NOT have fewer than 10 characters', 'validation_failed']),
    ...errorResponse(403, ['Organization is suspended', 'org_suspended']),
    ...errorResponse(404, unknownOrg),
    ...errorResponse(409, ['You are already a member of this organization: log in instead', 'conflict']),
    ...errors(413, 415, 503)
  }
}
