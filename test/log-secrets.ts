import t from 'tap'
import { isWellFormedApiKey } from '../src/api-key-format.ts'

// "Logs never contain a raw API key, password, token or cookie" (API.md §8), checked over a
// whole test process: every log line of its test apps and server instances is kept, every
// secret its tests sent or received is noted, and when the process's tests end no line may
// contain one. Lines are kept as written; the check runs once, at the end.

/** A value shorter than this is not treated as a secret: it would match by chance (fuzzed passwords such as "x"). */
const MIN_SECRET_LENGTH = 12
// Anything shaped like a live credential is a leak whether or not a test noted it.
const API_KEY_SHAPE = /pk_live_[0-9a-f]{64}/g
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{20,}/g

const lines: string[] = []
const secrets = new Set<string>()
// URLs are logged by design: a value a test itself put in a URL (the fuzzer does) is not a leak.
const urls: string[] = []

export interface Leak { secret: string, line: string }

/**
 * The lines that contain a secret or something shaped like a live API key or access token.
 * `sentInUrls` holds the URLs the tests requested: a value that appears there was not secret.
 */
export function findLeaks (logLines: readonly string[], candidates: Iterable<string>, sentInUrls = ''): Leak[] {
  const text = logLines.map(decodeBuffers).join('\n')
  const leaks: Leak[] = []
  const lineAt = (index: number): string => {
    const start = text.lastIndexOf('\n', index) + 1
    const end = text.indexOf('\n', index)
    return text.slice(start, end === -1 ? undefined : end)
  }
  const report = (secret: string, index: number): void => {
    if (!sentInUrls.includes(secret)) leaks.push({ secret, line: lineAt(index) })
  }
  for (const secret of candidates) {
    const index = text.indexOf(secret)
    if (index !== -1) report(secret, index)
  }
  for (const match of text.matchAll(API_KEY_SHAPE)) {
    if (isWellFormedApiKey(match[0])) report(match[0], match.index)
  }
  for (const match of text.matchAll(JWT_SHAPE)) report(match[0], match.index)
  return leaks
}

// A Buffer in a log object (an error's rawPacket, say) is written as its bytes, which hides
// what they spell from a plain search: spell them out.
const BUFFER_JSON = /\{"type":"Buffer","data":\[([0-9,]*)\]\}/g
function decodeBuffers (line: string): string {
  if (!line.includes('"type":"Buffer"')) return line
  return line.replace(BUFFER_JSON, (_, bytes: string) => JSON.stringify(Buffer.from(bytes === '' ? [] : bytes.split(',').map(Number)).toString('latin1')))
}

/** The log lines kept so far (a test can check the lines its own requests produced). */
export function capturedLogLines (): readonly string[] {
  return lines
}

/** Remember a secret the tests handled. Keys count from after their display prefix (which may be logged). */
export function noteSecret (value: unknown): void {
  if (typeof value !== 'string') return
  let secret = value.trim()
  if (secret.startsWith('pk_live_')) secret = secret.slice(10)
  // An access token: its signature is what must never leak (its claims are no secret).
  const parts = secret.split('.')
  if (parts.length === 3 && parts[0].startsWith('eyJ') && parts[2].length >= MIN_SECRET_LENGTH) secret = parts[2]
  if (secret.length >= MIN_SECRET_LENGTH) secrets.add(secret)
}

function headerValue (headers: Record<string, unknown> | undefined, name: string): unknown {
  if (headers === undefined) return undefined
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value
  return undefined
}

function noteCookies (header: unknown): void {
  for (const value of [header].flat()) {
    if (typeof value !== 'string') continue
    for (const pair of value.split(/;\s*/)) noteSecret(pair.slice(pair.indexOf('=') + 1))
  }
}

/** Fields that hold a credential wherever they appear in a body: a password, a token, a key, a webhook or invite secret. */
const SECRET_FIELDS = ['password', 'token', 'refreshToken', 'accessToken', 'key', 'secret']

function noteBodySecrets (body: unknown, depth = 0): void {
  let parsed = body
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    try {
      parsed = JSON.parse(String(body))
    } catch {
      return
    }
  }
  if (typeof parsed !== 'object' || parsed === null || depth > 4) return
  const record = parsed as Record<string, unknown>
  for (const field of SECRET_FIELDS) noteSecret(record[field])
  // Nested objects too (`data.webhook.secret`, `data.invite.token`), a few levels deep.
  for (const value of Object.values(record)) if (typeof value === 'object' && value !== null) noteBodySecrets(value, depth + 1)
}

/** A request a test sends: its credentials (headers, cookies, body fields) are secrets; its URL is not. */
export function noteRequest (request: { url?: unknown, path?: unknown, headers?: Record<string, unknown>, cookies?: Record<string, string>, payload?: unknown, body?: unknown }): void {
  const url = request.url ?? request.path
  if (typeof url === 'string') urls.push(url)
  const authorization = headerValue(request.headers, 'authorization')
  if (typeof authorization === 'string') noteSecret(authorization.replace(/^\s*\S+\s+/, ''))
  noteSecret(headerValue(request.headers, 'x-api-key'))
  noteCookies(headerValue(request.headers, 'cookie'))
  for (const value of Object.values(request.cookies ?? {})) noteSecret(value)
  noteBodySecrets(request.payload ?? request.body)
}

/** A response a test received: issued keys and tokens, and cookies set. */
export function noteResponse (response: { headers: Record<string, unknown>, body: string }): void {
  noteCookies(headerValue(response.headers, 'set-cookie'))
  noteBodySecrets(response.body)
}

let checking = false

/**
 * Stored audit events (§10) must hold no secret either: each row, as JSON, is searched like a log
 * line, for the secrets the tests handled and for anything shaped like a live key or token.
 */
export function findEventLeaks (rows: readonly object[]): Leak[] {
  return findLeaks(rows.map(row => JSON.stringify(row)), secrets, urls.join('\n'))
}

/** When this process's tests end, take every stored audit event and fail the run if one holds a secret. */
export function checkStoredEventsAtEnd (storedEvents: () => object[]): void {
  t.teardown(() => {
    const rows = storedEvents()
    const leaks = findEventLeaks(rows)
    t.comment(`audit secrets: ${rows.length} stored events, ${secrets.size} secrets checked, ${leaks.length} leaks`)
    if (leaks.length > 0) {
      const shown = leaks.slice(0, 5).map(({ secret, line }) => `  ${secret.slice(0, 12)}… in ${line.slice(0, 300)}`).join('\n')
      throw new Error(`${leaks.length} stored audit event(s) contain a secret:\n${shown}`)
    }
  })
}

/** Keep a log line, and check all kept lines when this process's tests end. */
export function captureLogLine (line: string): void {
  lines.push(line)
  checkAtEnd()
}

/** A pino destination that keeps every line (and passes it on to `tee`, when given). */
export function captureLogStream (tee?: { write: (line: string) => unknown }): { write: (line: string) => void } {
  checkAtEnd()
  return { write (line: string) { lines.push(line); tee?.write(line) } }
}

function checkAtEnd (): void {
  if (checking) return
  checking = true
  t.teardown(() => {
    const leaks = findLeaks(lines, secrets, urls.join('\n'))
    t.comment(`log secrets: ${lines.length} log lines, ${secrets.size} secrets checked, ${leaks.length} leaks`)
    if (leaks.length > 0) {
      const shown = leaks.slice(0, 5).map(({ secret, line }) => `  ${secret.slice(0, 12)}… in ${line.slice(0, 300)}`).join('\n')
      throw new Error(`${leaks.length} log line(s) contain a secret:\n${shown}`)
    }
  })
}
