// npm run bench:webhooks: webhook delivery throughput, commit → receipt lag, and what an idle
// worker costs. The real app (buildApp, its delivery worker) on the embedded database, or on
// PostgreSQL (+ Redis) with DATABASE_URL (and REDIS_URL); a receiver on 127.0.0.1 answering 200.
// Events are committed through recordEvent, each in its own transaction as a write route does,
// by BENCH_WEBHOOK_PRODUCERS concurrent producers; the clock starts at each commit.
import http from 'node:http'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AddressInfo } from 'node:net'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { recordEvent, SYSTEM_ACTOR } from '../db/queries/events.ts'
import { insertWebhook } from '../db/queries/webhooks.ts'
import { newId } from '../src/ids.ts'
import { newWebhookSecret, webhookSealer } from '../plugins/webhooks/secrets.ts'
import { benchStores } from './lib/stores.ts'
import { gitCommit, machineInfo } from './lib/machine.ts'

const EVENTS = Number(process.env.BENCH_WEBHOOK_EVENTS ?? 1000)
const PRODUCERS = Number(process.env.BENCH_WEBHOOK_PRODUCERS ?? 8)
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30)
/** events per second the steady flow offers (0: as fast as the producers can commit) */
const RATE = Number(process.env.BENCH_WEBHOOK_RATE ?? 250)
const WARMUP = 100
const now = (): number => performance.timeOrigin + performance.now()

const stores = await benchStores(process.env)
const received = new Map<string, number>()
const receiver = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', chunk => chunks.push(chunk))
  req.on('end', () => {
    const at = now()
    const id = /^\{"id":"(evt_[0-9A-Z]+)"/.exec(Buffer.concat(chunks).toString('latin1'))?.[1]
    if (id !== undefined && !received.has(id)) received.set(id, at)
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
  })
})
await new Promise<void>(resolve => receiver.listen(0, '127.0.0.1', resolve))
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`

const { config } = loadConfig({
  ...stores.env,
  NODE_ENV: 'production',
  LOG_LEVEL: 'warn',
  JWT_SECRET: 'bench-jwt-secret-0123456789abcdef0123456789',
  API_KEY_PEPPER: 'bench-api-key-pepper-0123456789abcdef0123',
  ADMIN_TOKEN: 'bench-admin-token-0123456789abcdef',
  // the receiver is on loopback
  WEBHOOK_ALLOW_PRIVATE: 'true'
})
const app = await buildApp(config, { logStream: new Writable({ write (_chunk, _encoding, done) { done() } }) })
await app.ready()

try {
  const created = await app.inject({ method: 'POST', url: '/api/v1/admin/orgs', headers: { authorization: `Bearer ${config.adminToken}` }, payload: { slug: 'bench-webhooks', name: 'Bench' } })
  if (created.statusCode !== 201) throw new Error(`create org: ${created.statusCode} ${created.body}`)
  const orgId: string = created.json().data.org.id
  const webhookId = newId('wh')
  await app.db.transaction().execute(async trx => await insertWebhook(trx, {
    id: webhookId, orgId, url: receiverUrl, events: ['*'], description: 'bench', secretCiphertext: webhookSealer(config.apiKeyPepper).seal(webhookId, newWebhookSecret())
  }))

  const memberUpdated = (i: number) => ({
    type: 'member.updated' as const,
    orgId,
    actor: SYSTEM_ACTOR,
    target: { type: 'user', id: `usr_bench${i}` },
    data: { user: { id: `usr_bench${i}`, email: `bench${i}@example.test` }, membership: { role: 'member', status: 'active', joinedAt: new Date().toISOString() }, changes: ['status'] },
    ip: null
  })
  const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]
  async function allReceived (ids: Iterable<string>): Promise<number> {
    const wanted = [...ids]
    const deadline = Date.now() + 180_000
    while (wanted.some(id => !received.has(id))) {
      if (Date.now() > deadline) throw new Error(`only ${wanted.filter(id => received.has(id)).length} of ${wanted.length} deliveries arrived within 180 s`)
      await sleep(5)
    }
    return Math.max(...wanted.map(id => received.get(id) as number))
  }

  // 0. Warm-up (not measured): the first deliveries compile the send path and open the connection.
  const warmup: string[] = []
  for (let i = 0; i < WARMUP; i++) warmup.push((await app.db.transaction().execute(async trx => await recordEvent(trx, memberUpdated(-1 - i)))).id)
  await allReceived(warmup)

  // 1. Steady flow: each event its own transaction, as write routes commit them, offered at RATE per second.
  const committed = new Map<string, number>()
  let next = 0
  const started = now()
  await Promise.all(Array.from({ length: PRODUCERS }, async () => {
    while (next < EVENTS) {
      const i = next++
      const due = started + (RATE > 0 ? i * 1000 / RATE : 0)
      if (due > now()) await sleep(due - now())
      const event = await app.db.transaction().execute(async trx => await recordEvent(trx, memberUpdated(i)))
      committed.set(event.id, now())
    }
  }))
  const producedIn = now() - started
  const lastReceipt = await allReceived(committed.keys())
  const lags = [...committed].map(([id, at]) => (received.get(id) as number) - at).sort((a, b) => a - b)
  const seconds = (lastReceipt - started) / 1000

  // 2. A backlog: the events of one transaction become due together; how fast the workers drain them.
  const burstIds: string[] = []
  await app.db.transaction().execute(async trx => {
    for (let i = 0; i < EVENTS; i++) burstIds.push((await recordEvent(trx, memberUpdated(EVENTS + i))).id)
  })
  const burstCommitted = now()
  const burstFirst = await (async () => { while (!received.has(burstIds[0]) && burstIds.every(id => !received.has(id))) await sleep(1); return now() })()
  const burstLast = await allReceived(burstIds)
  const drainSeconds = (burstLast - burstCommitted) / 1000
  const burstLags = burstIds.map(id => (received.get(id) as number) - burstCommitted).sort((a, b) => a - b)

  // Idle: the worker waits on LISTEN and polls every 5 s; nothing else happens.
  // First 15 s to settle: the garbage of 2,100 deliveries is collected, not counted as idle.
  await sleep(15_000)
  const cpuBefore = process.cpuUsage()
  const wallBefore = now()
  await sleep(IDLE_SECONDS * 1000)
  const cpu = process.cpuUsage(cpuBefore)
  const idleShare = (cpu.user + cpu.system) / 1000 / (now() - wallBefore)
  const { count } = await app.db.selectFrom('webhook_deliveries').select(eb => eb.fn.countAll<string>().as('count'))
    .where('webhook_id', '=', webhookId).where('status', '=', 'succeeded').where('attempts', '=', 1).executeTakeFirstOrThrow()

  const machine = machineInfo()
  const lines = [
    `### ${stores.label}: ${EVENTS} events, ${PRODUCERS} producers, ${new Date().toISOString().slice(0, 19)}Z, commit ${gitCommit()}`,
    '',
    `Machine: ${machine.nproc} × ${machine.cpuModel}, Node ${machine.node}, load ${machine.load} at the end.`,
    '',
    '| Measure | Value | Goal |',
    '|---|---|---|',
    `| Steady flow: events committed per second (offered ${RATE > 0 ? `${RATE}/s` : 'unpaced'}, ${PRODUCERS} producers, one transaction each) | ${Math.round(EVENTS / (producedIn / 1000))} | — |`,
    `| Steady flow: deliveries per second (first commit → last receipt) | ${Math.round(EVENTS / seconds)} | — |`,
    `| Steady flow: commit → receipt lag p50 | ${pct(lags, 50).toFixed(1)} ms | — |`,
    `| Steady flow: commit → receipt lag p99 | ${pct(lags, 99).toFixed(1)} ms | ≤ 1,000 ms |`,
    `| Steady flow: commit → receipt lag max | ${lags[lags.length - 1].toFixed(1)} ms | — |`,
    `| Backlog of ${EVENTS} (one transaction): deliveries per second (commit → last receipt) | ${Math.round(EVENTS / drainSeconds)} | ≥ 500 |`,
    `| Backlog: commit → first receipt; lag p50, p99 | ${(burstFirst - burstCommitted).toFixed(1)} ms; ${pct(burstLags, 50).toFixed(0)} ms, ${pct(burstLags, 99).toFixed(0)} ms | — |`,
    `| Delivered at the first attempt, once each | ${count} of ${2 * EVENTS + WARMUP} (receiver saw ${received.size} distinct; ${WARMUP} were a warm-up) | all |`,
    `| Idle process CPU over ${IDLE_SECONDS} s (app + worker, nothing to do) | ${(idleShare * 100).toFixed(3)} % of one core | < 1 % |`,
    ''
  ]
  console.log(lines.join('\n'))
} finally {
  await app.close()
  await new Promise<void>(resolve => receiver.close(() => resolve()))
  await stores.drop()
}
