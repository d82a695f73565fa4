import t from 'tap'
import { findLeaks } from './log-secrets.ts'
import { generateApiKey } from '../src/api-key-format.ts'

// The no-secret-in-logs check (run at the end of every test process that builds an app) must
// be able to fail: planted secrets are found, and only real ones.

t.test('a planted secret is found', async t => {
  const key = generateApiKey()
  const line = JSON.stringify({ level: 30, msg: 'API key created', apiKey: key })
  t.equal(findLeaks([line], [key.slice(10)]).length, 2, 'a noted key is found, and its shape alone is found too')
  t.same(findLeaks(['{"msg":"ok"}', line], []).map(leak => leak.line), [line], 'an unnoted but well-formed key is found by its shape, with its line')
  t.equal(findLeaks(['{"msg":"login","password":"hunter2-hunter2"}'], ['hunter2-hunter2']).length, 1, 'a noted password')
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3JfMDEifQ.' + 'S'.repeat(43)
  t.equal(findLeaks([`{"msg":"auth","header":"Bearer ${jwt}"}`], []).length, 1, 'anything shaped like a signed JWT')
  const packet = JSON.stringify({ msg: 'client error', err: { rawPacket: Buffer.from(`GET / HTTP/1.1\r\nX-API-Key: ${key}\r\n`) } })
  t.notOk(packet.includes(key), '(a Buffer is logged as its bytes)')
  t.equal(findLeaks([packet], [key.slice(10)]).length, 2, 'a secret inside a logged Buffer')
})

t.test('what is not a leak', async t => {
  const key = generateApiKey()
  t.same(findLeaks([`{"msg":"API key created","prefix":"${key.slice(0, 10)}"}`], [key.slice(10)]), [], 'the display prefix')
  const badChecksum = key.slice(0, -1) + (key.endsWith('0') ? '1' : '0')
  t.same(findLeaks([`{"req":{"url":"/x"},"note":"${badChecksum}"}`], []), [], 'a key-shaped string with a wrong checksum')
  t.same(findLeaks(['{"req":{"url":"/api/v1/public/users/secret-looking-value"}}'], ['secret-looking-value'], '/api/v1/public/users/secret-looking-value'), [], 'a value the test itself sent in a URL')
})
