import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { findEventLeaks, findLeaks, noteSecret } from './log-secrets.ts'
import { sharedDatabase } from './helper.ts'
import { generateApiKey } from '../src/api-key-format.ts'
import { newId } from '../src/ids.ts'

// The no-secret-in-logs check (run at the end of every test process that builds an app), and its
// twin for stored audit events, must be able to fail: planted secrets are found, and only real ones.

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

t.test('a secret in a stored audit event is found, by value or by shape', async t => {
  const { handle } = await sharedDatabase()
  const password = `planted-password-${randomBytes(6).toString('hex')}`
  noteSecret(password)
  const key = generateApiKey()
  const id = newId('evt')
  await handle.db.insertInto('audit_events').values({
    id, org_id: null, type: 'user.created', actor_type: 'system', actor_id: null, actor_email: null, target_type: 'user', target_id: newId('usr'), data: JSON.stringify({ password, note: key }), ip: null
  }).execute()
  const stored = () => handle.db.selectFrom('audit_events').selectAll().execute()
  t.same(findEventLeaks(await stored()).map(leak => leak.secret).sort(), [key, password].sort(), 'the noted password, and an unnoted key by its shape')
  // Taken out again, or the check at the end of this process would (rightly) fail it.
  await handle.db.deleteFrom('audit_events').where('id', '=', id).execute()
  t.same(findEventLeaks(await stored()), [])
})

t.test('a test process that leaves a secret in an audit event fails', async t => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const { code, output } = await new Promise<{ code: number | null, output: string }>(resolve => {
    execFile(process.execPath, ['--import', 'tsx', 'test/support/planted-event-leak.ts'], { cwd: root, env: process.env, timeout: 300_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (typeof error.code === 'number' ? error.code : null), output: stdout + stderr })
    })
  })
  t.not(code, 0, 'the process fails')
  t.match(output, 'ok 1 - an event holding a password is stored', 'its test itself passed')
  t.match(output, '1 stored audit event(s) contain a secret', 'the check of stored events failed it')
})
