import { Type } from '@sinclair/typebox'
import { Id, NullableString, OrgSlugHeader, Slug, StringEnum, Success, Timestamp, errorResponse, errors, withSuccessExample, type ErrorExample } from './common.ts'
import { ALL_EVENT_TYPES, EVENT_TYPES, INTERNAL_EVENT_TYPES } from '../db/queries/events.ts'
import { encodeCursor } from '../src/event-cursor.ts'

const userSecurity: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]

export const MAX_PAGE_SIZE = 200
export const DEFAULT_PAGE_SIZE = 50

const EXAMPLE_ORG_ID = 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E'
const ADA = { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8F', email: 'ada@acme.test' }
const GRACE = { id: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8G', email: 'grace@acme.test' }

const DATA_BY_TYPE = [
  '| `type` | When | `data` |',
  '|---|---|---|',
  '| `org.updated` | the platform admin changed the org | `{ org, changes: [field names] }` |',
  '| `member.invited` | an invitation was sent | `{ inviteId, email, role, invitedBy: { id, email }, expiresAt }` |',
  '| `member.joined` | an invitation was accepted (actor: the new member), or the platform admin added a member | `{ user: { id, name, email }, membership: { role, status, joinedAt } }` |',
  '| `member.updated` | role or status changed | `{ user: { id, email }, membership: { role, status, joinedAt }, changes: [field names] }` |',
  '| `member.removed` | a member was removed | `{ user: { id, email }, removedBy: { id, email } \\| null }` |',
  '| `invite.revoked` | an invitation was revoked | `{ inviteId, email }` |',
  '| `user.login` | a user logged in to this org | `{ user: { id, email }, sessionId, userAgent }` |',
  '| `api_key.created` / `api_key.updated` / `api_key.revoked` | a key was created, changed or revoked | `{ apiKey }` (never the key), plus `changes` for updated |',
  '| `api_key.rotated` | a key was rotated | `{ apiKey: <the new key>, previous: { id, expiresAt, revokedAt } }` |',
  '| `api_key.leaked` | a key was reported leaked and revoked | `{ apiKey, source, url, actionTaken: "revoked" }` |',
  '| `webhook.created` / `webhook.updated` / `webhook.deleted` | a webhook endpoint changed | `{ webhook }` (never its secret) |',
  '',
  'Outside the catalogue, recorded and listed but never delivered by webhooks:',
  '',
  '| `type` | When | `data` |',
  '|---|---|---|',
  '| `org.created` | the platform admin (or the CLI\'s `create-org`) created the org | `{ org }` |',
  '| `user.created` | the platform admin (or the CLI) created a user; the event belongs to no org (`orgId` null), so only `GET /admin/audit-events` lists it | `{ user: { id, name, email } }` |',
  '| `session.revoked` | a refresh token was presented twice, so its session was ended (actor `system`) | `{ reason: "refresh_token_reuse", userId }` |',
  '| `user.password_reset` | the operator reset a password with the CLI; no org | `{ via: "cli", sessionsEnded }` |'
].join('\n')

export const AuditEvent = Type.Object({
  id: Id('evt', 'Event id'),
  type: StringEnum(ALL_EVENT_TYPES, {
    description: `What happened: one of the catalogue of §10 (${EVENT_TYPES.join(', ')}) or an internal type (${INTERNAL_EVENT_TYPES.join(', ')}), never delivered by webhooks`
  }),
  orgId: NullableString(Id('org', 'Organization id'), { description: 'The organization the event belongs to; null for org-less events (user.created, user.password_reset)', examples: [EXAMPLE_ORG_ID] }),
  actor: Type.Object({
    type: StringEnum(['user', 'admin', 'system'], { description: '`user`: a signed-in user; `admin`: the platform admin (ADMIN_TOKEN); `system`: the operator\'s CLI or the service itself' }),
    id: NullableString(Id('usr', 'User id'), { description: 'The acting user\'s id; null for admin and system', examples: [ADA.id] }),
    email: NullableString(Type.String(), { description: 'The acting user\'s email when it acted; null for admin and system', examples: [ADA.email] })
  }, { description: 'Who made the change' }),
  target: Type.Object({
    type: Type.String({ description: 'What kind of thing changed: org, user, api_key, webhook, invite, session', examples: ['user'] }),
    id: Type.String({ description: 'Its id', examples: [GRACE.id] })
  }, { description: 'What the change was made to' }),
  // Typed as a record, not `{}` (which any value but null and undefined satisfies).
  data: Type.Unsafe<Record<string, unknown>>(Type.Object({}, {
    additionalProperties: true,
    description: 'The change, by type. Never a secret: no raw key, token, password, webhook secret or invite token.\n\n' + DATA_BY_TYPE
  })),
  ip: NullableString(Type.String(), { description: 'The client address of the request that caused the event (as derived under TRUST_PROXY); null for the CLI and background jobs', examples: ['203.0.113.7'] }),
  createdAt: Timestamp
}, { description: 'An audit event (§10)' })

const EXAMPLE_EVENTS = [
  {
    id: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D93',
    type: 'member.removed',
    orgId: EXAMPLE_ORG_ID,
    actor: { type: 'user', ...ADA },
    target: { type: 'user', id: GRACE.id },
    data: { user: GRACE, removedBy: ADA },
    ip: '203.0.113.7',
    createdAt: '2025-05-23T12:03:00.000Z'
  },
  {
    id: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D92',
    type: 'member.updated',
    orgId: EXAMPLE_ORG_ID,
    actor: { type: 'user', ...ADA },
    target: { type: 'user', id: GRACE.id },
    data: { user: GRACE, membership: { role: 'member', status: 'suspended', joinedAt: '2025-05-20T09:00:00.000Z' }, changes: ['status'] },
    ip: '203.0.113.7',
    createdAt: '2025-05-23T12:02:00.000Z'
  },
  {
    id: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D91',
    type: 'user.login',
    orgId: EXAMPLE_ORG_ID,
    actor: { type: 'user', ...ADA },
    target: { type: 'user', id: ADA.id },
    data: { user: ADA, sessionId: 'ses_01JZ8Q4K7X3W5N2M9B6V1C0D90', userAgent: 'Mozilla/5.0' },
    ip: '203.0.113.7',
    createdAt: '2025-05-23T12:01:00.000Z'
  },
  {
    id: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D8Z',
    type: 'org.updated',
    orgId: EXAMPLE_ORG_ID,
    actor: { type: 'admin', id: null, email: null },
    target: { type: 'org', id: EXAMPLE_ORG_ID },
    data: {
      org: { id: EXAMPLE_ORG_ID, slug: 'acme', name: 'Acme Inc.', plan: 'enterprise', status: 'active', appUrl: null, createdAt: '2025-05-01T08:00:00.000Z' },
      changes: ['plan']
    },
    ip: '198.51.100.20',
    createdAt: '2025-05-23T12:00:00.000Z'
  }
]
const EXAMPLE_CURSOR = encodeCursor({ createdAt: '2025-05-23T12:00:00.000000Z', id: 'evt_01JZ8Q4K7X3W5N2M9B6V1C0D8Z' })

export const EventPageBody = Type.Object({
  events: Type.Array(AuditEvent, { description: 'Newest first (by time, then id)' }),
  nextCursor: NullableString(Type.String(), {
    description: 'Pass as `cursor` to get the next (older) page; null on the last page. Opaque: it holds the position of the last event of this page',
    examples: [EXAMPLE_CURSOR]
  })
}, { description: 'A page of audit events' })

const ListQuery = {
  type: Type.Optional(Type.String({
    pattern: '^[a-z_.]+(,[a-z_.]+)*$',
    maxLength: 1000,
    description: 'Only these types, comma-separated; an unknown type is 400',
    examples: ['member.updated,member.removed']
  })),
  actorId: Type.Optional(Id('usr', 'Only events made by this user')),
  targetId: Type.Optional(Type.String({ pattern: '^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$', description: 'Only events about this user, key, webhook, invitation, org or session (its id)', examples: [GRACE.id] })),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'Only events at or after this time (ISO 8601)', examples: ['2025-05-01T00:00:00.000Z'] })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'Only events before this time (ISO 8601, exclusive)', examples: ['2025-06-01T00:00:00.000Z'] })),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: `Events per page, 1–${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})`, examples: ['50'] })),
  cursor: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,300}$', description: 'The `nextCursor` of the previous page', examples: [EXAMPLE_CURSOR] }))
}

const pagingNote = ' Newest first. A page ends with `nextCursor`; pass it back as `cursor` (with the same filters) for the next, ' +
  'older page, until `nextCursor` is null. Paging never skips nor repeats an event, even while new ones are written: a cursor ' +
  'holds the position (time to the microsecond, then id) of the last event shown, and the next page starts strictly after it; ' +
  'events written meanwhile are newer and appear on a fresh first page. Events older than `AUDIT_RETENTION_DAYS` (default 365) are deleted.'

const queryErrors: ErrorExample[] = [
  ['querystring.limit must be between 1 and 200', 'validation_failed'],
  ['querystring.type: unknown event type "member.deleted"', 'validation_failed'],
  ['querystring.cursor is not a cursor this API returned: pass nextCursor of the previous page', 'validation_failed']
]

export const listOrgAuditEvents = {
  tags: ['Audit log'],
  security: userSecurity,
  operationId: 'listAuditEvents',
  summary: 'List the organization\'s audit events',
  description: 'The audit log of the organization of `X-Org-Slug` (§10): who changed what, when and from where. ' +
    'Requires an active membership with role `org_admin` (401 without a valid access token, 403 otherwise).' + pagingNote,
  headers: Type.Object({ 'x-org-slug': OrgSlugHeader }),
  querystring: Type.Object(ListQuery, { additionalProperties: false }),
  response: {
    200: withSuccessExample(Success(EventPageBody, 'A page of events'), { events: EXAMPLE_EVENTS, nextCursor: EXAMPLE_CURSOR }),
    ...errorResponse(400, ['Missing X-Org-Slug header', 'validation_failed'], ...queryErrors),
    ...errorResponse(401, ['Invalid or expired access token', 'unauthorized'],
      ['Authentication required: send Authorization: Bearer <accessToken> or the access_token cookie', 'unauthorized']),
    ...errorResponse(403, ['This action requires the org_admin role', 'forbidden'],
      ['Your membership in this organization is not active', 'forbidden'], ['Organization is suspended', 'org_suspended']),
    ...errorResponse(404, ['Organization not found', 'not_found']),
    ...errors(503)
  }
}

export const adminListAuditEvents = {
  tags: ['Admin'],
  security: [{ adminToken: [] }],
  operationId: 'adminListAuditEvents',
  summary: 'List audit events across organizations',
  description: 'The audit log of every organization, and the org-less events (users created, passwords reset), for the platform ' +
    'operator; `org` (a slug) keeps one organization\'s events (404 for an unknown slug).' + pagingNote +
    ' Authenticated by `Authorization: Bearer <ADMIN_TOKEN>` (401 otherwise); with `NODE_ENV=production` and no `ADMIN_TOKEN` the admin API answers 404.',
  querystring: Type.Object({ ...ListQuery, org: Type.Optional(Slug) }, { additionalProperties: false }),
  response: {
    200: withSuccessExample(Success(EventPageBody, 'A page of events'), { events: EXAMPLE_EVENTS, nextCursor: EXAMPLE_CURSOR }),
    ...errorResponse(400, ...queryErrors),
    ...errorResponse(401, ['Invalid admin token', 'unauthorized']),
    ...errorResponse(404, ['Organization not found', 'not_found'], ['Route GET /api/v1/admin/audit-events not found', 'not_found']),
    ...errors(503)
  }
}
