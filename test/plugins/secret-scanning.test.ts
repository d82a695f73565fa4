import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, createOrgWithMember, createApiKey, sessionToken, REDIS_URL } from '../helper.ts'
import { noteSecret } from '../log-secrets.ts'
import { generateApiKey } from '../../src/api-key-format.ts'

const GITHUB = '/api/v1/secret-scanning/github'
const REPORT = '/api/v1/api-keys/report'

function keyPair (): { privateKey: KeyObject, publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string }
}

// GitHub's public-keys document: ours, and a decoy that signs nothing.
const ours = keyPair()
const decoy = keyPair()
const OURS_ID = 'f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d'
const DECOY_ID = '0a9a26b0b7d6f1c1a1e8f0b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3'
const dir = mkdtempSync(join(tmpdir(), 'tk-gh-keys-'))
const keysFile = join(dir, 'github-keys.json')
function writeKeys (entries: Array<{ id: string, pem: string }>): void {
  writeFileSync(keysFile, JSON.stringify({ public_keys: entries.map((entry, i) => ({ key_identifier: entry.id, key: entry.pem, is_current: i === 0 })) }))
}
writeKeys([{ id: DECOY_ID, pem: decoy.publicPem }, { id: OURS_ID, pem: ours.publicPem }])

function signed (body: string, privateKey = ours.privateKey, identifier = OURS_ID): Record<string, string> {
  return {
    'content-type': 'application/json',
    'github-public-key-identifier': identifier,
    'github-public-key-signature': sign('sha256', Buffer.from(body), privateKey).toString('base64')
  }
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')

async function keyedOrg (app: FastifyInstance): Promise<{ fixture: Awaited<ReturnType<typeof createOrgWithMember>>, admin: string, live: { key: string, id: string }, revoked: { key: string, id: string } }> {
  const fixture = await createOrgWithMember(app)
  const { token } = await sessionToken(app, { userId: fixture.user.id, orgId: fixture.org.id, slug: fixture.org.slug, role: 'org_admin' })
  const live = await createApiKey(app, fixture)
  const revoked = await createApiKey(app, fixture)
  const res = await app.inject({ method: 'DELETE', url: `/api/v1/org/api-keys/${revoked.id}`, headers: { authorization: `Bearer ${token}`, 'x-org-slug': fixture.org.slug } })
  if (res.statusCode !== 200) throw new Error(`revoke: ${res.statusCode}`)
  return { fixture, admin: token, live, revoked }
}

async function publicOrg (app: FastifyInstance, slug: string, key: string): Promise<number> {
  return (await app.inject({ method: 'GET', url: '/api/v1/public/org', headers: { 'x-org-slug': slug, 'x-api-key': key } })).statusCode
}

async function leakedEvents (app: FastifyInstance, keyId: string): Promise<Array<{ actor_type: string, data: Record<string, unknown>, type: string }>> {
  return await app.db.selectFrom('audit_events').select(['type', 'actor_type', 'data']).where('target_id', '=', keyId).where('type', '=', 'api_key.leaked').execute()
}

t.test('GitHub batch: live keys are revoked and labelled, revoked ones labelled, the rest false positives', async t => {
  const app = await build(t, { githubSecretScanningKeysFile: keysFile })
  const { fixture, live, revoked } = await keyedOrg(app)
  t.equal(await publicOrg(app, fixture.org.slug, live.key), 200, 'the key works before it leaks')
  const unknown = generateApiKey()
  noteSecret(unknown)
  const notAKey = 'pk_live_not-a-key-at-all'
  const matches = [
    { token: live.key, type: 'tenantkey_api_key', url: 'https://github.com/octo/repo/blob/main/.env', source: 'content' },
    { token: revoked.key, type: 'tenantkey_api_key', url: 'https://github.com/octo/repo/blob/main/old.env', source: 'commit' },
    { token: unknown, type: 'tenantkey_api_key', url: 'https://github.com/octo/repo/issues/1', source: 'issue_comment' },
    { token: notAKey, type: 'tenantkey_api_key', source: 'content' }
  ]
  const body = JSON.stringify(matches)
  const before = app.database.stats.queries
  const res = await app.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(res.json(), [
    { token_hash: sha256(live.key), token_type: 'tenantkey_api_key', label: 'true_positive' },
    { token_hash: sha256(revoked.key), token_type: 'tenantkey_api_key', label: 'true_positive' },
    { token_hash: sha256(unknown), token_type: 'tenantkey_api_key', label: 'false_positive' },
    { token_hash: sha256(notAKey), token_type: 'tenantkey_api_key', label: 'false_positive' }
  ], "GitHub's feedback format, in the request's order")
  // One lookup for the batch; the revocation of the one live key: begin, update, event, its webhook deliveries, commit.
  t.ok(app.database.stats.queries - before <= 6, `queries for the batch: ${app.database.stats.queries - before}`)

  t.equal(await publicOrg(app, fixture.org.slug, live.key), 401, 'the leaked key stopped working at once')
  const events = await leakedEvents(app, live.id)
  t.equal(events.length, 1, 'one api_key.leaked event')
  t.match(events[0], { actor_type: 'system', data: { apiKey: { id: live.id }, source: 'content', url: 'https://github.com/octo/repo/blob/main/.env', actionTaken: 'revoked' } })
  t.notOk(JSON.stringify(events[0]).includes(live.key), 'the event never holds the key')
  t.same(await leakedEvents(app, revoked.id), [], 'an already revoked key is not revoked again')

  const again = await app.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })
  t.equal(again.statusCode, 200)
  t.equal((await leakedEvents(app, live.id)).length, 1, 'reporting it again records nothing more')
})

t.test('GitHub batch of 1,000 strings is one database lookup', async t => {
  const app = await build(t, { githubSecretScanningKeysFile: keysFile })
  const matches = Array.from({ length: 1000 }, () => ({ token: generateApiKey(), type: 'tenantkey_api_key', source: 'content' }))
  for (const match of matches) noteSecret(match.token)
  const body = JSON.stringify(matches)
  const before = app.database.stats.queries
  const res = await app.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })
  t.equal(res.statusCode, 200)
  t.equal(res.json().length, 1000)
  t.equal(app.database.stats.queries - before, 1, 'one query for the whole batch')
  const tooMany = JSON.stringify([...matches, matches[0]])
  t.equal((await app.inject({ method: 'POST', url: GITHUB, headers: signed(tooMany), payload: tooMany })).statusCode, 400, 'more than 1,000 → 400')
})

t.test('GitHub signatures: missing, unknown identifier, wrong key, changed body → 401; no keys file → 404', async t => {
  const app = await build(t, { githubSecretScanningKeysFile: keysFile })
  const { fixture, live } = await keyedOrg(app)
  const body = JSON.stringify([{ token: live.key, type: 'tenantkey_api_key', source: 'content' }])
  const cases: Array<[string, Record<string, string>, string]> = [
    ['no signature headers', { 'content-type': 'application/json' }, body],
    ['an identifier not in the keys file', signed(body, ours.privateKey, 'nope'), body],
    ['signed by another key than the one named', signed(body, decoy.privateKey, OURS_ID), body],
    ['the body changed after signing', signed(body), body.replace('content', 'commit')],
    ['a signature that is not base64 DER', { ...signed(body), 'github-public-key-signature': 'not a signature' }, body]
  ]
  for (const [label, headers, payload] of cases) {
    const res = await app.inject({ method: 'POST', url: GITHUB, headers, payload })
    t.equal(res.statusCode, 401, label)
    t.match(res.json(), { status: 'error', code: 'invalid_signature' }, label)
  }
  t.equal(await publicOrg(app, fixture.org.slug, live.key), 200, 'no unsigned request revoked anything')

  const off = await build(t)
  const res = await off.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })
  t.equal(res.statusCode, 404, 'without GITHUB_SECRET_SCANNING_KEYS the endpoint does not exist')
})

t.test('the keys file is read again when it changes', async t => {
  const file = join(dir, 'rotating-keys.json')
  writeFileSync(file, JSON.stringify({ public_keys: [{ key_identifier: DECOY_ID, key: decoy.publicPem, is_current: true }] }))
  const app = await build(t, { githubSecretScanningKeysFile: file })
  const body = JSON.stringify([{ token: 'x', type: 't' }])
  t.equal((await app.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })).statusCode, 401, 'not yet listed')
  await new Promise(resolve => setTimeout(resolve, 20))
  writeFileSync(file, JSON.stringify({ public_keys: [{ key_identifier: OURS_ID, key: ours.publicPem, is_current: true }] }))
  t.equal((await app.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })).statusCode, 200, 'listed after the file changed')
})

t.test('report: always 202 with the same body; a live key is revoked; 10 per minute per address', async t => {
  const app = await build(t)
  const { fixture, live, revoked } = await keyedOrg(app)
  const answers = []
  for (const payload of [
    { key: live.key, source: 'pastebin', url: 'https://paste.example/abc' },
    { key: revoked.key },
    { key: generateApiKey() },
    { key: 'hunter2' }
  ]) {
    noteSecret(payload.key)
    const res = await app.inject({ method: 'POST', url: REPORT, payload, remoteAddress: '198.51.100.7' })
    t.equal(res.statusCode, 202)
    answers.push(res.body)
  }
  t.equal(new Set(answers).size, 1, 'the same body whatever the key')
  t.same(JSON.parse(answers[0]), { status: 'success', data: { message: 'Report received' } })
  t.equal(await publicOrg(app, fixture.org.slug, live.key), 401, 'the reported live key is revoked')
  t.match(await leakedEvents(app, live.id), [{ actor_type: 'system', data: { source: 'pastebin', url: 'https://paste.example/abc', actionTaken: 'revoked' } }])

  const bad = await app.inject({ method: 'POST', url: REPORT, payload: { key: 'k', url: 'x\ud800' }, remoteAddress: '198.51.100.7' })
  t.equal(bad.statusCode, 400, 'a string the audit log cannot hold is refused, naming the field')
  t.match(bad.json(), { code: 'validation_failed', message: /body\.url/ })

  const statuses = []
  for (let i = 0; i < 6; i++) statuses.push((await app.inject({ method: 'POST', url: REPORT, payload: { key: 'x' }, remoteAddress: '198.51.100.7' })).statusCode)
  t.same(statuses, [202, 202, 202, 202, 202, 429], 'the 11th report in a minute from one address is refused')
  const other = await app.inject({ method: 'POST', url: REPORT, payload: { key: 'x' }, remoteAddress: '198.51.100.8' })
  t.equal(other.statusCode, 202, 'another address has its own budget')
})

t.test('a key revoked through a report is refused by another instance at once (shared Redis)', { skip: REDIS_URL === null ? 'REDIS_URL is not set: two instances share revocations only through Redis' : false }, async t => {
  const a = await build(t, { githubSecretScanningKeysFile: keysFile })
  const b = await build(t, { githubSecretScanningKeysFile: keysFile })
  const { fixture, live } = await keyedOrg(a)
  t.equal(await publicOrg(b, fixture.org.slug, live.key), 200, 'B has the key cached')
  const body = JSON.stringify([{ token: live.key, type: 'tenantkey_api_key', source: 'content' }])
  t.equal((await a.inject({ method: 'POST', url: GITHUB, headers: signed(body), payload: body })).statusCode, 200)
  t.equal(await publicOrg(b, fixture.org.slug, live.key), 401, 'B refuses it on the next request')
})
