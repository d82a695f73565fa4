import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

// scrypt from node:crypto: memory-hard, no dependency or native addon to build (Argon2id would
// need one). OWASP's minimum for scrypt: N=2^17 r=8 p=1, or equivalently N=2^15 r=8 p=3 — the
// latter needs 32 MiB per hash instead of 128 MiB, so more logins fit in memory at once. The
// parameters are stored with each hash: hashes made with older ones keep verifying, and are
// replaced on the owner's next successful login (needsRehash).
export const PASSWORD_PARAMS = { N: 32768, r: 8, p: 3 }
const KEY_LENGTH = 64

/**
 * At most this many hashes run at once; the others wait their turn. Each one holds
 * 128·N·r = 32 MiB and a libuv thread while it runs: a flood of logins queues (a few bytes per
 * waiting request) instead of growing memory by 32 MiB per request, and leaves libuv threads
 * to everything else.
 */
export const MAX_CONCURRENT_HASHES = 2

let running = 0
let peak = 0
const waiting: Array<() => void> = []

async function withHashSlot<T> (fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_CONCURRENT_HASHES) await new Promise<void>(resolve => waiting.push(resolve))
  else running++
  peak = Math.max(peak, running)
  try {
    return await fn()
  } finally {
    // Hand the slot straight to the next waiter (running stays the same), or free it.
    const next = waiting.shift()
    if (next !== undefined) next()
    else running--
  }
}

/** How many hashes run now, the most that ever ran at once, and how many wait (for tests and metrics). */
export function passwordHashStats (): { running: number, peak: number, waiting: number } {
  return { running, peak, waiting: waiting.length }
}

interface Params { N: number, r: number, p: number }

function derive (password: string, salt: Buffer, params: Params): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 128 * params.N * params.r * 2 + 128 * params.r * params.p }
  return withHashSlot(() => new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, options, (error, key) => {
      if (error) reject(error)
      else resolve(key)
    })
  }))
}

export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, PASSWORD_PARAMS)
  return `scrypt$${PASSWORD_PARAMS.N}$${PASSWORD_PARAMS.r}$${PASSWORD_PARAMS.p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$')
  if (scheme !== 'scrypt' || salt === undefined || key === undefined) return false
  const expected = Buffer.from(key, 'base64url')
  const actual = await derive(password, Buffer.from(salt, 'base64url'), { N: Number(n), r: Number(r), p: Number(p) })
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

/** Whether a stored hash was made with other parameters than today's: rehash it at the next successful login. */
export function needsRehash (stored: string): boolean {
  const [scheme, n, r, p] = stored.split('$')
  return scheme !== 'scrypt' || Number(n) !== PASSWORD_PARAMS.N || Number(r) !== PASSWORD_PARAMS.r || Number(p) !== PASSWORD_PARAMS.p
}

// Hashed once, so a login for an unknown email costs the same as one with a wrong password.
let dummyHash: Promise<string> | undefined
export function dummyPasswordHash (): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(16).toString('hex'))
  return dummyHash
}
