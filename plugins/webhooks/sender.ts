import type { Agent } from 'undici'
import { checkWebhookUrl, pinnedLookup, RefusedUrl, systemResolver, type Resolver } from './ssrf.ts'

/** Test-only network settings (BuildOptions.webhookNetwork); no configuration reaches them. */
export interface WebhookNetwork {
  /** resolves host names instead of the system resolver (tests of the SSRF guard, DNS rebinding) */
  resolve?: Resolver
  /** certificates to trust for https receivers besides the system's (a test's self-signed receiver) */
  ca?: string
}

/** Kept of a receiver's answer: no more, so a receiver cannot fill the database. */
export const EXCERPT_CHARS = 200
/** Read of a response body at most; the rest is dropped with its connection. */
const MAX_BODY_BYTES = 16 * 1024

export type SendResult =
  | { outcome: 'succeeded', status: number }
  | { outcome: 'http_error' | 'gone', status: number, excerpt: string }
  | { outcome: 'timeout' | 'network_error' | 'refused_address', error: string }

export interface Sender {
  send: (input: { url: string, headers: Record<string, string>, body: string, signal: AbortSignal }) => Promise<SendResult>
  close: () => Promise<void>
}

/**
 * POSTs with undici through one Agent whose `connect.lookup` is the SSRF guard's pinned lookup:
 * keep-alive connections are reused, and every new connection goes to an address vetted as it
 * is made. No redirect is followed (a 3xx is a failed attempt), the whole attempt — connect,
 * answer and the body read — is bounded by WEBHOOK_TIMEOUT, and of the body only a short
 * excerpt is kept.
 */
export function createSender (options: { timeoutMs: number, allowPrivate: boolean, network?: WebhookNetwork }): Sender {
  const resolve = options.network?.resolve ?? systemResolver
  const guard = { allowPrivate: options.allowPrivate, resolve }
  // undici (~2 MB of heap) is loaded by the first delivery, not by every server start.
  let agent: Agent | null = null
  async function dispatcher (): Promise<{ agent: Agent, request: typeof import('undici').request }> {
    const undici = await import('undici')
    agent ??= new undici.Agent({
      connect: {
        lookup: pinnedLookup(guard) as never,
        timeout: options.timeoutMs,
        ...(options.network?.ca !== undefined && { ca: options.network.ca })
      },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 4_000,
      maxRedirections: 0
    })
    return { agent, request: undici.request }
  }

  async function send (input: { url: string, headers: Record<string, string>, body: string, signal: AbortSignal }): Promise<SendResult> {
    const timeout = AbortSignal.timeout(options.timeoutMs)
    // Checked again before every attempt (DNS can change since the URL was set); the connection
    // itself is then pinned by the agent's lookup.
    try {
      await checkWebhookUrl(input.url, guard)
    } catch (error) {
      if (error instanceof RefusedUrl) return { outcome: 'refused_address', error: `refused: the URL ${error.message}` }
      throw error
    }
    try {
      const { agent, request } = await dispatcher()
      const response = await request(input.url, {
        method: 'POST',
        headers: input.headers,
        body: input.body,
        dispatcher: agent,
        signal: AbortSignal.any([input.signal, timeout])
      })
      const excerpt = await readExcerpt(response.body)
      const status = response.statusCode
      if (status >= 200 && status < 300) return { outcome: 'succeeded', status }
      return { outcome: status === 410 ? 'gone' : 'http_error', status, excerpt }
    } catch (error) {
      if (input.signal.aborted) throw error
      if (timeout.aborted) return { outcome: 'timeout', error: `no answer within WEBHOOK_TIMEOUT (${options.timeoutMs} ms)` }
      // The connection's own lookup refused what the name resolved to at that moment (rebinding).
      if (error instanceof RefusedUrl) return { outcome: 'refused_address', error: `refused at connect: ${error.message}` }
      const code = (error as NodeJS.ErrnoException).code
      const cause = (error as { cause?: NodeJS.ErrnoException }).cause
      const detail = [code, (error as Error).message, cause?.message].filter(Boolean).join(': ')
      return { outcome: 'network_error', error: detail.slice(0, 500) }
    }
  }

  return { send, close: async () => await agent?.close() }
}

async function readExcerpt (body: AsyncIterable<Buffer> & { destroy: () => void }): Promise<string> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of body) {
    chunks.push(chunk)
    length += chunk.length
    if (length >= MAX_BODY_BYTES) {
      body.destroy()
      break
    }
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim().slice(0, EXCERPT_CHARS)
}
