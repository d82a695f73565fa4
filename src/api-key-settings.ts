import ipaddr from 'ipaddr.js'
import { ValidationFailed } from './errors.ts'

// What an org admin may set on an API key (§9), checked and normalised once here, so the
// database holds only canonical values and the /public guard can trust them.

/** What a key may call on /public; a key holds all three unless told otherwise. The route schemas check scopes (non-empty, distinct, known). */
export const API_KEY_SCOPES = ['tokens:verify', 'users:read', 'org:read'] as const
export type ApiKeyScope = typeof API_KEY_SCOPES[number]

/** At most this many allowlist entries (the route schemas check it). */
export const MAX_ALLOWED_IPS = 50

/** A budget: at most `max` requests per `windowSeconds`. */
export interface RateLimit { max: number, windowSeconds: number }

type Address = ipaddr.IPv4 | ipaddr.IPv6

function parseAddress (text: string): Address | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text)
  // ipaddr.js also reads IPv4 shorthands (`10.1`, `0x0a.0.0.1`): refused above, and not IPv6 either.
  if (!text.includes(':') || !ipaddr.IPv6.isValid(text)) return null
  const address = ipaddr.IPv6.parse(text)
  // A zone (`fe80::1%eth0`) names an interface of the caller's host, which means nothing here.
  return address.zoneId === undefined ? address : null
}

function bitsOf (address: Address): number {
  return address.kind() === 'ipv4' ? 32 : 128
}

function format (address: Address): string {
  return address.kind() === 'ipv4' ? address.toString() : (address as ipaddr.IPv6).toRFC5952String()
}

/**
 * One allowlist entry in its canonical form, or null when it is neither an address nor a CIDR
 * block. A block is stored as its network address (`10.1.2.3/8` → `10.0.0.0/8`); an address,
 * and a block of one address (`/32`, `/128`), as the plain address (`203.0.113.7`); IPv6 in
 * RFC 5952 form (`2001:db8::1`); an IPv4-mapped IPv6 address or block as the IPv4 it maps
 * (`::ffff:10.0.0.1` → `10.0.0.1`), since IPv4-mapped callers are matched against IPv4 entries.
 */
export function normaliseAllowedIp (entry: string): string | null {
  const slash = entry.indexOf('/')
  const address = parseAddress(slash === -1 ? entry : entry.slice(0, slash))
  if (address === null) return null
  let prefix = bitsOf(address)
  if (slash !== -1) {
    const bits = entry.slice(slash + 1)
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > prefix) return null
    prefix = Number(bits)
  }
  let network: Address = address
  if (network.kind() === 'ipv6' && (network as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96) {
    network = (network as ipaddr.IPv6).toIPv4Address()
    prefix -= 96
  }
  if (prefix === bitsOf(network)) return format(network)
  const masked = network.kind() === 'ipv4'
    ? ipaddr.IPv4.networkAddressFromCIDR(`${network.toString()}/${prefix}`)
    : ipaddr.IPv6.networkAddressFromCIDR(`${network.toString()}/${prefix}`)
  return `${format(masked)}/${prefix}`
}

/** The allowlist as stored: each entry normalised, duplicates after normalising dropped; 400 naming a bad entry. */
export function normaliseAllowedIps (entries: readonly string[], field = 'body.allowedIps'): string[] {
  const normalised: string[] = []
  for (const [i, entry] of entries.entries()) {
    const canonical = normaliseAllowedIp(entry.trim())
    if (canonical === null) {
      throw new ValidationFailed(`${field}.${i} ${JSON.stringify(entry)} is not an IPv4 or IPv6 address or CIDR block`)
    }
    if (!normalised.includes(canonical)) normalised.push(canonical)
  }
  return normalised
}

/** The budget a key of this org is held to: the org's own, else the service default (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW). */
export function orgRateLimit (org: { rateLimit: RateLimit | null }, config: { rateLimitMax: number, rateLimitWindowMs: number }): { max: number, windowMs: number } {
  return org.rateLimit === null
    ? { max: config.rateLimitMax, windowMs: config.rateLimitWindowMs }
    : { max: org.rateLimit.max, windowMs: org.rateLimit.windowSeconds * 1000 }
}

/**
 * 400 naming `rateLimit` when the key's budget allows a faster average rate (max / window) than
 * the org's: a key never outruns its org. Compared by cross-multiplying whole numbers (at most
 * 1e6 × 86,400,000 < 2^53), so no rounding lets a key slip past.
 */
export function checkKeyRateLimit (key: RateLimit, org: { max: number, windowMs: number }, field = 'body.rateLimit'): void {
  if (key.max * org.windowMs > org.max * key.windowSeconds * 1000) {
    throw new ValidationFailed(`${field} (${key.max} per ${key.windowSeconds} s) is faster than the organization's budget ` +
      `of ${org.max} per ${formatSeconds(org.windowMs)}: a key may not average more requests per second than its organization`)
  }
}

function formatSeconds (ms: number): string {
  return `${Number.isInteger(ms / 1000) ? ms / 1000 : (ms / 1000).toFixed(3)} s`
}
