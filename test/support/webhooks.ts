import http, { type IncomingHttpHeaders } from 'node:http'
import https from 'node:https'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { createOrgWithMember, sessionToken, type Fixture } from '../helper.ts'
import { noteSecret } from '../log-secrets.ts'

export interface Received {
  headers: IncomingHttpHeaders
  body: string
  /** Date.now() when it arrived */
  at: number
}

/** What the receiver answers to its n-th request (0-based): a status, and optionally a body. */
export type Answer = (n: number, received: Received) => number | { status: number, body?: string, delayMs?: number }

export interface Receiver {
  url: string
  port: number
  received: Received[]
  answer: Answer
  /** where a 3xx answer points (Location) */
  redirectTo?: string
  /** resolves once `count` requests have arrived */
  waitFor: (count: number, ms?: number) => Promise<Received[]>
  close: () => Promise<void>
}

/** A real webhook receiver on 127.0.0.1 (http, or https with the given key and certificate). */
export async function startReceiver (answer: Answer = () => 200, tls?: { key: string, cert: string }): Promise<Receiver> {
  const received: Received[] = []
  const receiver: Receiver = {
    url: '',
    port: 0,
    received,
    answer,
    async waitFor (count, ms = 10_000) {
      const deadline = Date.now() + ms
      while (received.length < count) {
        if (Date.now() > deadline) throw new Error(`the receiver got ${received.length} requests, not ${count}, within ${ms} ms`)
        await sleep(10)
      }
      return received.slice(0, count)
    },
    close: async () => await new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', chunk => chunks.push(chunk))
    req.on('end', () => {
      const item = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() }
      const n = received.length
      received.push(item)
      const reply = receiver.answer(n, item)
      const { status, body, delayMs } = typeof reply === 'number' ? { status: reply, body: undefined, delayMs: 0 } : reply
      const send = (): void => { res.writeHead(status, { 'content-type': 'text/plain', ...(status >= 300 && status < 400 && { location: `${receiver.redirectTo ?? 'http://127.0.0.1:1'}` }) }).end(body ?? 'ok') }
      if (delayMs !== undefined && delayMs > 0) setTimeout(send, delayMs).unref()
      else send()
    })
  }
  const server = tls === undefined ? http.createServer(handler) : https.createServer({ key: tls.key, cert: tls.cert }, handler)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  receiver.port = (server.address() as AddressInfo).port
  receiver.url = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${receiver.port}/hooks`
  return receiver
}

/** A self-signed certificate for `hostname`, made with openssl at test time. */
export function selfSignedCertificate (hostname: string): { key: string, cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tk-webhook-cert-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', `/CN=${hostname}`, '-addext', `subjectAltName=DNS:${hostname}`,
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export interface OrgAdmin extends Fixture {
  headers: Record<string, string>
}

export async function orgAdmin (app: FastifyInstance): Promise<OrgAdmin> {
  const fixture = await createOrgWithMember(app, 'org_admin')
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  return { ...fixture, headers: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug } }
}

export interface Created { secret: string, standardWebhooksSecret: string, webhook: { id: string, url: string, events: string[], isActive: boolean } }

export async function createWebhook (app: FastifyInstance, admin: OrgAdmin, body: { url: string, events: string[], description?: string }): Promise<Created> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/org/webhooks', headers: admin.headers, payload: body })
  if (res.statusCode !== 201) throw new Error(`create webhook: ${res.statusCode} ${res.body}`)
  const data = res.json().data
  noteSecret(data.secret)
  noteSecret(data.standardWebhooksSecret)
  return data
}

export async function call (app: FastifyInstance, admin: OrgAdmin, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, payload?: object): Promise<LightMyRequestResponse> {
  return await app.inject({ method, url: `/api/v1/org/webhooks${path}`, headers: admin.headers, ...(payload !== undefined && { payload }) })
}

/** An event of the org's: an API key created through the API (api_key.created). */
export async function causeEvent (app: FastifyInstance, admin: OrgAdmin, name = 'hooked'): Promise<{ apiKeyId: string, answeredAt: number }> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/org/api-keys', headers: admin.headers, payload: { name } })
  if (res.statusCode !== 201) throw new Error(`create api key: ${res.statusCode} ${res.body}`)
  noteSecret(res.json().data.key)
  return { apiKeyId: res.json().data.apiKey.id, answeredAt: Date.now() }
}

export async function deliveriesOf (app: FastifyInstance, admin: OrgAdmin, webhookId: string, query = ''): Promise<Array<Record<string, any>>> {
  const res = await call(app, admin, 'GET', `/${webhookId}/deliveries${query}`)
  if (res.statusCode !== 200) throw new Error(`deliveries: ${res.statusCode} ${res.body}`)
  return res.json().data.deliveries
}

export async function until (condition: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(20)
  }
}
