import ipaddr from 'ipaddr.js'
import type { ApiKeyCredential } from '../../db/queries/api-keys.ts'

// What the /public guard checks about a key beyond its validity (§9), prepared once when the
// key enters the cache, so each request's checks are a few property reads and comparisons.

export interface KeyGuard {
  /** the scopes the key holds (at most three) */
  scopes: readonly string[]
  /** the allowlist as parsed ranges, by family; null: any address */
  allowed: Allowlist | null
  /** the key's own budget, or null: its org's, else the service default */
  budget: { max: number, windowMs: number } | null
  /** X-API-Key-Expires-At (Unix seconds) when the key has an expiry */
  expiresAtHeader: string | null
}

/**
 * Parsed ranges by family, and the verdicts already reached for client addresses: a key is
 * called from a handful of addresses, so most requests cost one Map lookup instead of a parse
 * (~1 µs for IPv4, ~6 µs for an IPv4-mapped IPv6 address) and the range comparisons. Bounded:
 * emptied when full. The verdicts go with the key's cache entry, so a changed allowlist starts afresh.
 */
export interface Allowlist {
  v4: Array<[ipaddr.IPv4, number]>
  v6: Array<[ipaddr.IPv6, number]>
  verdicts: Map<string, boolean>
}
const MAX_VERDICTS = 256

/** A key as the /public guard caches it: the row's credential and its prepared settings. */
export type GuardedKey = ApiKeyCredential & { guard: KeyGuard }

/**
 * Entries are stored normalised (src/api-key-settings.ts): an address, or a network address
 * and a prefix length; IPv4-mapped entries are already IPv4. An entry that no longer parses
 * (it cannot, short of a hand-edited row) matches nothing rather than everything.
 */
function parseAllowlist (entries: readonly string[]): KeyGuard['allowed'] {
  if (entries.length === 0) return null
  const allowed: Allowlist = { v4: [], v6: [], verdicts: new Map() }
  for (const entry of entries) {
    let range: [ipaddr.IPv4 | ipaddr.IPv6, number]
    try {
      if (entry.includes('/')) range = ipaddr.parseCIDR(entry)
      else {
        const address = ipaddr.parse(entry)
        range = [address, address.kind() === 'ipv4' ? 32 : 128]
      }
    } catch {
      continue
    }
    if (range[0].kind() === 'ipv4') allowed.v4.push(range as [ipaddr.IPv4, number])
    else allowed.v6.push(range as [ipaddr.IPv6, number])
  }
  return allowed
}

export function guardedKey (key: ApiKeyCredential): GuardedKey {
  return {
    ...key,
    guard: {
      scopes: key.scopes,
      allowed: parseAllowlist(key.allowed_ips),
      budget: key.rate_limit_max === null || key.rate_limit_window_seconds === null
        ? null
        : { max: key.rate_limit_max, windowMs: key.rate_limit_window_seconds * 1000 },
      expiresAtHeader: key.expires_at === null ? null : String(Math.floor(key.expires_at.getTime() / 1000))
    }
  }
}

/**
 * Whether the client address (Fastify's request.ip, which honours TRUST_PROXY) is on the
 * allowlist. An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, what a dual-stack socket
 * reports for an IPv4 client) matches IPv4 entries; an address that does not parse matches nothing.
 */
export function addressAllowed (allowed: Allowlist, ip: string): boolean {
  const known = allowed.verdicts.get(ip)
  if (known !== undefined) return known
  const verdict = matches(allowed, ip)
  if (allowed.verdicts.size >= MAX_VERDICTS) allowed.verdicts.clear()
  allowed.verdicts.set(ip, verdict)
  return verdict
}

function matches (allowed: Allowlist, ip: string): boolean {
  let address: ipaddr.IPv4 | ipaddr.IPv6
  try {
    address = ipaddr.parse(ip)
  } catch {
    return false
  }
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6
    for (const range of allowed.v6) if (v6.match(range)) return true
    if (!v6.isIPv4MappedAddress()) return false
    address = v6.toIPv4Address()
  }
  const v4 = address as ipaddr.IPv4
  for (const range of allowed.v4) if (v4.match(range)) return true
  return false
}
