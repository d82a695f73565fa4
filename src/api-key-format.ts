import { createHmac, hash, randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

// pk_live_ + 56 random hex (224 bits) + 8 hex of CRC32 over everything before it.
// The checksum lets a typo or a truncated key be rejected without any I/O, and gives
// secret scanners a pattern with near-zero false positives.
export const API_KEY_PREFIX = 'pk_live_'
export const API_KEY_PATTERN = /^pk_live_[0-9a-f]{64}$/
const RANDOM_BYTES = 28
const BODY_LENGTH = API_KEY_PREFIX.length + RANDOM_BYTES * 2
export const API_KEY_LENGTH = BODY_LENGTH + 8
/** how much of a key is shown after creation: `pk_live_a3` */
export const DISPLAY_PREFIX_LENGTH = 10

export function apiKeyChecksum (body: string): string {
  return crc32(body).toString(16).padStart(8, '0')
}

export function generateApiKey (): string {
  const body = API_KEY_PREFIX + randomBytes(RANDOM_BYTES).toString('hex')
  return body + apiKeyChecksum(body)
}

/** `pk_live_` and 64 lowercase hex: the shape alone, without the checksum. */
export function hasApiKeyShape (value: unknown): value is string {
  return typeof value === 'string' && value.length === API_KEY_LENGTH && API_KEY_PATTERN.test(value)
}

/** For a key of the right shape: whether its last 8 hex are the CRC32 of the rest. */
export function hasValidApiKeyChecksum (key: string): boolean {
  return apiKeyChecksum(key.slice(0, BODY_LENGTH)) === key.slice(BODY_LENGTH)
}

/** Format and checksum only: true means the key may exist, false means it cannot. */
export function isWellFormedApiKey (value: unknown): value is string {
  return hasApiKeyShape(value) && hasValidApiKeyChecksum(value)
}

/** What the database stores instead of the key: HMAC-SHA256 under the server's pepper, hex. */
export function hashApiKey (pepper: string, key: string): string {
  return createHmac('sha256', pepper).update(key).digest('hex')
}

export function apiKeyDisplayPrefix (key: string): string {
  return key.slice(0, DISPLAY_PREFIX_LENGTH)
}

/**
 * The key's name in this process's memory (caches of known and unknown keys): SHA-256, one
 * shot, about a sixth of the HMAC's cost. Never stored or sent anywhere; for 224 random bits
 * a pepper adds nothing to a digest that lives only in memory next to the raw request.
 */
export function apiKeyCacheId (key: string): string {
  return hash('sha256', key, 'base64')
}
