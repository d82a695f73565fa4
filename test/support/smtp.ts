import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { SMTPServer } from 'smtp-server'

// A real SMTP receiver for the tests (smtp-server, from nodemailer's authors) on 127.0.0.1, and a
// reader of what it receives as a mail client would see it: the envelope, the headers (unfolded,
// RFC 2047 words decoded) and the text and HTML parts (transfer encoding undone).

export const SMTP_USER = 'mailer'
export const SMTP_PASSWORD = 'smtp-test-password-0123'

export interface ReceivedMail {
  envelope: { from: string, to: string[] }
  /** the message as received, RFC 5322 */
  raw: string
  /** header names lower-cased */
  headers: Record<string, string>
  text: string | null
  html: string | null
}

export interface TestSmtpServer {
  /** smtp://user:pass@127.0.0.1:port */
  url: string
  port: number
  received: ReceivedMail[]
  /** resolves once `count` messages have arrived in all */
  waitFor: (count: number, ms?: number) => Promise<ReceivedMail[]>
  /** stops listening: connections are refused until start() */
  stop: () => Promise<void>
  /** listens again on the same port */
  start: () => Promise<void>
}

export async function startSmtpServer (): Promise<TestSmtpServer> {
  const received: ReceivedMail[] = []
  let server: SMTPServer | null = null
  let port = 0

  async function listen (): Promise<void> {
    server = new SMTPServer({
      // Plain SMTP with AUTH, as a submission server on a private network: no certificate to trust here.
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      logger: false,
      onAuth (auth, _session, callback) {
        if (auth.username === SMTP_USER && auth.password === SMTP_PASSWORD) return callback(null, { user: auth.username })
        callback(new Error('Invalid username or password'))
      },
      onData (stream, session, callback) {
        const chunks: Buffer[] = []
        stream.on('data', chunk => chunks.push(chunk))
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8')
          const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address
          received.push({ envelope: { from, to: session.envelope.rcptTo.map(r => r.address) }, raw, ...parseMessage(raw) })
          callback()
        })
      }
    })
    server.listen(port, '127.0.0.1')
    await once(server.server, 'listening')
    port = (server.server.address() as AddressInfo).port
  }

  await listen()
  return {
    get url () { return `smtp://${SMTP_USER}:${SMTP_PASSWORD}@127.0.0.1:${port}` },
    get port () { return port },
    received,
    async waitFor (count, ms = 20_000) {
      const deadline = Date.now() + ms
      while (received.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} messages, received ${received.length}`)
        await sleep(20)
      }
      return received
    },
    async stop () {
      const closing = server
      server = null
      if (closing === null) return
      await new Promise<void>(resolve => closing.close(() => resolve()))
    },
    start: listen
  }
}

/** Headers and parts of a message, as a mail client shows them. */
export function parseMessage (raw: string): Pick<ReceivedMail, 'headers' | 'text' | 'html'> {
  const { headers, body } = splitEntity(raw)
  const parts: Array<{ headers: Record<string, string>, body: string }> = []
  collectParts(headers, body, parts)
  const part = (type: string): string | null => {
    const found = parts.find(p => (p.headers['content-type'] ?? 'text/plain').toLowerCase().startsWith(type))
    // Line ends are CRLF on the wire; a reader sees lines.
    return found === undefined ? null : decodeBody(found.headers, found.body).replace(/\r\n/g, '\n')
  }
  const decoded: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) decoded[name] = decodeWords(value)
  return { headers: decoded, text: part('text/plain'), html: part('text/html') }
}

function splitEntity (entity: string): { headers: Record<string, string>, body: string } {
  const end = entity.indexOf('\r\n\r\n')
  const head = end === -1 ? entity : entity.slice(0, end)
  const body = end === -1 ? '' : entity.slice(end + 4)
  const headers: Record<string, string> = {}
  // Unfold: a line starting with white space continues the previous header.
  for (const line of head.replace(/\r\n(?=[ \t])/g, '').split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { headers, body }
}

function collectParts (headers: Record<string, string>, body: string, into: Array<{ headers: Record<string, string>, body: string }>): void {
  const type = headers['content-type'] ?? 'text/plain'
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1]
  if (!/^multipart\//i.test(type) || boundary === undefined) {
    into.push({ headers, body })
    return
  }
  const sections = body.split(`--${boundary}`)
  // sections[0] is the preamble; the last section starts with "--" (the closing delimiter)
  for (const section of sections.slice(1)) {
    if (section.startsWith('--')) break
    const child = splitEntity(section.replace(/^\r\n/, ''))
    collectParts(child.headers, child.body.replace(/\r\n$/, ''), into)
  }
}

function decodeBody (headers: Record<string, string>, body: string): string {
  const encoding = (headers['content-transfer-encoding'] ?? '7bit').toLowerCase()
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8')
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body)
  return body
}

function decodeQuotedPrintable (text: string): string {
  const unwrapped = text.replace(/=\r\n/g, '')
  const bytes: number[] = []
  for (let i = 0; i < unwrapped.length; i++) {
    if (unwrapped[i] === '=' && /^[0-9A-F]{2}$/i.test(unwrapped.slice(i + 1, i + 3))) {
      bytes.push(parseInt(unwrapped.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      bytes.push(...Buffer.from(unwrapped[i], 'utf8'))
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

/** RFC 2047 encoded words (=?UTF-8?Q?…?= and =?UTF-8?B?…?=); white space between two of them is dropped. */
function decodeWords (value: string): string {
  return value.replace(/\?=\s+=\?/g, '?==?').replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, kind: string, text: string) => {
    if (kind.toUpperCase() === 'B') return Buffer.from(text, 'base64').toString('utf8')
    return decodeQuotedPrintable(text.replace(/_/g, ' ').replace(/=\r\n/g, ''))
  })
}
