import t from 'tap'
import { sql } from 'kysely'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { addMember, adminHeaders, build, createOrgWithMember, createUser, sessionToken, uniqueSlug } from '../helper.ts'
import { ID, ISO } from '../auth-helpers.ts'
import { seedEvents as seed, type SeedOptions } from '../support/audit-events.ts'

// GET /org/audit-events and GET /admin/audit-events (§10): the event shape, the filters, and
// paging by cursor that never skips nor repeats an event, also while events are written.

interface ApiEvent { id: string, type: string, orgId: string | null, actor: { type: string, id: string | null, email: string | null }, target: { type: string, id: string }, data: Record<string, unknown>, ip: string | null, createdAt: string }

async function orgWithAdmin (app: FastifyInstance) {
  const { org, user } = await createOrgWithMember(app, 'org_admin')
  const { token } = await sessionToken(app, { userId: user.id, orgId: org.id, slug: org.slug, role: 'org_admin' })
  const get = (query = '', headers: Record<string, string> = {}): Promise<LightMyRequestResponse> =>
    app.inject({ method: 'GET', url: `/api/v1/org/audit-events${query}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${token}`, ...headers } })
  return { org, admin: user, token, get }
}

function adminGet (app: FastifyInstance, query = ''): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: `/api/v1/admin/audit-events${query}`, headers: adminHeaders })
}

/** Every event a paging client sees, page after page, with the given page size and filters. */
async function pageThrough (get: (query: string) => Promise<LightMyRequestResponse>, filters: string, limit: number, between?: () => Promise<unknown>): Promise<ApiEvent[]> {
  const seen: ApiEvent[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 10_000; pages++) {
    const query: string = `?limit=${limit}${filters}${cursor === null ? '' : `&cursor=${cursor}`}`
    const [res]: [LightMyRequestResponse, unknown] = await Promise.all([get(query), between?.()])
    if (res.statusCode !== 200) throw new Error(`${query}: ${res.statusCode} ${res.body}`)
    const { events, nextCursor }: { events: ApiEvent[], nextCursor: string | null } = res.json().data
    seen.push(...events)
    if (nextCursor === null) return seen
    cursor = nextCursor
  }
  throw new Error('paging did not end')
}

const seedEvents = (app: FastifyInstance, orgId: string, count: number, options?: SeedOptions) => seed(app.db, orgId, count, options)

t.test('an event has exactly the shape of §10; an org_admin sees only their org\'s events, newest first', async t => {
  const app = await build(t)
  const { org, admin, get } = await orgWithAdmin(app)
  const member = await createUser(app)
  await addMember(app, org.slug, member.id, 'member')
  const other = await orgWithAdmin(app)

  const res = await get()
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], 'application/json')
  const { events, nextCursor } = res.json().data
  t.equal(nextCursor, null, 'one page')
  t.same(events.map((event: ApiEvent) => event.type), ['member.joined', 'member.joined', 'org.created'], 'newest first')
  for (const event of events) {
    t.same(Object.keys(event), ['id', 'type', 'orgId', 'actor', 'target', 'data', 'ip', 'createdAt'])
    t.match(event, { id: ID('evt'), orgId: org.id, actor: { type: 'admin', id: null, email: null }, ip: '127.0.0.1', createdAt: ISO })
  }
  t.same(events[0].data, { user: { id: member.id, name: 'Test User', email: member.email }, membership: { role: 'member', status: 'active', joinedAt: events[0].data.membership.joinedAt } })
  t.same(events[1].target, { type: 'user', id: admin.id })
  t.notOk(events.some((event: ApiEvent) => event.orgId === other.org.id), 'not another org\'s events')

  const { token: memberToken } = await sessionToken(app, { userId: member.id, orgId: org.id, slug: org.slug, role: 'member' })
  const byMember = await get('', { authorization: `Bearer ${memberToken}` })
  t.equal(byMember.statusCode, 403)
  t.same(byMember.json(), { status: 'error', message: 'This action requires the org_admin role', code: 'forbidden' })
  const anonymous = await app.inject({ method: 'GET', url: '/api/v1/org/audit-events', headers: { 'x-org-slug': org.slug } })
  t.equal(anonymous.statusCode, 401)
  const otherAdmin = await other.get('', { 'x-org-slug': org.slug })
  t.equal(otherAdmin.statusCode, 401, 'an access token of another org')
})

t.test('filters: type (comma-separated), actorId, targetId, since, until, limit', async t => {
  const app = await build(t)
  const { org, admin, token, get } = await orgWithAdmin(app)
  const [alice, bob] = [await createUser(app), await createUser(app)]
  await addMember(app, org.slug, alice.id, 'member')
  await addMember(app, org.slug, bob.id, 'member')
  const patch = (userId: string, payload: object) => app.inject({ method: 'PATCH', url: `/api/v1/org/members/${userId}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${token}` }, payload })
  t.equal((await patch(alice.id, { role: 'org_admin' })).statusCode, 200)
  const middle = new Date()
  await new Promise(resolve => setTimeout(resolve, 5))
  t.equal((await patch(bob.id, { status: 'suspended' })).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/v1/org/members/${bob.id}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${token}` } })).statusCode, 200)

  const types = async (query: string): Promise<string[]> => {
    const res = await get(query)
    t.equal(res.statusCode, 200, `${query} → 200`)
    return res.json().data.events.map((event: ApiEvent) => `${event.type} ${event.target.id === alice.id ? 'alice' : event.target.id === bob.id ? 'bob' : 'other'}`)
  }
  t.same(await types('?type=member.updated'), ['member.updated bob', 'member.updated alice'])
  t.same(await types('?type=member.removed,member.updated'), ['member.removed bob', 'member.updated bob', 'member.updated alice'])
  t.same(await types(`?actorId=${admin.id}`), ['member.removed bob', 'member.updated bob', 'member.updated alice'], 'what the org_admin did')
  t.same(await types(`?targetId=${bob.id}`), ['member.removed bob', 'member.updated bob', 'member.joined bob'])
  t.same(await types(`?targetId=${bob.id}&type=member.joined`), ['member.joined bob'], 'filters combine')
  t.same(await types(`?since=${middle.toISOString()}`), ['member.removed bob', 'member.updated bob'])
  t.same(await types(`?until=${middle.toISOString()}&type=member.updated`), ['member.updated alice'])
  t.same(await types(`?since=${middle.toISOString()}&until=${middle.toISOString()}`), [], 'an empty range')
  t.same(await types(`?actorId=${alice.id}`), [], 'an actor who did nothing')
  // actor and type together: the page's ids come first from the org-type index (it holds the actor)
  t.same(await types(`?actorId=${admin.id}&type=member.updated`), ['member.updated bob', 'member.updated alice'], 'actor and type')
  t.same(await types(`?actorId=${admin.id}&type=member.removed,member.updated`), ['member.removed bob', 'member.updated bob', 'member.updated alice'], 'actor and two types')
  t.same(await types(`?actorId=${alice.id}&type=member.updated`), [], 'actor and type, none')
  t.same(await types(`?actorId=${admin.id}&type=member.updated&since=${middle.toISOString()}`), ['member.updated bob'], 'actor, type and since')
  const byPage = await pageThrough(get, `&actorId=${admin.id}&type=member.removed,member.updated`, 1)
  t.same(byPage.map(event => event.type), ['member.removed', 'member.updated', 'member.updated'], 'actor and types, a page of one at a time')
  // several types: one ordered scan per type, merged (db/queries/events.ts)
  const twoTypes = await pageThrough(get, '&type=member.joined,member.updated', 1)
  t.same(twoTypes.map(event => event.type), (await types('?type=member.joined,member.updated')).map(line => line.split(' ')[0]), 'two types, a page of one at a time')
  t.same(await types(`?type=member.removed,member.updated&since=${middle.toISOString()}`), ['member.removed bob', 'member.updated bob'], 'two types and since')

  const page = (await get('?limit=2')).json().data
  t.equal(page.events.length, 2)
  t.type(page.nextCursor, 'string')

  // The admin route: the same filters across orgs, plus org.
  const everywhere = (await adminGet(app, `?targetId=${alice.id}`)).json().data.events.map((event: ApiEvent) => event.type)
  t.same(everywhere, ['member.updated', 'member.joined', 'user.created'], 'the org-less user.created too')
  const inOrg = (await adminGet(app, `?org=${org.slug}&targetId=${alice.id}`)).json().data.events.map((event: ApiEvent) => event.type)
  t.same(inOrg, ['member.updated', 'member.joined'])
})

t.test('bad queries are 400 naming the parameter; an unknown org is 404; a wrong admin token 401', async t => {
  const app = await build(t)
  const { get } = await orgWithAdmin(app)
  const cases: Array<[string, string]> = [
    ['?limit=0', 'querystring.limit must be between 1 and 200'],
    ['?limit=201', 'querystring.limit must be between 1 and 200'],
    ['?limit=ten', 'querystring.limit must match pattern "^[0-9]{1,3}$"'],
    ['?type=member.deleted', 'querystring.type: unknown event type "member.deleted"'],
    ['?type=member.updated,,member.removed', 'querystring.type must match pattern "^[a-z_.]+(,[a-z_.]+)*$"'],
    ['?actorId=admin', 'querystring.actorId must match pattern "^usr_[0-9A-HJKMNP-TV-Z]{26}$"'],
    ['?targetId=x', 'querystring.targetId must match pattern "^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$"'],
    ['?since=yesterday', 'querystring.since must match format "date-time"'],
    ['?until=2025-13-01T00:00:00Z', 'querystring.until must match format "date-time"'],
    ['?cursor=bm90IGEgY3Vyc29y', 'querystring.cursor is not a cursor this API returned: pass nextCursor of the previous page'],
    // U+0000 is refused before validation, naming the field (§1, be45228)
    ['?cursor=%00', 'querystring.cursor must not contain U+0000 or a lone surrogate (an unpaired \\ud800-\\udfff)'],
    ['?type=%F0%9F%92%A5', 'querystring.type must match pattern "^[a-z_.]+(,[a-z_.]+)*$"']
  ]
  for (const [query, message] of cases) {
    for (const res of [await get(query), await adminGet(app, query)]) {
      t.equal(res.statusCode, 400, query)
      t.same(res.json(), { status: 'error', message, code: 'validation_failed' }, query)
    }
  }
  const unknownOrg = await adminGet(app, `?org=${uniqueSlug('nope')}`)
  t.equal(unknownOrg.statusCode, 404)
  t.same(unknownOrg.json(), { status: 'error', message: 'Organization not found', code: 'not_found' })
  const wrongToken = await app.inject({ method: 'GET', url: '/api/v1/admin/audit-events', headers: { authorization: 'Bearer nope' } })
  t.equal(wrongToken.statusCode, 401)
})

t.test('paging visits every event once, in order, through ties and events within one millisecond', async t => {
  const app = await build(t)
  const { org, get } = await orgWithAdmin(app)
  await seedEvents(app, org.id, 40, { step: '0 seconds' }) // 40 events at one instant: ordered by id alone
  await seedEvents(app, org.id, 40, { step: '1 microsecond', type: 'member.removed' }) // 40 within one millisecond
  const all = (await pageThrough(get, '', 200)).map(event => event.id)
  t.equal(all.length, 82, 'the 80 seeded and the set-up\'s org.created and member.joined')
  for (const limit of [1, 7, 50]) {
    const paged = (await pageThrough(get, '', limit)).map(event => event.id)
    t.same(paged, all, `pages of ${limit}: the same events in the same order`)
  }
  const removed = await pageThrough(get, '&type=member.removed', 3)
  t.equal(removed.length, 40)
  t.equal(new Set(removed.map(event => event.id)).size, 40, 'with a filter too')
  t.same(await pageThrough(async query => await adminGet(app, query), `&org=${org.slug}`, 9), await pageThrough(get, '', 200), 'the admin route pages the same way')
})

t.test('paging while events are written: nothing skipped, nothing repeated', async t => {
  const app = await build(t)
  const { org, token, get } = await orgWithAdmin(app)
  const members = [await createUser(app), await createUser(app)]
  for (const member of members) await addMember(app, org.slug, member.id, 'member')
  await seedEvents(app, org.id, 120)
  const before = (await pageThrough(get, '', 200)).map(event => event.id)

  // Between and during page reads, real writes add events: each member's role flips each time
  // (two members, so the two concurrent writes never race for one row and each is a change).
  let flips = 0
  const roles = new Map(members.map(member => [member.id, 'member']))
  const flip = async (userId: string): Promise<void> => {
    const role = roles.get(userId) === 'member' ? 'org_admin' : 'member'
    roles.set(userId, role)
    flips++
    const res = await app.inject({ method: 'PATCH', url: `/api/v1/org/members/${userId}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${token}` }, payload: { role } })
    if (res.statusCode !== 200) throw new Error(`write: ${res.statusCode}`)
  }
  const writes = async (): Promise<void> => { await Promise.all(members.map(member => flip(member.id))) }
  const seen = await pageThrough(get, '', 8, writes)
  t.ok(flips >= 30, `${flips} events written while paging`)

  const ids = seen.map(event => event.id)
  t.equal(new Set(ids).size, ids.length, 'no event twice')
  const missing = before.filter(id => !ids.includes(id))
  t.same(missing, [], 'every event that existed when paging began was seen')
  // The order is (created_at, id) newest first, created_at to the microsecond as stored: within one
  // millisecond, concurrent writes' ids (made before their statements) need not follow their times.
  const stored = new Map((await app.db.selectFrom('audit_events')
    .select(['id', sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')`.as('at')])
    .where('id', 'in', ids).execute()).map(row => [row.id, row.at]))
  for (let i = 1; i < seen.length; i++) {
    const [newer, older] = [seen[i - 1], seen[i]]
    const [newerAt, olderAt] = [stored.get(newer.id) ?? '', stored.get(older.id) ?? '']
    if (newerAt < olderAt || (newerAt === olderAt && newer.id < older.id)) {
      t.fail(`out of order at ${i}: ${newer.id} ${newerAt} before ${older.id} ${olderAt}`)
    }
  }
  const after = (await pageThrough(get, '', 200)).map(event => event.id)
  t.equal(after.length, before.length + flips, 'each write recorded exactly one event')
})
