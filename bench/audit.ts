// npm run bench:audit (issue 15), on PostgreSQL: with 1,000,000 events in the log (100,000 in one
// org), the query plan and the HTTP latency of filtered pages of 50, and what recording an event
// costs a write route (the same route, in the same process, with and without its event).
import { appendFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Database } from '../db/database.ts'
import { eventPageQuery, type EventQuery } from '../db/queries/events.ts'
import { encodeCursor } from '../src/event-cursor.ts'
import { median } from './lib/load.ts'
import { gitCommit, machineInfo, pinThisProcess } from './lib/machine.ts'
import { commandLine } from './lib/settings.ts'
import { startApp } from './lib/setup.ts'
import { benchStores } from './lib/stores.ts'

const env = process.env
if (env.DATABASE_URL === undefined || env.DATABASE_URL === '') {
  console.error('bench:audit measures PostgreSQL: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test)')
  process.exit(2)
}
const seconds = Number(env.BENCH_SECONDS ?? 5)
const rounds = Number(env.BENCH_ROUNDS ?? 5)
const connections = Number(env.BENCH_CONNECTIONS ?? 10)
const TOTAL = Number(env.BENCH_AUDIT_EVENTS ?? 1_000_000)
const ORG_SHARE = 10 // one event in ten is the measured org's: 100,000 of 1,000,000
const OTHER_ORGS = 900
const PAGE_TARGET_MS = 20
// the cursor of a page halfway down the measured org's events
const DEEP_OFFSET = Math.floor(TOTAL / ORG_SHARE / 2)
const DEEP_PAGE = `page ${(DEEP_OFFSET / 50 + 1).toLocaleString('en')} (cursor)`
const WRITE_COST_TARGET = 0.05

const machine = machineInfo()
const pinning = pinThisProcess()
const date = new Date()
const stores = await benchStores(env)
const app = await startApp(stores, pinning.serverCpu)
const pool = new pg.Pool({ connectionString: stores.env.DATABASE_URL, max: 2 })
pool.on('error', () => {}) // the database is dropped at the end, with our idle connections in it
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
const { fixture } = app
const lines: string[] = []
const say = (line: string): void => { console.log(line); lines.push(line) }

const hexId = (prefix: string, n: string): string => `'${prefix}_' || lpad(upper(to_hex(${n})), 26, '0')`
// chosen among the measured org's (whose events are those with g % ORG_SHARE = 0)
const COMMON_ACTOR = 'usr_' + (10).toString(16).toUpperCase().padStart(26, '0')
const RARE_ACTOR = 'usr_' + 'FFFFF'.padStart(26, '0')
// 20,000 events, all in other orgs (g % 50 = 1 never has g % ORG_SHARE = 0): skewed against the measured org
const ELSEWHERE_ACTOR = 'usr_' + (1).toString(16).toUpperCase().padStart(26, '0')
const THREE_TYPES = ['api_key.created', 'user.login', 'member.joined']
const TARGET = 'key_' + (120).toString(16).toUpperCase().padStart(26, '0')

try {
  console.log(`bench:audit: seeding ${TOTAL.toLocaleString('en')} events (${(TOTAL / ORG_SHARE).toLocaleString('en')} in ${fixture.org.slug})`)
  const seedStart = Date.now()
  await pool.query(`insert into organizations (id, slug, name) select ${hexId('org', 'g')}, 'seed-' || g, 'Seed ' || g from generate_series(1, ${OTHER_ORGS}) g`)
  // Events 26 s apart over the last ~300 days, ids in the same order; one in ORG_SHARE in the
  // measured org; 50 actors (one rare), 5,000 targets, seven common types and one rare one.
  await pool.query(`
    insert into audit_events (id, org_id, type, actor_type, actor_id, actor_email, target_type, target_id, data, ip, created_at)
    select ${hexId('evt', 'g')},
      case when g % ${ORG_SHARE} = 0 then $1 else ${hexId('org', `g % ${OTHER_ORGS} + 1`)} end,
      case when g % 1000 = 0 then 'webhook.deleted'
        else (array['api_key.created', 'api_key.updated', 'api_key.revoked', 'user.login', 'member.joined', 'member.removed', 'org.updated'])[1 + g % 7] end,
      'user',
      case when g % 100000 = 0 then '${RARE_ACTOR}' else ${hexId('usr', 'g % 50')} end,
      'seed@example.test', 'api_key', ${hexId('key', 'g % 5000')}, '{"seed":true}'::jsonb, '203.0.113.7',
      now() - interval '300 days' + g * interval '26 seconds'
    from generate_series(1, ${TOTAL}) g`, [fixture.org.id])
  await pool.query('vacuum analyze audit_events')
  console.log(`bench:audit: seeded in ${((Date.now() - seedStart) / 1000).toFixed(0)} s`)

  const mid = new Date(Date.now() - 150 * 86_400_000)
  const day = { since: mid, until: new Date(mid.getTime() + 86_400_000) }
  const deep = await pool.query<{ at: string, id: string }>(
    `select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at, id from audit_events
     where org_id = $1 order by created_at desc, id desc offset $2 limit 1`, [fixture.org.id, DEEP_OFFSET])
  const after = { createdAt: deep.rows[0].at, id: deep.rows[0].id }
  const org = fixture.org.id
  const seedOrg = { id: `org_${'1'.padStart(26, '0')}`, slug: 'seed-1' }

  interface Case { label: string, route: 'org' | 'admin', params: Record<string, string>, query: EventQuery }
  const cases: Case[] = [
    { label: 'no filter', route: 'org', params: {}, query: { orgId: org, limit: 50 } },
    { label: 'type (common)', route: 'org', params: { type: 'api_key.created' }, query: { orgId: org, types: ['api_key.created'], limit: 50 } },
    { label: 'type (rare: 1 in 1,000)', route: 'org', params: { type: 'webhook.deleted' }, query: { orgId: org, types: ['webhook.deleted'], limit: 50 } },
    { label: 'two types', route: 'org', params: { type: 'api_key.revoked,webhook.deleted' }, query: { orgId: org, types: ['api_key.revoked', 'webhook.deleted'], limit: 50 } },
    { label: 'actor (common)', route: 'org', params: { actorId: COMMON_ACTOR }, query: { orgId: org, actorId: COMMON_ACTOR, limit: 50 } },
    { label: 'actor (rare)', route: 'org', params: { actorId: RARE_ACTOR }, query: { orgId: org, actorId: RARE_ACTOR, limit: 50 } },
    { label: 'target', route: 'org', params: { targetId: TARGET }, query: { orgId: org, targetId: TARGET, limit: 50 } },
    { label: 'one day (since + until)', route: 'org', params: { since: day.since.toISOString(), until: day.until.toISOString() }, query: { orgId: org, since: day.since, until: day.until, limit: 50 } },
    { label: 'rare type + one day', route: 'org', params: { type: 'webhook.deleted', since: day.since.toISOString(), until: day.until.toISOString() }, query: { orgId: org, types: ['webhook.deleted'], since: day.since, until: day.until, limit: 50 } },
    { label: 'common actor + rare type', route: 'org', params: { actorId: COMMON_ACTOR, type: 'webhook.deleted' }, query: { orgId: org, actorId: COMMON_ACTOR, types: ['webhook.deleted'], limit: 50 } },
    // Before one scan per type: an index scan of the actor's 20,000 events fetching each from the table, 1.6 s.
    { label: 'actor of other orgs + three types', route: 'org', params: { actorId: ELSEWHERE_ACTOR, type: THREE_TYPES.join(',') }, query: { orgId: org, actorId: ELSEWHERE_ACTOR, types: THREE_TYPES, limit: 50 } },
    { label: DEEP_PAGE, route: 'org', params: { cursor: encodeCursor(after) }, query: { orgId: org, after, limit: 50 } },
    { label: 'all orgs, no filter', route: 'admin', params: {}, query: { limit: 50 } },
    { label: 'all orgs, one org', route: 'admin', params: { org: seedOrg.slug }, query: { orgId: seedOrg.id, limit: 50 } },
    { label: 'all orgs, rare type', route: 'admin', params: { type: 'webhook.deleted' }, query: { types: ['webhook.deleted'], limit: 50 } },
    { label: 'all orgs, rare actor', route: 'admin', params: { actorId: RARE_ACTOR }, query: { actorId: RARE_ACTOR, limit: 50 } },
    { label: 'all orgs, target', route: 'admin', params: { targetId: TARGET }, query: { targetId: TARGET, limit: 50 } },
    { label: `all orgs, ${DEEP_PAGE}`, route: 'admin', params: { cursor: encodeCursor(after) }, query: { after, limit: 50 } }
  ]

  say(`## Audit log (issue 15): ${TOTAL.toLocaleString('en')} events, PostgreSQL, ${date.toISOString().slice(0, 19)}Z`)
  say('')
  say(`- Command: \`${commandLine('bench:audit', env)}\` at commit ${gitCommit()}`)
  say(`- Machine: ${machine.nproc} × ${machine.cpuModel}, node ${machine.node}; load average at start ${machine.load}`)
  say(`- ${pinning.note}; pages: ${connections} connections × ${seconds} s each; ${(TOTAL / ORG_SHARE).toLocaleString('en')} events in the measured org, the rest over ${OTHER_ORGS} orgs`)
  say('')
  say('| Page of 50 | route | plan (index scans) | rows read | PostgreSQL ms | req/s | p50 ms | p99 ms |')
  say('|---|---|---|---:|---:|---:|---:|---:|')
  const orgHeaders = { authorization: `Bearer ${fixture.accessToken}`, 'x-org-slug': fixture.org.slug }
  const adminHeaders = { authorization: `Bearer ${app.adminToken}` }
  let worstP99 = 0
  let everyPlanIndexed = true
  const pagePath = (c: Case): string => `/api/v1/${c.route === 'org' ? 'org' : 'admin'}/audit-events?${new URLSearchParams({ limit: '50', ...c.params })}`
  // Warm-up, not reported: each case for a second. Without it the first case measured a cold server
  // (its JIT, its pool opening connections, their catalog caches): "no filter" was 56 ms p99 first,
  // and the same page would have been well under 20 ms as any later case.
  for (const c of cases) await autocannon({ url: app.base + pagePath(c), headers: c.route === 'org' ? orgHeaders : adminHeaders, connections, duration: 1 })
  for (const c of cases) {
    const plan = await explain(c.query)
    everyPlanIndexed &&= plan.indexed
    const path = pagePath(c)
    const check = await fetch(app.base + path, { headers: c.route === 'org' ? orgHeaders : adminHeaders })
    if (check.status !== 200) throw new Error(`${c.label}: ${path} answered ${check.status}: ${await check.text()}`)
    const events = ((await check.json()) as { data: { events: unknown[] } }).data.events.length
    const load = await autocannon({ url: app.base + path, headers: c.route === 'org' ? orgHeaders : adminHeaders, connections, duration: seconds })
    if (load.non2xx + load.errors + load.timeouts > 0) throw new Error(`${c.label}: ${load.non2xx} non-2xx, ${load.errors} errors`)
    worstP99 = Math.max(worstP99, load.latency.p99)
    say(`| ${c.label} (${events} events) | ${c.route} | ${plan.scans} | ${plan.rowsRead} | ${plan.ms.toFixed(2)} | ${Math.round(load.requests.average).toLocaleString('en')} | ${load.latency.p50} | ${load.latency.p99} |`)
  }
  say('')
  say(`Pages: every plan reads from an index (no sequential scan): ${everyPlanIndexed ? 'yes' : '**no**'}; worst p99 ${worstP99} ms, target ≤ ${PAGE_TARGET_MS} ms: ${worstP99 <= PAGE_TARGET_MS ? 'met' : '**missed**'}.`)
  say('')

  // The write route: PATCH /org/api-keys/:keyId with a new name each time (an unchanged key records
  // nothing), over 50 keys in turn: concurrent admins change different keys, and one key's row lock
  // would otherwise make the route a queue.
  const keyIds: string[] = []
  for (let i = 0; i < 50; i++) {
    const created = await fetch(app.base + '/api/v1/org/api-keys', { method: 'POST', headers: { ...orgHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ name: `bench-write-${i}` }) })
    keyIds.push(((await created.json()) as { data: { apiKey: { id: string } } }).data.apiKey.id)
  }
  const writes = { with: [] as number[], without: [] as number[] }
  const p99s = { with: [] as number[], without: [] as number[] }
  let n = 0
  const patchLoad = async (): Promise<autocannon.Result> => await autocannon({
    url: `${app.base}/api/v1/org/api-keys/${keyIds[0]}`,
    connections,
    duration: seconds,
    requests: [{
      method: 'PATCH',
      headers: { ...orgHeaders, 'content-type': 'application/json' },
      setupRequest: (request: any) => {
        n++
        return { ...request, path: `/api/v1/org/api-keys/${keyIds[n % keyIds.length]}`, body: JSON.stringify({ name: `bench ${n}` }) }
      }
    }]
  })
  await app.server.call('skipEventRecording', false)
  await patchLoad() // warm-up
  const eventsBefore = await countEvents(org)
  for (let round = 1; round <= rounds; round++) {
    for (const mode of ['with', 'without'] as const) {
      await app.server.call('skipEventRecording', mode === 'without')
      const load = await patchLoad()
      if (load.non2xx + load.errors + load.timeouts > 0) throw new Error(`PATCH ${mode} events: ${load.non2xx} non-2xx, ${load.errors} errors`)
      writes[mode].push(load.requests.average)
      p99s[mode].push(load.latency.p99)
      console.log(`  round ${round}/${rounds} PATCH /org/api-keys/:keyId ${mode} events: ${Math.round(load.requests.average)} req/s, p99 ${load.latency.p99} ms`)
    }
  }
  await app.server.call('skipEventRecording', false)
  const recorded = await countEvents(org) - eventsBefore
  const withRps = median(writes.with)
  const withoutRps = median(writes.without)
  const cost = 1 - withRps / withoutRps
  say('| Write route | with its event req/s | without req/s | p99 with / without ms | cost |')
  say('|---|---:|---:|---:|---:|')
  say(`| PATCH /org/api-keys/:keyId (new name, 50 keys in turn) | ${Math.round(withRps).toLocaleString('en')} | ${Math.round(withoutRps).toLocaleString('en')} | ${median(p99s.with)} / ${median(p99s.without)} | ${(cost * 100).toFixed(1)} % |`)
  say('')
  say(`Write cost: medians of ${rounds} interleaved rounds of ${seconds} s, ${connections} connections; ${recorded.toLocaleString('en')} events recorded by the "with" rounds; target ≤ ${WRITE_COST_TARGET * 100} %: ${cost <= WRITE_COST_TARGET ? 'met' : '**missed**'}.`)
  say('')
  appendFileSync(fileURLToPath(new URL('RESULTS.md', import.meta.url)), '\n' + lines.join('\n') + '\n')
  console.log('bench:audit: appended to bench/RESULTS.md')
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await db.destroy()
  await app.server.stop()
  await stores.drop()
}

async function countEvents (orgId: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('select count(*) as n from audit_events where org_id = $1', [orgId])
  return Number(rows[0].n)
}

interface PlanNode { 'Node Type': string, 'Index Name'?: string, 'Actual Rows'?: number, 'Actual Loops'?: number, 'Rows Removed by Filter'?: number, Plans?: PlanNode[] }

/** The page's own SQL, explained: which indexes it scans, how many rows those scans read (kept or filtered out), and PostgreSQL's time. */
async function explain (query: EventQuery): Promise<{ scans: string, rowsRead: number, ms: number, indexed: boolean }> {
  const compiled = eventPageQuery(db, query).compile()
  const { rows } = await pool.query(`explain (analyze, format json) ${compiled.sql}`, compiled.parameters as unknown[])
  const root = rows[0]['QUERY PLAN'][0] as { Plan: PlanNode, 'Execution Time': number }
  const scans: string[] = []
  let rowsRead = 0
  let indexed = true
  const walk = (node: PlanNode): void => {
    if (node['Node Type'].includes('Scan')) {
      if (node['Node Type'] === 'Seq Scan') indexed = false
      scans.push(node['Index Name'] ?? node['Node Type'])
      rowsRead += ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1)
    }
    node.Plans?.forEach(walk)
  }
  walk(root.Plan)
  return { scans: scans.join(' + '), rowsRead, ms: root['Execution Time'], indexed }
}
