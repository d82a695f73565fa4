// npm run bench:profile: the app under `node --cpu-prof` while autocannon drives one route
// (POST /public/verify by default); prints the functions with the most self time.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { SourceMap } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { appFiles, summarizeProfile, type CpuProfile, type OriginalLine } from './lib/cpuprofile.ts'
import { runLoad } from './lib/load.ts'
import { machineInfo, pinThisProcess } from './lib/machine.ts'
import type { ServerStats } from './lib/ipc.ts'
import { benchSettings, commandLine } from './lib/settings.ts'
import { startApp, type BenchApp } from './lib/setup.ts'
import { benchStores } from './lib/stores.ts'
import { allTargets, selectTargets } from './lib/targets.ts'

const settings = benchSettings(process.env)
const top = Number(process.env.BENCH_TOP ?? 10)
const machine = machineInfo()
const pinning = pinThisProcess()
const stores = await benchStores(process.env)
const directory = fileURLToPath(new URL(`results/profile-${new Date().toISOString().replace(/[:.]/g, '-')}`, import.meta.url))
mkdirSync(directory, { recursive: true })
let app: BenchApp | undefined

try {
  app = await startApp(stores, pinning.serverCpu, ['--cpu-prof', '--cpu-prof-dir', directory])
  const { selected } = await selectTargets(app.http, allTargets(app.fixture, app.adminToken), process.env.BENCH_TARGETS ?? 'verify')
  // Before /public/verify exists, the plumbing targets stand in for it.
  const target = selected[0] ?? (await selectTargets(app.http, allTargets(app.fixture, app.adminToken), 'health')).selected[0]
  const request = { ...target.request, url: app.base + target.request.path }
  const load = { connections: settings.connections, seconds: settings.seconds }
  console.log(`bench:profile: ${target.label} on ${stores.label}; ${pinning.note}; ${settings.warmupSeconds} s warm-up, ${settings.seconds} s profiled`)

  await runLoad(request, { ...load, seconds: settings.warmupSeconds })
  const from = await app.server.call<number>('clock')
  const before = await app.server.call<ServerStats>('stats')
  const result = await runLoad(request, load)
  const to = await app.server.call<number>('clock')
  const after = await app.server.call<ServerStats>('stats')
  await app.server.call('exit')
  await app.server.exited

  const file = readdirSync(directory).find(name => name.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`no .cpuprofile in ${directory}`)
  const profile = JSON.parse(readFileSync(join(directory, file), 'utf8')) as CpuProfile
  const summary = summarizeProfile(profile, { from, to, originalLine: await sourceLines(appFiles(profile)) })
  const busy = summary.busyMicros
  const pct = (micros: number) => `${(100 * micros / busy).toFixed(1).padStart(5)} %`
  const ms = (micros: number) => `${(micros / 1000).toFixed(0).padStart(6)} ms`

  console.log(`\n${commandLine('bench:profile', process.env)}: ${machine.nproc} × ${machine.cpuModel}, node ${machine.node}, load ${machine.load}`)
  console.log(`${target.label}: ${Math.round(result.rps)} req/s under the profiler, p50 ${result.p50} ms, p99 ${result.p99} ms, ` +
    `${((after.queries - before.queries) / Math.max(1, result.sent)).toFixed(2)} DB queries/req, ${result.failures} failed`)
  console.log(`busy ${ms(busy)}, idle ${ms(summary.idleMicros)}; per request ${(busy / Math.max(1, result.sent)).toFixed(1)} µs of main-thread CPU`)
  console.log(`\nTop ${top} functions by self time (share of busy time):`)
  summary.functions.slice(0, top).forEach((entry, index) => {
    console.log(`${String(index + 1).padStart(3)}. ${ms(entry.micros)} ${pct(entry.micros)}  ${entry.name}  ${entry.location}  [${entry.owner}]`)
  })
  console.log('\nSelf time by package or file:')
  for (const entry of summary.owners.slice(0, top)) console.log(`     ${ms(entry.micros)} ${pct(entry.micros)}  ${entry.owner}`)
  console.log('\nThe app\'s own functions by inclusive time (self + what they call synchronously; awaited work such as a query counts under its library):')
  for (const entry of summary.appInclusive.slice(0, top)) console.log(`     ${ms(entry.micros)} ${pct(entry.micros)}  ${entry.name}  ${entry.location}`)
  console.log(`\nprofile: ${join(directory, file)} (open in Chrome DevTools → Performance, or speedscope)`)
} finally {
  await app?.server.stop()
  await stores.drop()
}

/** The TypeScript line of a compiled file's position, from the source map tsc wrote beside it. */
async function sourceLines (files: string[]): Promise<OriginalLine> {
  const maps = new Map<string, SourceMap | undefined>()
  for (const url of files) {
    try {
      maps.set(url, new SourceMap(JSON.parse(readFileSync(fileURLToPath(url) + '.map', 'utf8'))))
    } catch {
      maps.set(url, undefined)
    }
  }
  return (url, line, column) => {
    const entry = maps.get(url)?.findEntry(line, column) as { originalLine?: number } | undefined
    return entry?.originalLine
  }
}
