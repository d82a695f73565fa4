import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

/** Constant-time string comparison that does not leak the length of the expected value. */
export function safeEqual (actual: string, expected: string): boolean {
  const a = createHash('sha256').update(actual).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

export function sha256Hex (value: string): string {
  return createHash('sha256').update(value).digest('hex')
}

/** A 256-bit key for one purpose, derived from a configured secret (HKDF-SHA256), independent of every other purpose's. */
export function derivedKey (secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', `tenantkey ${purpose}`, 32))
}

/**
 * Seals a secret that must be stored for a while and read back (an invitation token waiting for
 * its mail): AES-256-GCM, bound to `context` (the row it belongs to), so a database dump alone
 * does not reveal it and a sealed value copied to another row does not open.
 */
export function sealSecret (key: Buffer, plaintext: string, context: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(context))
  const sealed = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  return [iv, sealed, cipher.getAuthTag()].map(part => part.toString('base64url')).join('.')
}

/** The secret sealSecret sealed with this key and context; throws when either differs or the value was altered. */
export function openSecret (key: Buffer, sealed: string, context: string): string {
  const [iv, body, tag] = sealed.split('.').map(part => Buffer.from(part, 'base64url'))
  if (iv === undefined || body === undefined || tag === undefined) throw new Error('not a sealed secret')
  const decipher = createDecipheriv('aes-256-gcm', key, iv)
  decipher.setAAD(Buffer.from(context))
  decipher.setAuthTag(tag)
  return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8')
}
