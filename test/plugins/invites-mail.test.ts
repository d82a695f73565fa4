import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, uniqueEmail } from '../helper.ts'
import { noteSecret } from '../log-secrets.ts'
import type { Config } from '../../src/config.ts'
import { accept, asAdmin, lapse, orgWithAdmin } from '../support/invites.ts'
import { startPeriodicJob } from '../../src/periodic-job.ts'
import { mailOutboxRetention } from '../../plugins/invites/mail.ts'
import { startSmtpServer, type ReceivedMail, type TestSmtpServer } from '../support/smtp.ts'

// §12 with a mailer: invitations go out through a real SMTP server started here (smtp-server on
// 127.0.0.1), and each test reads the message as its receiver would. The tests of this file run
// one after another and share that server.

const MAIL_FROM = 'Acme Invitations <invitations@acme.test>'
const APP_URL = 'https://app.acme.test/'
const sha256 = (value: string): string => createHash('sha256').update(value).digest('hex')

let smtp: TestSmtpServer

t.before(async () => {
  smtp = await startSmtpServer()
})
t.teardown(() => smtp.stop())

function withMailer (t: Test, overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  return build(t, { smtpUrl: smtp.url, mailFrom: MAIL_FROM, mailRetryScheduleMs: [0, 300, 300, 300, 300, 300], ...overrides })
}

/** The mail to this address, once it has arrived. */
async function mailTo (email: string, ms = 20_000): Promise<ReceivedMail> {
  const deadline = Date.now() + ms
  for (;;) {
    const found = smtp.received.find(mail => mail.envelope.to.includes(email))
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`no mail to ${email} within ${ms} ms`)
    await sleep(20)
  }
}

function mailsTo (email: string): ReceivedMail[] {
  return smtp.received.filter(mail => mail.envelope.to.includes(email))
}

/** The token of the invitation link in a message's text part. */
function tokenOf (mail: ReceivedMail): string {
  const token = /[?&]token=([A-Za-z0-9_-]+)/.exec(mail.text ?? '')?.[1]
  if (token === undefined) throw new Error(`no link in ${mail.text}`)
  noteSecret(token)
  return token
}

async function outboxOf (app: FastifyInstance, inviteId: string) {
  return await app.db.selectFrom('mail_outbox').selectAll().where('invite_id', '=', inviteId).orderBy('created_at').execute()
}

async function until (condition: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(20)
  }
}

t.test('the invitation is mailed: from MAIL_FROM, with both parts naming the org and the inviter, the link and the expiry', async t => {
  const app = await withMailer(t)
  const fixture = await orgWithAdmin(app, { appUrl: APP_URL, name: 'Ünïcorn <Labs> & Co' })
  const email = uniqueEmail('grace')
  const res = await asAdmin(app, fixture).invite({ email, role: 'org_admin' })
  t.equal(res.statusCode, 201, res.body)
  const { invite } = res.json().data
  t.same(Object.keys(res.json().data), ['invite'], 'no inviteToken with a mailer')

  const mail = await mailTo(email)
  const token = tokenOf(mail)
  t.notOk(res.body.includes(token), 'the token is in no API answer')
  t.same(mail.envelope, { from: 'invitations@acme.test', to: [email] })
  t.equal(mail.headers.from, MAIL_FROM)
  t.equal(mail.headers.to, email)
  t.equal(mail.headers.subject, 'Test User invited you to join Ünïcorn <Labs> & Co')
  t.match(mail.headers['content-type'], /^multipart\/alternative;/)
  t.ok(mail.headers['message-id'], 'a Message-ID')

  const link = `https://app.acme.test/accept-invite?org=${fixture.org.slug}&token=${token}`
  const expires = `${invite.expiresAt.slice(0, 16).replace('T', ' ')} UTC`
  t.equal(mail.text, [
    `Test User (${fixture.admin.email}) invited you to join Ünïcorn <Labs> & Co as an admin.`,
    '',
    'Accept the invitation:',
    link,
    '',
    `The invitation expires on ${expires}. If you did not expect it, you can ignore this email.`,
    ''
  ].join('\n'))
  const html = mail.html ?? ''
  t.match(html, 'invited you to join <strong>Ünïcorn &lt;Labs&gt; &amp; Co</strong> as an admin.', 'the org name, escaped')
  t.match(html, `Test User (${fixture.admin.email})`)
  t.match(html, `<a href="${link.replace('&', '&amp;')}">Accept the invitation</a>`)
  t.match(html, `expires on ${expires}`)
  t.notMatch(html, '<Labs>', 'no markup from the org name')

  t.equal(sha256(token), (await app.db.selectFrom('invites').select('token_hash').where('id', '=', invite.id).executeTakeFirstOrThrow()).token_hash)
  await until(async () => (await outboxOf(app, invite.id))[0]?.status === 'succeeded')
  const [row] = await outboxOf(app, invite.id)
  t.match(row, { status: 'succeeded', attempts: 1, sealed_token: null, last_error: null })
  t.ok(row.sent_at, 'sent_at set')

  const joined = await accept(app, fixture.org.slug, { token, name: 'Grace Hopper', password: 'correct horse battery' })
  t.equal(joined.statusCode, 200, joined.body)
  t.match(joined.json().data, { user: { email, isEmailVerified: true }, membership: { role: 'org_admin', status: 'active' } },
    'an account created from an emailed invitation has a verified email')
})

t.test('INVITE_URL, when set, is the link (its own query kept)', async t => {
  const app = await withMailer(t, { inviteUrl: 'https://id.example.test/join?lang=en' })
  const fixture = await orgWithAdmin(app)
  const email = uniqueEmail()
  t.equal((await asAdmin(app, fixture).invite({ email })).statusCode, 201)
  const mail = await mailTo(email)
  t.match(mail.text, `https://id.example.test/join?lang=en&org=${fixture.org.slug}&token=${tokenOf(mail)}\n`)
})

t.test('with a mailer, an org without appUrl and no INVITE_URL cannot invite: 409, nothing written', async t => {
  const app = await withMailer(t)
  const fixture = await orgWithAdmin(app)
  const res = await asAdmin(app, fixture).invite({ email: uniqueEmail() })
  t.equal(res.statusCode, 409)
  t.same(res.json(), { status: 'error', message: 'Invitation mail needs a link: set the organization\'s appUrl or INVITE_URL', code: 'conflict' })
  t.same((await asAdmin(app, fixture).list()).json().data.invites, [])
})

t.test('a failing mail server delays the mail but loses no invitation', async t => {
  const app = await withMailer(t)
  const fixture = await orgWithAdmin(app, { appUrl: APP_URL })
  await smtp.stop()
  const email = uniqueEmail('patient')
  const started = Date.now()
  const res = await asAdmin(app, fixture).invite({ email })
  t.equal(res.statusCode, 201, 'the request does not fail')
  const inviteId = res.json().data.invite.id
  await until(async () => (await outboxOf(app, inviteId))[0]?.attempts >= 2)
  const [failing] = await outboxOf(app, inviteId)
  t.match(failing, { status: 'pending', last_error: /ECONNREFUSED|connect/ }, 'failed attempts are kept for a retry')
  t.ok(failing.sealed_token, 'the token is kept until the mail is sent')
  t.same(mailsTo(email), [])

  await smtp.start()
  const mail = await mailTo(email)
  t.ok(Date.now() - started < 20_000, 'retried soon after the server is back (MAIL_RETRY_SCHEDULE)')
  const token = tokenOf(mail)
  await until(async () => (await outboxOf(app, inviteId))[0]?.status === 'succeeded')
  const [sent] = await outboxOf(app, inviteId)
  t.ok(sent.attempts >= 3, `${sent.attempts} attempts`)
  t.equal(sent.sealed_token, null, 'erased once sent')
  t.equal((await accept(app, fixture.org.slug, { token, name: 'Patient', password: 'correct horse battery' })).statusCode, 200)
  await sleep(700)
  t.equal(mailsTo(email).length, 1, 'sent once')
})

t.test('the mail outlives the instance that wrote it: another instance sends it', async t => {
  const writer = await withMailer(t, { mailRetryScheduleMs: [0, 60_000] })
  const fixture = await orgWithAdmin(writer, { appUrl: APP_URL })
  await smtp.stop()
  const email = uniqueEmail('survivor')
  const inviteId = (await asAdmin(writer, fixture).invite({ email })).json().data.invite.id
  await until(async () => (await outboxOf(writer, inviteId))[0]?.attempts === 1)
  await writer.close()
  await smtp.start()
  const next = await withMailer(t)
  // The minute before the retry passes (the one clock this test turns).
  await next.db.updateTable('mail_outbox').set({ next_attempt_at: new Date() }).where('invite_id', '=', inviteId).execute()
  const mail = await mailTo(email)
  t.equal(sha256(tokenOf(mail)), (await next.db.selectFrom('invites').select('token_hash').where('id', '=', inviteId).executeTakeFirstOrThrow()).token_hash)
  await until(async () => (await outboxOf(next, inviteId))[0]?.status === 'succeeded')
  t.equal((await outboxOf(next, inviteId))[0].attempts, 2)
})

t.test('resend mails a new link and the old one is dead; a revoked invitation\'s unsent mail is never sent', async t => {
  const app = await withMailer(t)
  const fixture = await orgWithAdmin(app, { appUrl: APP_URL })
  const api = asAdmin(app, fixture)
  const email = uniqueEmail('again')
  const { invite } = (await api.invite({ email })).json().data
  const firstToken = tokenOf(await mailTo(email))
  const resent = await api.resend(invite.id)
  t.equal(resent.statusCode, 200)
  t.same(Object.keys(resent.json().data), ['invite'], 'no inviteToken with a mailer')
  await until(async () => mailsTo(email).length === 2)
  const secondToken = tokenOf(mailsTo(email)[1])
  t.not(secondToken, firstToken)
  t.notOk(resent.body.includes(secondToken))
  t.same((await accept(app, fixture.org.slug, { token: firstToken, name: 'Again', password: 'correct horse battery' })).json().code, 'invalid_invite')

  await smtp.stop()
  const revokedEmail = uniqueEmail('revoked')
  const revoked = (await api.invite({ email: revokedEmail })).json().data.invite
  await until(async () => (await outboxOf(app, revoked.id))[0]?.attempts >= 1)
  t.equal((await api.revoke(revoked.id)).statusCode, 200)
  const [row] = await outboxOf(app, revoked.id)
  t.match(row, { status: 'cancelled', sealed_token: null }, 'cancelled with the revoke, token erased')
  await smtp.start()
  await sleep(1500)
  t.same(mailsTo(revokedEmail), [], 'never sent')

  t.equal((await accept(app, fixture.org.slug, { token: secondToken, name: 'Again', password: 'correct horse battery' })).statusCode, 200)
})

t.test('two instances share the outbox: each invitation is mailed exactly once', async t => {
  const a = await withMailer(t)
  const b = await withMailer(t)
  const fixture = await orgWithAdmin(a, { appUrl: APP_URL })
  const emails = Array.from({ length: 10 }, () => uniqueEmail('shared'))
  for (const [i, email] of emails.entries()) {
    t.equal((await asAdmin(i % 2 === 0 ? a : b, fixture).invite({ email })).statusCode, 201)
  }
  for (const email of emails) await mailTo(email)
  await sleep(1000)
  t.same(emails.map(email => mailsTo(email).length), emails.map(() => 1))
})

t.test('retention: queued mail of a lapsed invitation gives up its token; finished rows go after 30 days', async t => {
  const app = await withMailer(t)
  const fixture = await orgWithAdmin(app, { appUrl: APP_URL })
  const api = asAdmin(app, fixture)
  const old = (await api.invite({ email: uniqueEmail('old') })).json().data.invite
  const recent = (await api.invite({ email: uniqueEmail('recent') })).json().data.invite
  await until(async () => (await outboxOf(app, old.id))[0]?.status === 'succeeded' && (await outboxOf(app, recent.id))[0]?.status === 'succeeded')
  await smtp.stop()
  const queued = (await api.invite({ email: uniqueEmail('queued') })).json().data.invite
  await until(async () => (await outboxOf(app, queued.id))[0]?.attempts >= 1)
  await app.close()
  await smtp.start()

  await lapse(app, queued.id)
  await app.db.updateTable('mail_outbox').set({ created_at: new Date(Date.now() - 31 * 86400_000) }).where('invite_id', '=', old.id).execute()
  const job = startPeriodicJob(app.db, app.log, mailOutboxRetention)
  t.teardown(() => job.stop())
  t.ok(await job.runNow() >= 2)
  t.match(await outboxOf(app, queued.id), [{ status: 'cancelled', sealed_token: null }])
  t.same(await outboxOf(app, old.id), [], 'deleted after 30 days')
  t.equal((await outboxOf(app, recent.id)).length, 1, 'kept within 30 days')
})
