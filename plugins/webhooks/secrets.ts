import { createHmac, randomBytes } from 'node:crypto'
import { derivedKey, openSecret, sealSecret } from '../../src/secrets.ts'

/** `whs_` + 64 hex digits (256 random bits); the HMAC key of both schemes is the UTF-8 bytes of the whole string (§11). */
export function newWebhookSecret (): string {
  return `whs_${randomBytes(32).toString('hex')}`
}

/** The same secret in the form Standard Webhooks libraries take: `whsec_` + base64 of its bytes. */
export function standardWebhooksSecret (secret: string): string {
  return `whsec_${Buffer.from(secret, 'utf8').toString('base64')}`
}

/**
 * Webhook secrets must be read back to sign, so they are sealed (AES-256-GCM) under a key derived
 * from API_KEY_PEPPER for this purpose alone, bound to the webhook's id: a database dump alone
 * does not reveal them, and a sealed secret copied to another webhook does not open.
 */
export function webhookSealer (pepper: string): { seal: (webhookId: string, secret: string) => string, open: (webhookId: string, sealed: string) => string } {
  const key = derivedKey(pepper, 'webhook signing secret')
  return {
    seal: (webhookId, secret) => sealSecret(key, secret, webhookId),
    open: (webhookId, sealed) => openSecret(key, sealed, webhookId)
  }
}

/** AuthWorx: `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`. */
export function authworxSignature (secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

/** Standard Webhooks: `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`, one entry per live secret, space-separated. */
export function standardSignature (secrets: readonly string[], id: string, timestamp: number, body: string): string {
  return secrets.map(secret => `v1,${createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64')}`).join(' ')
}
