import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { sql } from 'kysely'
import { addMember, adminHeaders, build, createUser, sessionToken, uniqueEmail } from '../helper.ts'
import { ID, ISO, cookie, login, me } from '../auth-helpers.ts'
import { accept, asAdmin, asUser, eventsOf, lapse, orgWithAdmin } from '../support/invites.ts'

// §12 through HTTP, without a mailer: the token comes back once in the API answer.
// (test/plugins/invites-mail.test.ts covers the mail.)

const INVALID_INVITE = { status: 'error', message: 'Invalid or expired invitation', code: 'invalid_invite' }
const WEEK_MS = 7 * 86400_000
const sha256 = (value: string): string => createHash('sha256').update(value).digest('hex')

t.test('an org_admin invites by email: 201 with the invite of §12, and without a mailer the token, once', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const { org, admin } = fixture
  const email = uniqueEmail('Grace')
  const before = Date.now()
  const res = await asAdmin(app, fixture).invite({ email: email.toUpperCase() })
  t.equal(res.statusCode, 201, res.body)
  const { invite, inviteToken } = res.json().data
  t.same(Object.keys(res.json().data).sort(), ['invite', 'inviteToken'])
  t.same(Object.keys(invite).sort(), ['createdAt', 'email', 'expiresAt', 'id', 'invitedBy', 'role', 'status'])
  t.match(invite, { id: ID('inv'), email: email.toLowerCase(), role: 'member', status: 'pending', createdAt: ISO, expiresAt: ISO })
  t.same(invite.invitedBy, { id: admin.id, email: admin.email })
  const expiresIn = Date.parse(invite.expiresAt) - before
  t.ok(expiresIn >= WEEK_MS - 5000 && expiresIn <= WEEK_MS + 60_000, 'valid 7 days')

  t.match(inviteToken, /^[A-Za-z0-9_-]{43,}$/, '32 random bytes or more, base64url')
  const stored = await app.db.selectFrom('invites').selectAll().where('id', '=', invite.id).executeTakeFirstOrThrow()
  t.equal(stored.token_hash, sha256(inviteToken), 'stored as its SHA-256')
  t.notOk(JSON.stringify(stored).includes(inviteToken), 'the token itself is stored nowhere')
  t.equal(await app.db.selectFrom('mail_outbox').select('id').where('invite_id', '=', invite.id).executeTakeFirst(), undefined, 'no mail without a mailer')

  const listed = (await asAdmin(app, fixture).list()).json().data.invites
  t.same(listed, [invite], 'listed as created, never with a token')

  const [event] = await eventsOf(app, org.id, 'member.invited')
  t.match(event, { actor_type: 'user', actor_id: admin.id, actor_email: admin.email, target_type: 'invite', target_id: invite.id })
  t.same(event.data, { inviteId: invite.id, email: invite.email, role: 'member', invitedBy: { id: admin.id, email: admin.email }, expiresAt: invite.expiresAt })
  t.notOk(JSON.stringify(await eventsOf(app, org.id)).includes(inviteToken), 'no event holds the token')

  const second = await asAdmin(app, fixture).invite({ email: uniqueEmail('admin'), role: 'org_admin' })
  t.equal(second.statusCode, 201)
  t.equal(second.json().data.invite.role, 'org_admin')
})

t.test('bad invitations are 400 naming the field; other members, anonymous callers and suspended admins are refused', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const { org } = fixture
  for (const [payload, message] of [
    [{ email: 'not-an-email' }, 'body.email must match format "email"'],
    [{}, 'body.email is required'],
    [{ email: uniqueEmail(), role: 'owner' }, 'body.role must be one of: org_admin, member']
  ] as const) {
    const res = await asAdmin(app, fixture).invite(payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.same(res.json(), { status: 'error', message, code: 'validation_failed' })
  }
  const malformed = await asAdmin(app, fixture).revoke('inv_nope')
  t.equal(malformed.statusCode, 400)
  t.match(malformed.json(), { code: 'validation_failed', message: /params\.inviteId/ })

  const { id: inviteId } = (await asAdmin(app, fixture).invite({ email: uniqueEmail() })).json().data.invite
  const member = await createUser(app)
  await addMember(app, org.slug, member.id, 'member')
  const memberToken = (await sessionToken(app, { userId: member.id, orgId: org.id, slug: org.slug, role: 'member' })).token
  const asMember = asUser(app, org.slug, memberToken)
  for (const [name, res] of [
    ['invite', await asMember.invite({ email: uniqueEmail() })],
    ['list', await asMember.list()],
    ['revoke', await asMember.revoke(inviteId)],
    ['resend', await asMember.resend(inviteId)]
  ] as const) {
    t.equal(res.statusCode, 403, `${name} by a member`)
    t.same(res.json(), { status: 'error', message: 'This action requires the org_admin role', code: 'forbidden' })
  }
  const anonymous = await app.inject({ method: 'GET', url: '/api/v1/org/invites', headers: { 'x-org-slug': org.slug } })
  t.equal(anonymous.statusCode, 401)
  const other = await createUser(app)
  await addMember(app, org.slug, other.id, 'org_admin')
  const otherToken = (await sessionToken(app, { userId: other.id, orgId: org.id, slug: org.slug, role: 'org_admin' })).token
  await app.inject({ method: 'PATCH', url: `/api/v1/org/members/${other.id}`, headers: { 'x-org-slug': org.slug, authorization: `Bearer ${fixture.admin.token}` }, payload: { status: 'suspended' } })
  const suspended = await asUser(app, org.slug, otherToken).invite({ email: uniqueEmail() })
  t.equal(suspended.statusCode, 403)
  t.equal(suspended.json().message, 'Your membership in this organization is not active')
  t.same((await asAdmin(app, fixture).list()).json().data.invites.map((i: { id: string }) => i.id), [inviteId], 'nothing else was created')
})

t.test('409 when the email belongs to a member or has a pending invitation here; a lapsed one gives way', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const api = asAdmin(app, fixture)
  const ownEmail = await api.invite({ email: fixture.admin.email.toUpperCase() })
  t.equal(ownEmail.statusCode, 409)
  t.same(ownEmail.json(), { status: 'error', message: `${fixture.admin.email.toLowerCase()} is already a member of this organization`, code: 'conflict' })

  const email = uniqueEmail()
  const first = (await api.invite({ email })).json().data
  const again = await api.invite({ email: email.toUpperCase(), role: 'org_admin' })
  t.equal(again.statusCode, 409)
  t.same(again.json(), { status: 'error', message: `${email.toLowerCase()} already has a pending invitation to this organization`, code: 'conflict' })

  const elsewhere = await orgWithAdmin(app)
  t.equal((await asAdmin(app, elsewhere).invite({ email })).statusCode, 201, 'a pending invitation in another org does not count')

  await lapse(app, first.invite.id)
  const renewed = await api.invite({ email })
  t.equal(renewed.statusCode, 201, 'a lapsed invitation is no longer pending')
  t.not(renewed.json().data.invite.id, first.invite.id)
  t.same((await api.list()).json().data.invites.map((i: { id: string }) => i.id), [renewed.json().data.invite.id])
  t.same((await accept(app, fixture.org.slug, { token: first.inviteToken, name: 'Grace', password: 'long enough password' })).json(), INVALID_INVITE)
  t.equal((await api.resend(first.invite.id)).statusCode, 404, 'the replaced invitation cannot be resent')
})

t.test('GET /org/invites: pending, unexpired, newest first', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const api = asAdmin(app, fixture)
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await api.invite({ email: uniqueEmail() })).json().data.invite.id)
  await api.revoke(ids[1])
  await lapse(app, ids[2])
  const token = (await api.resend(ids[3])).json().data.inviteToken
  t.equal((await accept(app, fixture.org.slug, { token, name: 'Joiner', password: 'long enough password' })).statusCode, 200)
  const res = await api.list()
  t.equal(res.statusCode, 200)
  t.same(res.json().data.invites.map((i: { id: string }) => i.id), [ids[4], ids[0]])
  t.same((await asAdmin(app, await orgWithAdmin(app)).list()).json().data.invites, [], 'another org sees none of them')
})

t.test('revoke: the token stops working, a second revoke is 404, invite.revoked is recorded', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const api = asAdmin(app, fixture)
  const { invite, inviteToken } = (await api.invite({ email: uniqueEmail() })).json().data
  const other = await orgWithAdmin(app)
  const cross = await asAdmin(app, other).revoke(invite.id)
  t.equal(cross.statusCode, 404, 'another org\'s invitation')
  t.same(cross.json(), { status: 'error', message: 'Invitation not found or not pending', code: 'not_found' })

  const res = await api.revoke(invite.id)
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'success', data: { message: 'Invite revoked' } })
  t.same(await eventsOf(app, fixture.org.id, 'invite.revoked').then(events => events.map(e => ({ actor: e.actor_id, target: e.target_id, data: e.data }))),
    [{ actor: fixture.admin.id, target: invite.id, data: { inviteId: invite.id, email: invite.email } }])
  t.same((await accept(app, fixture.org.slug, { token: inviteToken, name: 'Grace', password: 'long enough password' })).json(), INVALID_INVITE)
  t.equal((await api.revoke(invite.id)).statusCode, 404, 'no longer pending')
  t.equal((await api.resend(invite.id)).statusCode, 404, 'a revoked invitation cannot be resent')
  const lapsed = (await api.invite({ email: uniqueEmail() })).json().data.invite
  await lapse(app, lapsed.id)
  t.equal((await api.revoke(lapsed.id)).statusCode, 404, 'an expired invitation is not pending')
  t.equal((await eventsOf(app, fixture.org.id, 'invite.revoked')).length, 1, 'a refused revoke records nothing')
})

t.test('resend: same id, a new token (the old one dies), expiresAt 7 days from now, member.invited again', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const api = asAdmin(app, fixture)
  const { invite, inviteToken: oldToken } = (await api.invite({ email: uniqueEmail(), role: 'org_admin' })).json().data
  await app.db.updateTable('invites').set({ expires_at: new Date(Date.now() + 86400_000) }).where('id', '=', invite.id).execute()
  const before = Date.now()
  const res = await api.resend(invite.id)
  t.equal(res.statusCode, 200, res.body)
  const { invite: resent, inviteToken } = res.json().data
  t.same({ ...resent, expiresAt: null }, { ...invite, expiresAt: null }, 'the same invitation')
  const expiresIn = Date.parse(resent.expiresAt) - before
  t.ok(expiresIn >= WEEK_MS - 5000 && expiresIn <= WEEK_MS + 60_000, `expires 7 days from the resend (${expiresIn} ms)`)
  t.not(inviteToken, oldToken)
  t.same((await accept(app, fixture.org.slug, { token: oldToken, name: 'Grace', password: 'long enough password' })).json(), INVALID_INVITE, 'the old token is dead')

  const events = await eventsOf(app, fixture.org.id, 'member.invited')
  t.equal(events.length, 2)
  t.same(events[1].data, { inviteId: invite.id, email: invite.email, role: 'org_admin', invitedBy: invite.invitedBy, expiresAt: resent.expiresAt })

  await lapse(app, invite.id)
  t.same((await api.list()).json().data.invites, [], 'lapsed')
  const renewed = await api.resend(invite.id)
  t.equal(renewed.statusCode, 200, 'a lapsed invitation is renewed by a resend')
  t.same((await api.list()).json().data.invites.map((i: { id: string }) => i.id), [invite.id])
  const joined = await accept(app, fixture.org.slug, { token: renewed.json().data.inviteToken, name: 'Grace', password: 'long enough password' })
  t.equal(joined.statusCode, 200)
  t.equal(joined.json().data.membership.role, 'org_admin')
  t.equal((await api.resend(invite.id)).statusCode, 404, 'an accepted invitation cannot be resent')
  t.equal((await asAdmin(app, await orgWithAdmin(app)).resend(invite.id)).statusCode, 404, 'nor by another org')
})

t.test('accept with a new email: name and password required, the account is created and logged in as login does', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const { org } = fixture
  const { invite, inviteToken } = (await asAdmin(app, fixture).invite({ email: uniqueEmail('new') })).json().data

  const bare = await accept(app, org.slug, { token: inviteToken })
  t.equal(bare.statusCode, 400)
  t.same(bare.json(), { status: 'error', message: 'body.name and body.password are required: no account has the invited email yet', code: 'validation_failed' })
  t.equal((await accept(app, org.slug, { token: inviteToken, name: 'Grace' })).json().message, 'body.password is required: no account has the invited email yet')
  const short = await accept(app, org.slug, { token: inviteToken, name: 'Grace', password: 'too short' })
  t.equal(short.statusCode, 400)
  t.same(short.json(), { status: 'error', message: 'body.password must NOT have fewer than 10 characters', code: 'validation_failed' })
  t.equal((await accept(app, org.slug, {})).statusCode, 400, 'no token')
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/auth/accept-invite', payload: { token: inviteToken } })).statusCode, 400, 'no X-Org-Slug')

  const password = 'correct horse battery staple'
  const res = await accept(app, org.slug, { token: inviteToken, name: '  Grace Hopper ', password })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json().data
  t.same(Object.keys(body).sort(), ['accessToken', 'membership', 'refreshToken', 'user'], 'the shape of login')
  t.match(body.user, { id: ID('usr'), name: 'Grace Hopper', email: invite.email, role: 'user', isEmailVerified: false })
  t.same(body.membership, { role: 'member', status: 'active' })
  for (const name of ['access_token', 'refresh_token']) {
    t.match(cookie(res, name), { httpOnly: true, secure: true, sameSite: 'Lax', path: '/' }, `${name} cookie as login`)
  }
  t.equal(cookie(res, 'access_token')?.value, body.accessToken)
  t.equal(cookie(res, 'refresh_token')?.value, body.refreshToken)
  t.equal((await eventsOf(app, org.id, 'user.login')).filter(e => e.actor_id === body.user.id).length, 1, 'a login, recorded as login records it')
  const who = await me(app, org.slug, body.accessToken)
  t.equal(who.statusCode, 200)
  t.match(who.json().data, { user: { id: body.user.id, email: invite.email }, membership: { role: 'member', status: 'active', joinedAt: ISO } })
  t.equal((await login(app, org.slug, invite.email, password)).statusCode, 200, 'the password set here logs in')

  // (the org's first member.joined is its admin's, added by the platform admin)
  const [joined] = (await eventsOf(app, org.id, 'member.joined')).filter(e => e.target_id === body.user.id)
  t.match(joined, { actor_type: 'user', actor_id: body.user.id, actor_email: invite.email, target_type: 'user', target_id: body.user.id })
  t.same(joined.data, { user: { id: body.user.id, name: 'Grace Hopper', email: invite.email }, membership: { role: 'member', status: 'active', joinedAt: who.json().data.membership.joinedAt } })
  t.notOk(JSON.stringify(joined).includes(inviteToken))
  t.notOk(JSON.stringify(joined).includes(password))

  t.same((await accept(app, org.slug, { token: inviteToken, name: 'Grace Hopper', password })).json(), INVALID_INVITE, 'single use')
  t.same((await asAdmin(app, fixture).list()).json().data.invites, [])
})

t.test('accept with an existing account: it joins without a password; name and password are ignored', async t => {
  const app = await build(t)
  const elsewhere = await orgWithAdmin(app)
  const existing = elsewhere.admin
  const fixture = await orgWithAdmin(app)
  const { inviteToken } = (await asAdmin(app, fixture).invite({ email: existing.email.toUpperCase(), role: 'org_admin' })).json().data
  const res = await accept(app, fixture.org.slug, { token: inviteToken, name: 'Someone Else', password: 'another password' })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json().data
  t.match(body.user, { id: existing.id, name: 'Test User', email: existing.email, isEmailVerified: false })
  t.same(body.membership, { role: 'org_admin', status: 'active' })
  t.equal((await login(app, fixture.org.slug, existing.email, existing.password)).statusCode, 200, 'the password is unchanged')
  t.equal((await login(app, fixture.org.slug, existing.email, 'another password')).statusCode, 401)
  t.equal((await login(app, elsewhere.org.slug, existing.email, existing.password)).statusCode, 200, 'still a member of the other org')
})

t.test('one 400 invalid_invite for every unusable token: unknown, expired, revoked, used, superseded, another org\'s', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const other = await orgWithAdmin(app)
  const api = asAdmin(app, fixture)
  const make = async (): Promise<{ invite: { id: string, email: string }, inviteToken: string }> => (await api.invite({ email: uniqueEmail() })).json().data
  const credentials = { name: 'Grace', password: 'long enough password' }

  const expired = await make()
  await lapse(app, expired.invite.id)
  const revoked = await make()
  await api.revoke(revoked.invite.id)
  const used = await make()
  t.equal((await accept(app, fixture.org.slug, { token: used.inviteToken, ...credentials })).statusCode, 200)
  const superseded = await make()
  await api.resend(superseded.invite.id)
  const othersInvite = (await asAdmin(app, other).invite({ email: uniqueEmail() })).json().data

  const cases: Array<[string, string]> = [
    ['unknown', randomBytes(32).toString('base64url')],
    ['malformed', 'x'],
    ['expired', expired.inviteToken],
    ['revoked', revoked.inviteToken],
    ['used', used.inviteToken],
    ['superseded', superseded.inviteToken],
    ['another org\'s', othersInvite.inviteToken]
  ]
  for (const [name, token] of cases) {
    const res = await accept(app, fixture.org.slug, { token, ...credentials })
    t.equal(res.statusCode, 400, name)
    t.same(res.json(), INVALID_INVITE, `${name}: the same answer`)
  }
  const ownOrg = await accept(app, other.org.slug, { token: othersInvite.inviteToken, ...credentials })
  t.equal(ownOrg.statusCode, 200, 'presenting it to another org did not spend it')
})

t.test('concurrent accepts of one token: exactly one wins', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const { invite, inviteToken } = (await asAdmin(app, fixture).invite({ email: uniqueEmail() })).json().data
  const results = await Promise.all(Array.from({ length: 6 }, () => accept(app, fixture.org.slug, { token: inviteToken, name: 'Racer', password: 'long enough password' })))
  t.same(results.map(r => r.statusCode).sort(), [200, 400, 400, 400, 400, 400])
  for (const res of results.filter(r => r.statusCode === 400)) t.same(res.json(), INVALID_INVITE)
  const users = await app.db.selectFrom('users').select('id').where(sql<string>`lower(email)`, '=', invite.email).execute()
  t.equal(users.length, 1, 'one account')
  t.equal((await eventsOf(app, fixture.org.id, 'member.joined')).filter(e => e.actor_type === 'user').length, 1, 'one member.joined by an invitee')

  // An existing account, joining: the same race.
  const existing = await createUser(app)
  const second = (await asAdmin(app, fixture).invite({ email: existing.email })).json().data
  const joins = await Promise.all(Array.from({ length: 6 }, () => accept(app, fixture.org.slug, { token: second.inviteToken })))
  t.same(joins.map(r => r.statusCode).sort(), [200, 400, 400, 400, 400, 400])
})

t.test('accept by an account that became a member meanwhile: 409, and the invitation stays pending', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const user = await createUser(app)
  const { invite, inviteToken } = (await asAdmin(app, fixture).invite({ email: user.email })).json().data
  await addMember(app, fixture.org.slug, user.id, 'member')
  const res = await accept(app, fixture.org.slug, { token: inviteToken })
  t.equal(res.statusCode, 409)
  t.same(res.json(), { status: 'error', message: 'You are already a member of this organization: log in instead', code: 'conflict' })
  t.same((await asAdmin(app, fixture).list()).json().data.invites.map((i: { id: string }) => i.id), [invite.id])
  t.equal((await asAdmin(app, fixture).resend(invite.id)).statusCode, 409, 'nor can it be resent')
  t.equal((await eventsOf(app, fixture.org.id, 'member.joined')).filter(e => e.actor_type === 'user').length, 0, 'no member.joined by an invitee')
})

t.test('accept in a suspended org is 403 and spends nothing', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const { inviteToken } = (await asAdmin(app, fixture).invite({ email: uniqueEmail() })).json().data
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${fixture.org.slug}`, headers: adminHeaders, payload: { status: 'suspended' } })
  const res = await accept(app, fixture.org.slug, { token: inviteToken, name: 'Grace', password: 'long enough password' })
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'org_suspended')
  await app.inject({ method: 'PATCH', url: `/api/v1/admin/orgs/${fixture.org.slug}`, headers: adminHeaders, payload: { status: 'active' } })
  t.equal((await accept(app, fixture.org.slug, { token: inviteToken, name: 'Grace', password: 'long enough password' })).statusCode, 200)
})

t.test('at most 100 invitations per org per hour, new or resent: 429 with Retry-After until the oldest leaves the hour', async t => {
  const app = await build(t)
  const fixture = await orgWithAdmin(app)
  const api = asAdmin(app, fixture)
  let first = ''
  const started = Date.now()
  for (let i = 0; i < 100; i++) {
    const res = await api.invite({ email: uniqueEmail('bulk') })
    t.equal(res.statusCode, 201, `invitation ${i + 1}`)
    if (i === 0) first = res.json().data.invite.id
  }
  const refused = await api.invite({ email: uniqueEmail('bulk') })
  t.equal(refused.statusCode, 429)
  t.equal(refused.json().code, 'rate_limited')
  const retryAfter = Number(refused.headers['retry-after'])
  const sinceFirst = Math.ceil((Date.now() - started) / 1000)
  t.ok(retryAfter >= 3600 - sinceFirst - 1 && retryAfter <= 3600, `Retry-After ${retryAfter} s: until the first of the hour's invitations is an hour old`)
  t.match(refused.json().message, /^Too many invitations: at most 100 per organization per hour; try again in \d+ seconds$/)
  t.equal((await api.resend(first)).statusCode, 429, 'a resend is an invitation sent too')
  t.equal((await asAdmin(app, await orgWithAdmin(app)).invite({ email: uniqueEmail() })).statusCode, 201, 'other orgs are not limited by it')

  // Let the hour run on: the 100 invitations were sent 3,590 seconds ago, then just over an hour ago.
  const sentAgo = (seconds: number) => app.db.updateTable('audit_events').set({ created_at: sql`now() - ${seconds} * interval '1 second'` })
    .where('org_id', '=', fixture.org.id).where('type', '=', 'member.invited').execute()
  await sentAgo(3590)
  const soon = await api.invite({ email: uniqueEmail('bulk') })
  t.equal(soon.statusCode, 429)
  const soonRetry = Number(soon.headers['retry-after'])
  t.ok(soonRetry >= 5 && soonRetry <= 11, `Retry-After ${soonRetry} s`)
  await sentAgo(3601)
  t.equal((await api.invite({ email: uniqueEmail('bulk') })).statusCode, 201, 'allowed again once an hour has passed')
  t.equal((await api.list()).json().data.invites.length, 101)
})
