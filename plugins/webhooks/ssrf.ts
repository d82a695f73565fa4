import { lookup as dnsLookup } from 'node:dns/promises'
import type { LookupAddress } from 'node:dns'
import ipaddr from 'ipaddr.js'

/**
 * The SSRF guard of §11: a webhook URL is https, carries no credentials, and its host is or
 * resolves only to public unicast addresses. It is checked when the URL is set, before every
 * attempt, and inside the connection itself (pinnedLookup): the socket connects to an address
 * this guard has just vetted, so a DNS answer that changes between the check and the connect
 * (rebinding) cannot lead it elsewhere.
 */

/** Resolves a host name to all its addresses (dns.lookup by default; tests give their own). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>

export const systemResolver: Resolver = async hostname => await dnsLookup(hostname, { all: true, verbatim: true })

export class RefusedUrl extends Error {}

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parse('2000::').toString()

/**
 * Why an address is not public, or null when it is. ipaddr.js names the range; only 'unicast'
 * passes. IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it carries; any other
 * IPv6 must also lie in 2000::/3, the global unicast block, which rules out the deprecated
 * IPv4-compatible ::a.b.c.d and every unassigned block ipaddr.js calls unicast.
 */
export function nonPublicRange (address: string): string | null {
  if (!ipaddr.isValid(address)) return 'not an IP address'
  const parsed = ipaddr.process(address)
  const range = parsed.range()
  if (range !== 'unicast') return range
  if (parsed.kind() === 'ipv6' && !(parsed as ipaddr.IPv6).match(ipaddr.IPv6.parse(GLOBAL_UNICAST_V6), 3)) return 'reserved'
  return null
}

/** The URL's host without IPv6 brackets. */
function hostOf (url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
}

/** The shape rules: https (http too when private addresses are allowed), no credentials, a host. */
export function checkUrlShape (raw: string, allowPrivate: boolean): URL {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new RefusedUrl('is not an absolute URL')
  }
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:')) {
    throw new RefusedUrl(allowPrivate ? 'must be an http:// or https:// URL' : 'must be an https:// URL')
  }
  if (url.username !== '' || url.password !== '') throw new RefusedUrl('must not carry credentials (user:password@)')
  if (hostOf(url) === '') throw new RefusedUrl('has no host')
  return url
}

/** The host's addresses, every one of them public; throws RefusedUrl naming the first that is not. */
export async function vettedAddresses (hostname: string, resolve: Resolver): Promise<LookupAddress[]> {
  const literal = ipaddr.isValid(hostname)
  let addresses: LookupAddress[]
  if (literal) {
    addresses = [{ address: hostname, family: ipaddr.parse(hostname).kind() === 'ipv6' ? 6 : 4 }]
  } else {
    try {
      addresses = await resolve(hostname)
    } catch (error) {
      throw new RefusedUrl(`host ${hostname} does not resolve (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
    }
    if (addresses.length === 0) throw new RefusedUrl(`host ${hostname} does not resolve`)
  }
  for (const { address } of addresses) {
    const range = nonPublicRange(address)
    if (range !== null) {
      throw new RefusedUrl(literal
        ? `must not point to a non-public address: ${address} is ${range}`
        : `host ${hostname} resolves to a non-public address: ${address} is ${range}`)
    }
  }
  return addresses
}

/** The whole check of a webhook URL (when it is set and before each attempt). */
export async function checkWebhookUrl (raw: string, options: { allowPrivate: boolean, resolve: Resolver }): Promise<URL> {
  const url = checkUrlShape(raw, options.allowPrivate)
  if (!options.allowPrivate) await vettedAddresses(hostOf(url), options.resolve)
  return url
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for net/tls.connect (undici's `connect.lookup`): the connection is made to an
 * address vetted in this very call. Node asks for all addresses (`all: true`) when it races
 * IPv4 and IPv6 (autoSelectFamily), one otherwise.
 */
export function pinnedLookup (options: { allowPrivate: boolean, resolve: Resolver }) {
  return (hostname: string, lookupOptions: { all?: boolean, family?: number | string } | number, callback: LookupCallback): void => {
    const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname
    const found = options.allowPrivate ? options.resolve(host) : vettedAddresses(host, options.resolve)
    found.then(addresses => {
      const wanted = typeof lookupOptions === 'object' ? Number(lookupOptions.family ?? 0) : lookupOptions
      const fitting = wanted === 4 || wanted === 6 ? addresses.filter(a => a.family === wanted) : addresses
      if (fitting.length === 0) {
        const error: NodeJS.ErrnoException = new Error(`host ${host} has no IPv${wanted} address`)
        error.code = 'ENOTFOUND'
        return callback(error, '')
      }
      if (typeof lookupOptions === 'object' && lookupOptions.all === true) return callback(null, fitting)
      callback(null, fitting[0].address, fitting[0].family)
    }, (error: Error) => {
      const refused: NodeJS.ErrnoException = error
      refused.code ??= 'EREFUSED'
      callback(refused, '')
    })
  }
}
