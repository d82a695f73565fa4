import type { LookupAddress } from 'node:dns'
import t from 'tap'
import { build } from '../helper.ts'
import { call, createWebhook, deliveriesOf, orgAdmin, selfSignedCertificate, startReceiver, until } from '../support/webhooks.ts'
import { nonPublicRange } from '../../plugins/webhooks/ssrf.ts'

// The SSRF guard of §11 with WEBHOOK_ALLOW_PRIVATE=false: https only, no credentials, and every
// address the host is or resolves to must be public — at subscription, before every attempt, and
// at connect (the connection is pinned to the address just vetted). Names resolve through a
// resolver of this test's (BuildOptions.webhookNetwork, which no configuration reaches); the
// https receiver on 127.0.0.1 has a certificate made here with openssl, trusted the same way.

const PUBLIC_V4 = '93.184.216.34'
const HOST = 'hooks.example.test'

/** name → the addresses it resolves to, in turn: each lookup takes the next answer, the last one repeats */
const answers = new Map<string, string[][]>()
const lookups: string[] = []
async function resolve (hostname: string): Promise<LookupAddress[]> {
  lookups.push(hostname)
  const queue = answers.get(hostname)
  if (queue === undefined || queue.length === 0) {
    const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`)
    error.code = 'ENOTFOUND'
    throw error
  }
  const next = queue.length > 1 ? queue.shift()! : queue[0]
  return next.map(address => ({ address, family: address.includes(':') ? 6 : 4 }))
}

const tls = selfSignedCertificate(HOST)
const network = { resolve, ca: tls.cert }

const REFUSED_LITERALS: Array<[url: string, range: string]> = [
  ['https://127.0.0.1/hook', 'loopback'],
  ['https://127.8.9.10/hook', 'loopback'],
  ['https://2130706433/hook', 'loopback'], // 127.0.0.1 as one decimal number
  ['https://0x7f.1/hook', 'loopback'],
  ['https://10.0.0.1/hook', 'private'],
  ['https://172.16.5.4/hook', 'private'],
  ['https://192.168.1.1/hook', 'private'],
  ['https://100.64.0.1/hook', 'carrierGradeNat'],
  ['https://169.254.169.254/latest/meta-data', 'linkLocal'],
  ['https://224.0.0.1/hook', 'multicast'],
  ['https://0.0.0.0/hook', 'unspecified'],
  ['https://0.1.2.3/hook', 'unspecified'],
  ['https://255.255.255.255/hook', 'broadcast'],
  ['https://192.0.2.1/hook', 'reserved'],
  ['https://198.18.0.1/hook', 'reserved'],
  ['https://240.0.0.1/hook', 'reserved'],
  ['https://[::1]/hook', 'loopback'],
  ['https://[::]/hook', 'unspecified'],
  ['https://[fe80::1]/hook', 'linkLocal'],
  ['https://[fc00::1]/hook', 'uniqueLocal'],
  ['https://[fd12:3456::1]/hook', 'uniqueLocal'],
  ['https://[ff02::1]/hook', 'multicast'],
  ['https://[::ffff:127.0.0.1]/hook', 'loopback'],
  ['https://[::ffff:10.0.0.1]/hook', 'private'],
  ['https://[::ffff:169.254.169.254]/hook', 'linkLocal'],
  ['https://[64:ff9b::a00:1]/hook', 'rfc6052'],
  ['https://[2002:a00:1::]/hook', '6to4'],
  ['https://[2001::1]/hook', 'teredo'],
  ['https://[2001:db8::1]/hook', 'reserved'],
  ['https://[::7f00:1]/hook', 'reserved'], // IPv4-compatible ::127.0.0.1
  ['https://[100::1]/hook', 'discard']
]

t.test('at subscription: each non-public range is refused, as a literal (400 naming url and the range)', async t => {
  const app = await build(t, { webhookAllowPrivate: false }, { webhookNetwork: network })
  const admin = await orgAdmin(app)
  for (const [url, range] of REFUSED_LITERALS) {
    const res = await call(app, admin, 'POST', '', { url, events: ['*'] })
    t.equal(res.statusCode, 400, url)
    t.match(res.json(), { code: 'validation_failed', message: new RegExp(`^body\\.url must not point to a non-public address: .* is ${range}$`) }, url)
  }
  t.equal((await app.db.selectFrom('webhooks').select('id').where('org_id', '=', admin.org.id).execute()).length, 0, 'none stored')
  t.equal(nonPublicRange(PUBLIC_V4), null, 'control: a public IPv4 passes')
  t.equal(nonPublicRange('2606:4700::1111'), null, 'control: a public IPv6 passes')
})

t.test('at subscription: a name resolving to any non-public address, http://, credentials, an unresolvable name: 400; public ones: 201', async t => {
  const app = await build(t, { webhookAllowPrivate: false }, { webhookNetwork: network })
  const admin = await orgAdmin(app)
  answers.set('internal.example.test', [['10.0.0.7']])
  answers.set('mixed.example.test', [[PUBLIC_V4, '10.0.0.7']])
  answers.set('metadata.example.test', [['fd00:ec2::254']])
  answers.set('mapped.example.test', [['::ffff:192.168.0.1']])
  answers.set('public.example.test', [[PUBLIC_V4, '2606:4700::1111']])
  const refused: Array<[string, RegExp]> = [
    ['https://internal.example.test/hook', /host internal\.example\.test resolves to a non-public address: 10\.0\.0\.7 is private/],
    ['https://mixed.example.test/hook', /10\.0\.0\.7 is private/],
    ['https://metadata.example.test/hook', /fd00:ec2::254 is uniqueLocal/],
    ['https://mapped.example.test/hook', /::ffff:192\.168\.0\.1 is private/],
    ['https://nxdomain.example.test/hook', /host nxdomain\.example\.test does not resolve \(ENOTFOUND\)/],
    [`http://${PUBLIC_V4}/hook`, /must be an https:\/\/ URL/],
    ['http://public.example.test/hook', /must be an https:\/\/ URL/],
    ['https://user:pass@public.example.test/hook', /must not carry credentials/]
  ]
  for (const [url, message] of refused) {
    const res = await call(app, admin, 'POST', '', { url, events: ['*'] })
    t.equal(res.statusCode, 400, url)
    t.match(res.json(), { code: 'validation_failed', message }, url)
  }
  for (const url of ['https://public.example.test/hook', `https://${PUBLIC_V4}/hook`, 'https://[2606:4700::1111]/hook']) {
    const res = await call(app, admin, 'POST', '', { url, events: ['member.removed'] })
    t.equal(res.statusCode, 201, url)
  }
  const [webhook] = (await call(app, admin, 'GET', '')).json().data.webhooks
  const patched = await call(app, admin, 'PATCH', `/${webhook.id}`, { url: 'https://internal.example.test/hook' })
  t.equal(patched.statusCode, 400, 'PATCH checks the URL too')
  t.match(patched.json().message, /^body\.url host internal\.example\.test resolves to a non-public address/)
  t.ok(lookups.includes('public.example.test'), 'names are resolved')
})

t.test('control: with WEBHOOK_ALLOW_PRIVATE the same https receiver on 127.0.0.1 gets the delivery (through the pinned lookup and the test CA)', async t => {
  const app = await build(t, { webhookAllowPrivate: true }, { webhookNetwork: network })
  const receiver = await startReceiver(() => 200, tls)
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  answers.set(HOST, [['127.0.0.1']])
  const { webhook } = await createWebhook(app, admin, { url: `https://${HOST}:${receiver.port}/hooks`, events: ['member.removed'] })
  t.equal((await call(app, admin, 'POST', `/${webhook.id}/test`)).statusCode, 202)
  const [received] = await receiver.waitFor(1)
  t.equal(received.headers.host, `${HOST}:${receiver.port}`)
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.status === 'succeeded')
})

t.test('before every attempt: a name that now resolves to 127.0.0.1 is refused, nothing reaches the receiver there', async t => {
  const app = await build(t, { webhookAllowPrivate: false, webhookRetryScheduleMs: [0, 60_000] }, { webhookNetwork: network })
  const receiver = await startReceiver(() => 200, tls)
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  answers.set(HOST, [[PUBLIC_V4]])
  const { webhook } = await createWebhook(app, admin, { url: `https://${HOST}:${receiver.port}/hooks`, events: ['member.removed'] })
  answers.set(HOST, [['127.0.0.1']])
  t.equal((await call(app, admin, 'POST', `/${webhook.id}/test`)).statusCode, 202)
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.attempts === 1)
  const [delivery] = await deliveriesOf(app, admin, webhook.id)
  t.match(delivery, { status: 'pending', attempts: 1, lastResponseStatus: null, lastError: /^refused: the URL host hooks\.example\.test resolves to a non-public address: 127\.0\.0\.1 is loopback$/ })
  t.equal(receiver.received.length, 0, 'the receiver on 127.0.0.1 got nothing')
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tenantkey_webhook_attempts_total\{outcome="refused_address"\} [1-9]/)
})

t.test('at connect (DNS rebinding): public when checked, 127.0.0.1 when the connection resolves it: refused, nothing reaches the receiver', async t => {
  const app = await build(t, { webhookAllowPrivate: false, webhookRetryScheduleMs: [0, 60_000] }, { webhookNetwork: network })
  const receiver = await startReceiver(() => 200, tls)
  t.teardown(() => receiver.close())
  const admin = await orgAdmin(app)
  answers.set(HOST, [[PUBLIC_V4]])
  const { webhook } = await createWebhook(app, admin, { url: `https://${HOST}:${receiver.port}/hooks`, events: ['member.removed'] })
  // The next lookup (the check before the attempt) answers a public address, every later one (the connection's) 127.0.0.1.
  answers.set(HOST, [[PUBLIC_V4], ['127.0.0.1']])
  const before = lookups.length
  t.equal((await call(app, admin, 'POST', `/${webhook.id}/test`)).statusCode, 202)
  await until(async () => (await deliveriesOf(app, admin, webhook.id))[0]?.attempts === 1)
  const [delivery] = await deliveriesOf(app, admin, webhook.id)
  t.match(delivery, { status: 'pending', attempts: 1, lastResponseStatus: null, lastError: /^refused at connect: host hooks\.example\.test resolves to a non-public address: 127\.0\.0\.1 is loopback$/ })
  t.ok(lookups.length - before >= 2, 'resolved for the check, and again by the connection')
  t.equal(receiver.received.length, 0, 'the receiver on 127.0.0.1 got nothing')
})
