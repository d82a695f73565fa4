import { crc32 } from 'node:zlib'
import t from 'tap'
import {
  API_KEY_PATTERN, apiKeyChecksum, apiKeyDisplayPrefix, generateApiKey, hashApiKey, isWellFormedApiKey
} from '../src/api-key-format.ts'

const PEPPER = 'p'.repeat(32)

t.test('a generated key is pk_live_ + 64 lowercase hex whose last 8 are the CRC32 of the rest', async t => {
  const keys = new Set<string>()
  for (let i = 0; i < 200; i++) {
    const key = generateApiKey()
    t.match(key, /^pk_live_[0-9a-f]{64}$/)
    t.equal(key.slice(64), crc32(key.slice(0, 64)).toString(16).padStart(8, '0'))
    t.ok(isWellFormedApiKey(key))
    keys.add(key)
  }
  t.equal(keys.size, 200, 'no two keys alike')
})

t.test('the checksum is zero-padded to 8 hex', async t => {
  // Found by search: a body whose CRC32 is below 0x10000000 needs the padding.
  let body = ''
  for (let i = 0; ; i++) {
    body = `pk_live_${i.toString(16).padStart(56, '0')}`
    if (crc32(body) < 0x10000000) break
  }
  const checksum = apiKeyChecksum(body)
  t.equal(checksum.length, 8)
  t.match(checksum, /^0/)
  t.ok(isWellFormedApiKey(body + checksum))
})

t.test('every one-character change of a key is rejected', async t => {
  const key = generateApiKey()
  let rejected = 0
  for (let i = 8; i < key.length; i++) {
    for (const c of '0123456789abcdef') {
      if (c === key[i]) continue
      const typo = key.slice(0, i) + c + key.slice(i + 1)
      if (!isWellFormedApiKey(typo)) rejected++
    }
  }
  t.equal(rejected, 64 * 15)
})

t.test('malformed values are rejected', async t => {
  const key = generateApiKey()
  const bad: unknown[] = [
    undefined, null, 42, ['x'], '', key.slice(0, -1), key + '0', key.toUpperCase(),
    key.replace('pk_live_', 'pk_test_'), ` ${key}`, `${key}\n`, key.slice(0, 70) + 'zz', 'pk_live_' + 'g'.repeat(64)
  ]
  for (const value of bad) t.notOk(isWellFormedApiKey(value), JSON.stringify(value))
  t.notOk(API_KEY_PATTERN.test(key.slice(0, -1)))
})

t.test('the stored hash is HMAC-SHA256 under the pepper, and the prefix is the first 10 characters', async t => {
  const key = generateApiKey()
  const hash = hashApiKey(PEPPER, key)
  t.match(hash, /^[0-9a-f]{64}$/)
  t.equal(hash, hashApiKey(PEPPER, key))
  t.not(hash, hashApiKey('q'.repeat(32), key), 'another pepper, another hash')
  t.notMatch(hash, key.slice(8, 24))
  t.equal(apiKeyDisplayPrefix(key), key.slice(0, 10))
  t.match(apiKeyDisplayPrefix(key), /^pk_live_[0-9a-f]{2}$/)
})
