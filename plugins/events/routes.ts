import { guardOrgAdminRoutes } from '../auth-jwt.ts'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Kysely } from 'kysely'
import type { Database } from '../../db/database.ts'
import * as schemas from '../../schemas/audit.ts'
import { isEventType, listEvents, type EventQuery } from '../../db/queries/events.ts'
import { findOrgBySlug } from '../../db/queries/orgs.ts'
import { decodeCursor, encodeCursor } from '../../src/event-cursor.ts'
import { NotFound, ValidationFailed } from '../../src/errors.ts'
import { guardedOrg } from '../org-slug.ts'

interface ListQuery {
  type?: string
  actorId?: string
  targetId?: string
  since?: string
  until?: string
  limit?: string
  cursor?: string
}

function timeParameter (name: 'since' | 'until', value: string | undefined): Date | undefined {
  if (value === undefined) return undefined
  const time = new Date(value)
  // The schema's date-time format admits a few forms Date cannot read (a leap second).
  if (Number.isNaN(time.getTime())) throw new ValidationFailed(`querystring.${name} must be an ISO 8601 date-time such as 2025-05-23T12:00:00.000Z`)
  return time
}

/** The query of §10, checked beyond what the schema can say. */
function parseListQuery (query: ListQuery): Omit<EventQuery, 'orgId'> {
  const limit = query.limit === undefined ? schemas.DEFAULT_PAGE_SIZE : Number(query.limit)
  if (limit < 1 || limit > schemas.MAX_PAGE_SIZE) throw new ValidationFailed(`querystring.limit must be between 1 and ${schemas.MAX_PAGE_SIZE}`)
  const types = query.type === undefined ? undefined : [...new Set(query.type.split(','))]
  const unknown = types?.find(type => !isEventType(type))
  if (unknown !== undefined) throw new ValidationFailed(`querystring.type: unknown event type "${unknown}"`)
  let after
  if (query.cursor !== undefined) {
    after = decodeCursor(query.cursor) ?? undefined
    if (after === undefined) throw new ValidationFailed('querystring.cursor is not a cursor this API returned: pass nextCursor of the previous page')
  }
  return {
    types,
    actorId: query.actorId,
    targetId: query.targetId,
    since: timeParameter('since', query.since),
    until: timeParameter('until', query.until),
    after,
    limit
  }
}

async function eventPage (db: Kysely<Database>, query: EventQuery) {
  const { events, next } = await listEvents(db, query)
  return { events, nextCursor: next === null ? null : encodeCursor(next) }
}

/** GET /org/audit-events: the org's audit log, for its org_admins. */
export const orgAuditEvents: FastifyPluginAsyncTypebox = async (app) => {
  guardOrgAdminRoutes(app)

  app.get('/audit-events', { schema: schemas.listOrgAuditEvents }, async (request) => {
    return await eventPage(app.db, { ...parseListQuery(request.query), orgId: guardedOrg(request).id })
  })
}

/** GET /admin/audit-events: every org's audit log, for the platform operator; registered inside the admin plugin, behind its token. */
export const adminAuditEvents: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/audit-events', { schema: schemas.adminListAuditEvents }, async (request) => {
    const { org: slug, ...query } = request.query
    let orgId
    if (slug !== undefined) {
      const org = await findOrgBySlug(app.db, slug)
      if (org === null) throw new NotFound('Organization not found')
      orgId = org.id
    }
    return await eventPage(app.db, { ...parseListQuery(query), orgId })
  })
}
