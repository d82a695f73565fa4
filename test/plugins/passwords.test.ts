import crypto, { randomBytes, scryptSync } from 'node:crypto'
import { syncBuiltinESMExports } from 'node:module'
import t from 'tap'
import { build, createOrgWithMember } from '../helper.ts'
import { login } from '../auth-helpers.ts'

// Every scrypt call the service makes is counted here, whatever module makes it: node:crypto's
// scrypt is wrapped and the ESM bindings of node:crypto are synced to the wrapper.
let inFlight = 0
let peakInFlight = 0
const originalScrypt = crypto.scrypt
crypto.scrypt = ((...args: unknown[]) => {
  const callback = args.at(-1) as (error: Error | null, key: Buffer) => void
  inFlight++
  peakInFlight = Math.max(peakInFlight, inFlight)
  return (originalScrypt as (...a: unknown[]) => void)(...args.slice(0, -1), (error: Error | null, key: Buffer) => {
    inFlight--
    callback(error, key)
  })
}) as typeof crypto.scrypt
syncBuiltinESMExports()
t.teardown(() => { crypto.scrypt = originalScrypt; syncBuiltinESMExports() })

const OWASP = /^scrypt\$32768\$8\$3\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{86}$/

/** A hash as the service made them before: scrypt N=2^15 r=8 p=1, the parameters in the string. */
function legacyHash (password: string): string {
  const salt = randomBytes(16)
  const key = scryptSync(password.normalize('NFKC'), salt, 64, { N: 32768, r: 8, p: 1, maxmem: 128 * 32768 * 8 * 2 })
  return `scrypt$32768$8$1$${salt.toString('base64url')}$${key.toString('base64url')}`
}

t.test('new passwords are hashed with scrypt N=2^15 r=8 p=3 (OWASP), the parameters kept in the hash', async t => {
  const app = await build(t)
  const { user } = await createOrgWithMember(app, 'member')
  const row = await app.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.match(row.password_hash, OWASP)
})

t.test('a hash with older parameters still verifies and is replaced at the next successful login', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app, 'member')
  const old = legacyHash(user.password)
  await app.db.updateTable('users').set({ password_hash: old }).where('id', '=', user.id).execute()
  const stored = async (): Promise<string> => (await app.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()).password_hash

  t.equal((await login(app, org.slug, user.email, 'wrong password!')).statusCode, 401)
  t.equal(await stored(), old, 'a failed login changes nothing')

  t.equal((await login(app, org.slug, user.email, user.password)).statusCode, 200, 'the old hash verifies')
  const upgraded = await stored()
  t.match(upgraded, OWASP, 'rehashed with the current parameters')
  t.not(upgraded, old)

  t.equal((await login(app, org.slug, user.email, user.password)).statusCode, 200, 'the new hash verifies')
  t.equal(await stored(), upgraded, 'a current hash is left alone')
  t.equal((await login(app, org.slug, user.email, 'wrong password!')).statusCode, 401)
})

t.test('a login flood: at most 2 password hashes run at once, every login still answered', async t => {
  const app = await build(t, { loginFailureMax: 100 })
  const { org, user } = await createOrgWithMember(app, 'member')
  await login(app, org.slug, user.email, 'warm-up wrong') // the dummy hash is made once
  peakInFlight = 0
  const flood = Array.from({ length: 16 }, (_, i) => login(app, org.slug, i % 2 === 0 ? user.email : `nobody-${i}@acme.test`, i % 4 === 0 ? user.password : 'wrong password!'))
  const statuses = (await Promise.all(flood)).map(res => res.statusCode)
  t.same([...new Set(statuses)].sort(), [200, 401], 'right and wrong passwords answered as usual')
  t.ok(peakInFlight >= 1 && peakInFlight <= 2, `at most 2 scrypt computations at once (saw ${peakInFlight})`)
  t.equal(inFlight, 0)
})
