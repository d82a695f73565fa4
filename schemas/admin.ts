import { Type } from '@sinclair/typebox'
import { NullableRateLimit } from './api-keys.ts'
import { Org, Slug, Email, OrgRole, ActiveStatus, Timestamp, Id, Success, errorResponse, errors, withSuccessExample, PublicUser, type ErrorExample } from './common.ts'

const tags = ['Admin']
const security = [{ adminToken: [] }]
const AppUrl = Type.Union([Type.String({ format: 'uri', maxLength: 2048, pattern: '^https?://' }), Type.Null()], { description: 'The org application URL (http or https), or null' })
const Plan = Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z0-9_-]+$', description: 'Plan name, e.g. free, pro, enterprise', examples: ['pro'] })
const Name = Type.String({ minLength: 1, maxLength: 200, description: 'Display name', examples: ['Acme Inc.'] })

const authNote = ' Authenticated by `Authorization: Bearer <ADMIN_TOKEN>` (401 otherwise); no `X-Org-Slug`. When the server runs ' +
  'with `NODE_ENV=production` and no `ADMIN_TOKEN`, the admin API is disabled and every route answers 404.'
const EXAMPLE_ORG = { id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', slug: 'acme', name: 'Acme Inc.', plan: 'pro', status: 'active', appUrl: null, createdAt: '2025-05-23T12:00:00.000Z', rateLimit: null }
const OrgRateLimit = NullableRateLimit('The organization\'s budget per API key on `/public`: at most `max` requests per `windowSeconds` for each key ' +
  'without a budget of its own; null → the service default (`RATE_LIMIT_MAX` per `RATE_LIMIT_WINDOW`). No key of the org may be given a faster average rate (max / windowSeconds).')
/** A membership as the admin's addMember answers it: the user's id beside the role and status. */
export const AddedMembership = Type.Object({ userId: Id('usr', 'User id'), role: OrgRole, status: ActiveStatus, joinedAt: Timestamp })
/** The organization as the platform admin sees it: §2's fields plus its budget per API key (§9). */
export const AdminOrg = Type.Object({ ...Org.properties, rateLimit: OrgRateLimit }, { description: 'An organization (tenant), with its budget per API key' })
const EXAMPLE_USER = { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8F', email: 'ada@acme.test', name: 'Ada Lovelace', role: 'user', isEmailVerified: false, createdAt: '2025-05-23T12:00:00.000Z' }
const invalidToken: ErrorExample = ['Invalid admin token', 'unauthorized']
const disabled = (method: string, path: string): ErrorExample => [`Route ${method} /api/v1/admin${path} not found`, 'not_found']
const orgNotFound: ErrorExample = ['Organization not found', 'not_found']

export const createOrg = {
  tags,
  security,
  operationId: 'adminCreateOrg',
  summary: 'Create an organization',
  description: 'Creates a tenant. `plan` defaults to `free`, `status` starts `active`, `appUrl` defaults to null. The slug is ' +
    'what clients send as `X-Org-Slug`; a slug already taken is 409.' + authNote,
  body: Type.Object({ slug: Slug, name: Name, plan: Type.Optional(Plan), appUrl: Type.Optional(AppUrl) }, { additionalProperties: false, examples: [{ slug: 'acme', name: 'Acme Inc.', plan: 'pro' }] }),
  response: {
    201: withSuccessExample(Success(Type.Object({ org: AdminOrg }), 'Organization created'), { org: EXAMPLE_ORG }),
    ...errorResponse(400, ['body.slug is required', 'validation_failed'], ['body.slug must match pattern "^[a-z0-9-]{3,48}$"', 'validation_failed']),
    ...errorResponse(401, invalidToken),
    ...errorResponse(404, disabled('POST', '/orgs')),
    ...errorResponse(409, ['Organization slug "acme" is already taken', 'conflict']),
    ...errors(413, 415, 503)
  }
}

export const listOrgs = {
  tags,
  security,
  operationId: 'adminListOrgs',
  summary: 'List organizations',
  description: 'Every organization, oldest first.' + authNote,
  response: {
    200: withSuccessExample(Success(Type.Object({ orgs: Type.Array(AdminOrg) }), 'The organizations'), { orgs: [EXAMPLE_ORG] }),
    ...errorResponse(401, invalidToken),
    ...errorResponse(404, disabled('GET', '/orgs')),
    ...errors(503)
  }
}

export const updateOrg = {
  tags,
  security,
  operationId: 'adminUpdateOrg',
  summary: 'Update an organization',
  description: 'Changes name, plan, status, appUrl or rateLimit (at least one). Suspending an org makes every `/auth`, `/org` and `/public` ' +
    'request for it answer 403 at once, on every instance. `rateLimit` is the budget of each of its API keys that has none of its own ' +
    '(null: the service default), and the fastest average rate an org admin may give a key; a new budget applies from the next ' +
    '`/public` request on every instance. Budgets already stored on keys are not rewritten.' + authNote,
  params: Type.Object({ slug: Slug }),
  body: Type.Object({
    name: Type.Optional(Name),
    plan: Type.Optional(Plan),
    status: Type.Optional(ActiveStatus),
    appUrl: Type.Optional(AppUrl),
    rateLimit: Type.Optional(OrgRateLimit)
  }, { additionalProperties: false, minProperties: 1, examples: [{ status: 'suspended' }, { rateLimit: { max: 1000, windowSeconds: 60 } }] }),
  response: {
    200: withSuccessExample(Success(Type.Object({ org: AdminOrg }), 'The updated organization'), { org: { ...EXAMPLE_ORG, status: 'suspended' } }),
    ...errorResponse(400, ['body must NOT have fewer than 1 properties', 'validation_failed'], ['body.rateLimit.max must be <= 1000000', 'validation_failed']),
    ...errorResponse(401, invalidToken),
    ...errorResponse(404, orgNotFound),
    ...errors(413, 415, 503)
  }
}

export const createUser = {
  tags,
  security,
  operationId: 'adminCreateUser',
  summary: 'Create a user',
  description: 'Creates a global user account (not yet a member of any org: add it with `POST /admin/orgs/{slug}/members`). ' +
    'The email is unique, case-insensitive (409 if taken); the password, at least 10 characters, is stored as a scrypt hash and never returned.' + authNote,
  body: Type.Object({
    email: Email,
    name: Name,
    password: Type.String({ minLength: 10, maxLength: 1024, description: 'At least 10 characters', examples: ['correct horse battery'] })
  }, { additionalProperties: false, examples: [{ email: 'ada@acme.test', name: 'Ada Lovelace', password: 'correct horse battery' }] }),
  response: {
    201: withSuccessExample(Success(Type.Object({ user: Type.Composite([PublicUser, Type.Object({ createdAt: Timestamp })]) }), 'User created'), { user: EXAMPLE_USER }),
    ...errorResponse(400, ['body.password must NOT have fewer than 10 characters', 'validation_failed']),
    ...errorResponse(401, invalidToken),
    ...errorResponse(404, disabled('POST', '/users')),
    ...errorResponse(409, ['A user with this email already exists', 'conflict']),
    ...errors(413, 415, 503)
  }
}

export const addMember = {
  tags,
  security,
  operationId: 'adminAddMember',
  summary: 'Add a user to an organization',
  description: 'Makes a user a member of the organization; `role` defaults to `member`, `status` starts `active`. ' +
    'The first `org_admin` of an org is made this way; after that, org admins manage members through `/org/members`.' + authNote,
  params: Type.Object({ slug: Slug }),
  body: Type.Object({ userId: Id('usr', 'The user to add'), role: Type.Optional(OrgRole) }, { additionalProperties: false, examples: [{ userId: EXAMPLE_USER.id, role: 'org_admin' }] }),
  response: {
    201: withSuccessExample(Success(Type.Object({
      membership: AddedMembership
    }), 'Membership created'), { membership: { userId: EXAMPLE_USER.id, role: 'org_admin', status: 'active', joinedAt: '2025-05-23T12:00:00.000Z' } }),
    ...errorResponse(400, ['body.userId is required', 'validation_failed']),
    ...errorResponse(401, invalidToken),
    ...errorResponse(404, orgNotFound, ['User not found', 'not_found']),
    ...errorResponse(409, ['User is already a member of this organization', 'conflict']),
    ...errors(413, 415, 503)
  }
}
