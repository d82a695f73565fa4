import type { Transporter } from 'nodemailer'
import type Mail from 'nodemailer/lib/mailer'
import type { Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../../src/config.ts'
import type { Database, MailOutboxRow } from '../../db/database.ts'
import { backgroundDb } from '../../db/connect.ts'
import { cancelDeadInviteMail, cancelPendingInviteMail, deleteFinishedMail, enqueueInviteMail, findInviteMailContext, type InviteMailContext } from '../../db/queries/mail-outbox.ts'
import type { PeriodicJob } from '../../src/periodic-job.ts'
import { firstAttemptAt, startOutboxWorker, type AttemptOutcome, type OutboxWorker } from '../../src/outbox-worker.ts'
import { derivedKey, openSecret, sealSecret, sha256Hex } from '../../src/secrets.ts'
import { newId } from '../../src/ids.ts'

// One attempt must end well inside its lease, so a slow mail server never lets two instances
// send the same mail at once.
const SEND_TIMEOUT_MS = 30_000
const LEASE_MS = 60_000
const POLL_INTERVAL_MS = 5_000
export const MAIL_RETENTION_DAYS = 30

/**
 * Hourly, in one instance at a time: mail that can no longer matter (its invitation lapsed or
 * ended) gives up its token, and finished rows older than 30 days are deleted.
 */
export const mailOutboxRetention: PeriodicJob = {
  name: 'mail-outbox-retention',
  intervalMs: 3600_000,
  batchSize: 1000,
  async runBatch (trx) {
    return await cancelDeadInviteMail(trx, 1000) + await deleteFinishedMail(trx, MAIL_RETENTION_DAYS, 1000)
  }
}

/**
 * The invitation link: INVITE_URL, else the org's appUrl + /accept-invite, with ?org=<slug>&token=<token>.
 * Null when there is neither: a mail without a link is no invitation.
 */
export function inviteLink (config: Pick<Config, 'inviteUrl'>, org: { slug: string, appUrl: string | null }, token: string): string | null {
  let url: URL
  if (config.inviteUrl !== null) {
    url = new URL(config.inviteUrl)
  } else if (org.appUrl !== null) {
    url = new URL(org.appUrl)
    url.pathname = url.pathname.replace(/\/+$/, '') + '/accept-invite'
  } else {
    return null
  }
  url.searchParams.set('org', org.slug)
  url.searchParams.set('token', token)
  return url.toString()
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)
}

/** "2026-12-07 14:30 UTC" */
function utcMinute (date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}

/** The message a receiver reads: subject, a plain-text part and an HTML part saying the same. */
export function inviteMessage (context: InviteMailContext, link: string): Pick<Mail.Options, 'subject' | 'text' | 'html'> {
  const { org, inviter } = context
  const as = context.role === 'org_admin' ? 'an admin' : 'a member'
  const expires = utcMinute(context.expiresAt)
  const text = [
    `${inviter.name} (${inviter.email}) invited you to join ${org.name} as ${as}.`,
    '',
    'Accept the invitation:',
    link,
    '',
    `The invitation expires on ${expires}. If you did not expect it, you can ignore this email.`,
    ''
  ].join('\n')
  const html = [
    '<!doctype html>',
    '<html><body style="font-family: sans-serif; line-height: 1.5">',
    `<p>${escapeHtml(inviter.name)} (${escapeHtml(inviter.email)}) invited you to join <strong>${escapeHtml(org.name)}</strong> as ${as}.</p>`,
    `<p><a href="${escapeHtml(link)}">Accept the invitation</a></p>`,
    `<p>The invitation expires on ${expires}. If you did not expect it, you can ignore this email.</p>`,
    '</body></html>'
  ].join('\n')
  return { subject: `${inviter.name} invited you to join ${org.name}`, text, html }
}

export interface InviteMailer {
  /** writes the invitation's mail in the invitation's transaction; it is sent after commit (call wake) */
  enqueue: (trx: Kysely<Database>, invite: { id: string, orgId: string, email: string }, token: string) => Promise<void>
  /** drops the invitation's mail not sent yet and erases its token */
  cancel: (trx: Kysely<Database>, inviteId: string) => Promise<void>
  wake: () => void
  start: () => void
  stop: () => Promise<void>
  /** sends what is due now (tests) */
  runNow: () => Promise<number>
}

/**
 * Invitation mail through the outbox: the row (with the token sealed, since the link needs it)
 * commits with the invitation; a worker in every instance sends due rows with nodemailer and
 * retries failures on MAIL_RETRY_SCHEDULE. The token is erased from the row as soon as it leaves
 * 'pending' (sent, failed for good, or cancelled by a revoke, resend or accept). A request never
 * waits for the mail server.
 */
export function createInviteMailer (input: { db: Kysely<Database>, log: FastifyBaseLogger, config: Config & { smtpUrl: string } }): InviteMailer {
  const { log, config } = input
  const db = backgroundDb(input.db)
  const key = derivedKey(config.apiKeyPepper, 'invitation mail token')
  // nodemailer (~2 MB of heap) is loaded by the first mail to send, not by every server start.
  let transport: Transporter | null = null
  async function mailTransport (): Promise<Transporter> {
    const { default: nodemailer } = await import('nodemailer')
    transport ??= nodemailer.createTransport({
      url: config.smtpUrl,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: SEND_TIMEOUT_MS
    }, { from: config.mailFrom })
    return transport
  }
  let worker: OutboxWorker | null = null

  async function attempt (row: MailOutboxRow, signal: AbortSignal): Promise<AttemptOutcome> {
    const context = await findInviteMailContext(db, row.invite_id)
    const cancelled: AttemptOutcome = { done: true, set: { status: 'cancelled' } }
    if (context === undefined || context.status !== 'pending' || context.expiresAt.getTime() <= Date.now() || row.sealed_token === null) return cancelled
    let token: string
    try {
      token = openSecret(key, row.sealed_token, row.invite_id)
    } catch {
      return { done: false, final: true, error: 'the sealed token does not open (API_KEY_PEPPER changed since it was sealed): resend the invitation' }
    }
    // A resend replaced the token: this mail's link would be dead.
    if (sha256Hex(token) !== context.tokenHash) return cancelled
    const link = inviteLink(config, context.org, token)
    if (link === null) return { done: false, final: true, error: 'no invitation link: set INVITE_URL or the organization\'s appUrl, then resend the invitation' }
    const message: Mail.Options & { signal: AbortSignal } = {
      to: context.email,
      ...inviteMessage(context, link),
      signal: AbortSignal.any([signal, AbortSignal.timeout(SEND_TIMEOUT_MS)])
    }
    await (await mailTransport()).sendMail(message)
    log.info({ inviteId: row.invite_id, mailId: row.id }, 'invitation mail sent')
    return { done: true, set: { sent_at: new Date() } }
  }

  return {
    async enqueue (trx, invite, token) {
      await enqueueInviteMail(trx, {
        id: newId('mail'),
        orgId: invite.orgId,
        inviteId: invite.id,
        recipient: invite.email,
        sealedToken: sealSecret(key, token, invite.id),
        nextAttemptAt: firstAttemptAt(config.mailRetryScheduleMs)
      })
    },
    cancel: cancelPendingInviteMail,
    wake: () => worker?.wake(),
    start () {
      worker ??= startOutboxWorker<MailOutboxRow>({
        name: 'invitation mail',
        table: 'mail_outbox',
        db,
        log,
        retryScheduleMs: config.mailRetryScheduleMs,
        leaseMs: LEASE_MS,
        pollIntervalMs: POLL_INTERVAL_MS,
        attempt,
        whenFinished: { sealed_token: null }
      })
    },
    async stop () {
      await worker?.stop()
      transport?.close()
    },
    runNow: async () => await worker?.runNow() ?? 0
  }
}
