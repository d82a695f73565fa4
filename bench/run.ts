// npm run bench: the real app against bare Fastify, interleaved, one section of bench/RESULTS.md per run.
import { fileURLToPath } from 'node:url'
import { median, microsPerResponse, runLoad, settle, type LoadRequest, type LoadResult } from './lib/load.ts'
import { gitCommit, machineInfo, pinThisProcess } from './lib/machine.ts'
import { startServer, type ServerProcess, type ServerStats } from './lib/ipc.ts'
import { appendReport, renderReport, type RouteSummary } from './lib/report.ts'
import { benchSettings, commandLine } from './lib/settings.ts'
import { buildServer } from './lib/build.ts'
import { measureMemory, readProcessCpuMs, type MemoryReport } from './lib/memory.ts'
import { startApp, type BenchApp } from './lib/setup.ts'
import { benchStores } from './lib/stores.ts'
import { allTargets, selectTargets, type Target } from './lib/targets.ts'

const settings = benchSettings(process.env)
const machine = machineInfo()
const pinning = pinThisProcess()
if (settings.memory) buildServer()
const stores = await benchStores(process.env)
// The memory measurement starts from an empty database of its own.
const memoryStores = settings.memory ? await benchStores(process.env) : null
const date = new Date()
let bare: ServerProcess | undefined
let app: BenchApp | undefined

try {
  bare = await startServer({ file: 'bare-server.ts', cpu: pinning.serverCpu, env: { LOG_LEVEL: settings.logLevel } })
  app = await startApp(stores, pinning.serverCpu)
  const { selected, skipped } = await selectTargets(app.http, allTargets(app.fixture, app.adminToken), process.env.BENCH_TARGETS)
  console.log(`bench: ${stores.label}; ${pinning.note}; measuring ${selected.map(t => t.label).join(', ')}` +
    (skipped.length > 0 ? `; not on this commit: ${skipped.join(', ')}` : ''))

  const appRequest = (target: Target): LoadRequest => ({ ...target.request, url: (app as BenchApp).base + target.request.path })
  const bareRequest = (target: Target): LoadRequest => ({ ...target.request, url: `http://127.0.0.1:${(bare as ServerProcess).port}/bare` })
  const load = { connections: settings.connections, seconds: settings.seconds }

  for (const target of selected) {
    await runLoad(bareRequest(target), { ...load, seconds: settings.warmupSeconds })
    await runLoad(appRequest(target), { ...load, seconds: settings.warmupSeconds })
  }

  interface Sample { app: LoadResult[], bare: LoadResult[], queries: number, appCpuMs: number, bareCpuMs: number }
  const samples = new Map<string, Sample>(selected.map(target => [target.key, { app: [], bare: [], queries: 0, appCpuMs: 0, bareCpuMs: 0 }]))
  for (let round = 1; round <= settings.rounds; round++) {
    for (const target of selected) {
      const sample = samples.get(target.key) as Sample
      const bareCpuAtStart = readProcessCpuMs(bare.pid)
      const bareResult = await runLoad(bareRequest(target), load)
      await settle()
      const bareCpuMs = readProcessCpuMs(bare.pid) - bareCpuAtStart
      const before = await app.server.call<ServerStats>('stats')
      const appCpuAtStart = readProcessCpuMs(app.server.pid)
      const appResult = await runLoad(appRequest(target), load)
      await settle()
      const appCpuMs = readProcessCpuMs(app.server.pid) - appCpuAtStart
      const after = await app.server.call<ServerStats>('stats')
      sample.bareCpuMs += bareCpuMs
      sample.appCpuMs += appCpuMs
      sample.bare.push(bareResult)
      sample.app.push(appResult)
      sample.queries += after.queries - before.queries
      console.log(`  round ${round}/${settings.rounds} ${target.label}: ${Math.round(appResult.rps)} req/s ` +
        `(bare ${target.request.method} ${Math.round(bareResult.rps)}), p99 ${appResult.p99} ms, ` +
        `CPU ${microsPerResponse(appCpuMs, appResult.sent).toFixed(0)} µs/response ` +
        `(bare ${microsPerResponse(bareCpuMs, bareResult.sent).toFixed(0)}), ` +
        `${((after.queries - before.queries) / Math.max(1, appResult.sent)).toFixed(2)} queries/req` +
        (appResult.failures + bareResult.failures > 0 ? `, ${appResult.failures + bareResult.failures} FAILED` : ''))
    }
  }

  const routes: RouteSummary[] = selected.map(target => {
    const sample = samples.get(target.key) as Sample
    const rps = sample.app.map(r => r.rps)
    return {
      key: target.key,
      label: target.label,
      rps: median(rps),
      rpsMin: Math.min(...rps),
      rpsMax: Math.max(...rps),
      p50: median(sample.app.map(r => r.p50)),
      p99: median(sample.app.map(r => r.p99)),
      bareLabel: `${target.request.method} bare`,
      bareRps: median(sample.bare.map(r => r.rps)),
      bareP99: median(sample.bare.map(r => r.p99)),
      cpuPerResponse: microsPerResponse(sample.appCpuMs, sample.app.reduce((sum, r) => sum + r.sent, 0)),
      bareCpuPerResponse: microsPerResponse(sample.bareCpuMs, sample.bare.reduce((sum, r) => sum + r.sent, 0)),
      queriesPerRequest: sample.queries / Math.max(1, sample.app.reduce((sum, r) => sum + r.sent, 0)),
      failures: [...sample.app, ...sample.bare].reduce((sum, r) => sum + r.failures, 0)
    }
  })
  const [appStats, bareStats] = await Promise.all([app.server.call<ServerStats>('stats'), bare.call<ServerStats>('stats')])
  await Promise.allSettled([bare.stop(), app.server.stop()])
  let memory: MemoryReport | null = null
  if (memoryStores !== null) {
    console.log('bench: memory of the compiled server (first start, load, restart)')
    memory = await measureMemory(memoryStores, pinning.serverCpu, { ...settings, targets: process.env.BENCH_TARGETS })
  }
  const report = {
    mode: stores.label + (settings.quick ? ' (quick)' : ''),
    shared: stores.env.DATABASE_URL !== undefined,
    command: commandLine('bench', process.env),
    date,
    commit: gitCommit(),
    machine,
    loadAtEnd: machineInfo().load,
    pinning: pinning.note,
    settings,
    skipped,
    routes,
    peakRss: { app: appStats.maxRss, bare: bareStats.maxRss },
    memory
  }
  const file = fileURLToPath(new URL('RESULTS.md', import.meta.url))
  appendReport(file, report)
  console.log('\n' + renderReport(report))
  console.log(`bench: appended to ${file}`)
} finally {
  await Promise.allSettled([bare?.stop(), app?.server.stop()])
  await stores.drop()
  await memoryStores?.drop()
}
