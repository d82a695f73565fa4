import { Type } from '@sinclair/typebox'
import { ActiveStatus, Email, Id, Org, OrgRole, OrgSlugHeader, Success, Timestamp, errorResponse, errors, withSuccessExample, type ErrorExample } from './common.ts'

const tags = ['Org']
const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]
const headers = Type.Object({ 'x-org-slug': OrgSlugHeader })
const params = Type.Object({ userId: Id('usr', 'The member\'s user id') })

const EXAMPLE_ORG = { id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', name: 'Acme Inc.', slug: 'acme', plan: 'pro', status: 'active', appUrl: 'https://app.acme.test', createdAt: '2025-05-23T12:00:00.000Z' }
const EXAMPLE_MEMBER = { userId: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', name: 'Ada Lovelace', email: 'ada@acme.test', role: 'org_admin', status: 'active', joinedAt: '2025-05-23T12:00:00.000Z' }

export const Member = Type.Object({
  userId: Id('usr', 'User id'),
  name: Type.String({ description: 'Full name', examples: ['Ada Lovelace'] }),
  email: Email,
  role: OrgRole,
  status: ActiveStatus,
  joinedAt: Timestamp
}, { description: 'A member of the organization' })

const missingSlug: ErrorExample = ['Missing X-Org-Slug header', 'validation_failed']
const unauthenticated: ErrorExample[] = [
  ['Invalid or expired access token', 'unauthorized'],
  ['Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie', 'unauthorized']
]
const inactive: ErrorExample = ['Your membership in this organization is not active', 'forbidden']
const suspendedOrg: ErrorExample = ['Organization is suspended', 'org_suspended']
const unknownOrg: ErrorExample = ['Organization not found', 'not_found']

const memberErrors = {
  ...errorResponse(400, missingSlug),
  ...errorResponse(401, ...unauthenticated),
  ...errorResponse(403, inactive, suspendedOrg),
  ...errorResponse(404, unknownOrg),
  ...errors(503)
}

const adminErrors = {
  ...memberErrors,
  ...errorResponse(400, missingSlug, ['params.userId must match pattern "^usr_[0-9A-HJKMNP-TV-Z]{26}$"', 'validation_failed']),
  ...errorResponse(403, ['This action requires the org_admin role', 'forbidden'], inactive, suspendedOrg),
  ...errorResponse(404, ['Not a member of this organization', 'not_found'], unknownOrg),
  ...errorResponse(409, ['The last active org_admin of an organization cannot be demoted, suspended or removed', 'conflict'])
}

export const getOrg = {
  tags,
  security,
  operationId: 'getOrg',
  summary: 'The organization',
  description: 'The organization named by `X-Org-Slug`. Any active member may read it.',
  headers,
  response: { 200: withSuccessExample(Success(Type.Object({ org: Org }), 'The organization'), { org: EXAMPLE_ORG }), ...memberErrors }
}

export const listMembers = {
  tags,
  security,
  operationId: 'listMembers',
  summary: 'List the members',
  description: 'Every member of the organization, active or suspended, in the order they joined. Any active member may list them.',
  headers,
  response: { 200: withSuccessExample(Success(Type.Object({ members: Type.Array(Member) }), 'The members'), { members: [EXAMPLE_MEMBER] }), ...memberErrors }
}

export const updateMember = {
  tags,
  security,
  operationId: 'updateMember',
  summary: 'Change a member\'s role or status',
  description: 'org_admin only. Suspending a member refuses their refresh tokens at once (403); their current access token keeps ' +
    'verifying on `/public/verify` with `membership.status: "suspended"` until it expires, and every `/org` route refuses them. ' +
    'The last active org_admin cannot be demoted or suspended (409).',
  headers,
  params,
  body: Type.Object({ role: Type.Optional(OrgRole), status: Type.Optional(ActiveStatus) }, {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ status: 'suspended' }, { role: 'org_admin' }]
  }),
  response: {
    200: withSuccessExample(Success(Type.Object({ member: Member }), 'The member after the change'), { member: { ...EXAMPLE_MEMBER, role: 'member', status: 'suspended' } }),
    ...adminErrors,
    ...errorResponse(400, ['body must NOT have fewer than 1 properties', 'validation_failed'], missingSlug),
    ...errors(413, 415)
  }
}

export const removeMember = {
  tags,
  security,
  operationId: 'removeMember',
  summary: 'Remove a member',
  description: 'org_admin only. Deletes the membership and ends every session the user has in this organization at once: their ' +
    'access tokens stop verifying (`/public/verify` answers `valid: false`) and their refresh tokens are refused. ' +
    'The last active org_admin cannot be removed (409).',
  headers,
  params,
  response: {
    200: withSuccessExample(Success(Type.Object({ message: Type.String({ description: 'Always "Member removed"', examples: ['Member removed'] }) }), 'Member removed'), { message: 'Member removed' }),
    ...adminErrors
  }
}
