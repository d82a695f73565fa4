import { Type } from '@sinclair/typebox'
import { Org, Slug, Email, OrgRole, ActiveStatus, Timestamp, Id, Success, errors, PublicUser } from './common.ts'

const tags = ['Admin']
const security = [{ adminToken: [] }]
const AppUrl = Type.Union([Type.String({ format: 'uri', maxLength: 2048, pattern: '^https?://' }), Type.Null()], { description: 'The org application URL (http or https), or null' })
const Plan = Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z0-9_-]+$', description: 'Plan name, e.g. free, pro, enterprise', examples: ['pro'] })
const Name = Type.String({ minLength: 1, maxLength: 200, description: 'Display name', examples: ['Acme Inc.'] })

export const createOrg = {
  tags,
  security,
  operationId: 'adminCreateOrg',
  summary: 'Create an organization',
  description: 'Creates a tenant. `plan` defaults to `free`, `status` starts `active`.',
  body: Type.Object({ slug: Slug, name: Name, plan: Type.Optional(Plan), appUrl: Type.Optional(AppUrl) }, { additionalProperties: false, examples: [{ slug: 'acme', name: 'Acme Inc.', plan: 'pro' }] }),
  response: { 201: Success(Type.Object({ org: Org }), 'Organization created'), ...errors(400, 401, 404, 409, 413, 415) }
}

export const listOrgs = {
  tags,
  security,
  operationId: 'adminListOrgs',
  summary: 'List organizations',
  description: 'Every organization, oldest first.',
  response: { 200: Success(Type.Object({ orgs: Type.Array(Org) })), ...errors(401, 404) }
}

export const updateOrg = {
  tags,
  security,
  operationId: 'adminUpdateOrg',
  summary: 'Update an organization',
  description: 'Changes name, plan, status or appUrl. Suspending an org makes every `/auth`, `/org` and `/public` request for it answer 403 at once.',
  params: Type.Object({ slug: Slug }),
  body: Type.Object({ name: Type.Optional(Name), plan: Type.Optional(Plan), status: Type.Optional(ActiveStatus), appUrl: Type.Optional(AppUrl) }, { additionalProperties: false, minProperties: 1, examples: [{ status: 'suspended' }] }),
  response: { 200: Success(Type.Object({ org: Org })), ...errors(400, 401, 404, 413, 415) }
}

export const createUser = {
  tags,
  security,
  operationId: 'adminCreateUser',
  summary: 'Create a user',
  description: 'Creates a global user account. The password is stored as a scrypt hash and never returned.',
  body: Type.Object({
    email: Email,
    name: Name,
    password: Type.String({ minLength: 10, maxLength: 1024, description: 'At least 10 characters', examples: ['correct horse battery'] })
  }, { additionalProperties: false, examples: [{ email: 'ada@acme.test', name: 'Ada Lovelace', password: 'correct horse battery' }] }),
  response: {
    201: Success(Type.Object({ user: Type.Composite([PublicUser, Type.Object({ createdAt: Timestamp })]) }), 'User created'),
    ...errors(400, 401, 404, 409, 413, 415)
  }
}

export const addMember = {
  tags,
  security,
  operationId: 'adminAddMember',
  summary: 'Add a user to an organization',
  description: 'Creates a membership; `role` defaults to `member`.',
  params: Type.Object({ slug: Slug }),
  body: Type.Object({ userId: Id('usr', 'The user to add'), role: Type.Optional(OrgRole) }, { additionalProperties: false, examples: [{ userId: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', role: 'org_admin' }] }),
  response: {
    201: Success(Type.Object({
      membership: Type.Object({ userId: Id('usr', 'User id'), role: OrgRole, status: ActiveStatus, joinedAt: Timestamp })
    }), 'Membership created'),
    ...errors(400, 401, 404, 409, 413, 415)
  }
}
