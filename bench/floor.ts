// npm run bench:floor: the contract's floor (lib/contract-floor.ts) against bare Fastify, measured as
// npm run bench measures the app: what GET /public/org and POST /public/verify would cost if they did
// only what the contract requires. Prints a section for bench/RESULTS.md; appends nothing.
import { median, microsPerResponse, runLoad, settle, type LoadRequest } from './lib/load.ts'
import { gitCommit, machineInfo, pinThisProcess } from './lib/machine.ts'
import { startServer, type ServerProcess } from './lib/ipc.ts'
import { readProcessCpuMs } from './lib/memory.ts'
import { benchSettings, commandLine } from './lib/settings.ts'
import { FLOOR_KEY, FLOOR_SLUG, FLOOR_TOKEN } from './lib/contract-floor.ts'

const settings = benchSettings(process.env)
const machine = machineInfo()
const pinning = pinThisProcess()
let server: ServerProcess | undefined

try {
  server = await startServer({ file: 'floor-server.ts', cpu: pinning.serverCpu, env: { LOG_LEVEL: settings.logLevel } })
  const base = `http://127.0.0.1:${server.port}`
  const headers = { 'x-api-key': FLOOR_KEY, 'x-org-slug': FLOOR_SLUG }
  const body = JSON.stringify({ token: FLOOR_TOKEN })
  const pairs: Array<{ label: string, floor: LoadRequest, bare: LoadRequest }> = [
    { label: 'GET /public/org', floor: { url: `${base}/api/v1/public/org`, method: 'GET', headers }, bare: { url: `${base}/bare`, method: 'GET', headers } },
    { label: 'POST /public/verify', floor: { url: `${base}/api/v1/public/verify`, method: 'POST', headers, body }, bare: { url: `${base}/bare`, method: 'POST', headers, body } }
  ]
  const load = { connections: settings.connections, seconds: settings.seconds }
  console.log(`bench:floor: ${pinning.note}; ${settings.rounds} × ${settings.seconds} s per route`)
  for (const pair of pairs) {
    for (const request of [pair.bare, pair.floor]) {
      const probe = await fetch(request.url, { method: request.method, headers: { ...request.headers, ...(request.body !== undefined && { 'content-type': 'application/json' }) }, body: request.body })
      if (probe.status !== 200) throw new Error(`${request.method} ${request.url} answered ${probe.status}: ${await probe.text()}`)
      await runLoad(request, { ...load, seconds: settings.warmupSeconds })
    }
  }
  const rows: string[] = []
  for (const pair of pairs) {
    const ratios: number[] = []
    const cpu = { floor: 0, bare: 0, floorSent: 0, bareSent: 0 }
    for (let round = 1; round <= settings.rounds; round++) {
      const measure = async (request: LoadRequest): Promise<{ rps: number, cpuMs: number, sent: number }> => {
        const before = readProcessCpuMs((server as ServerProcess).pid)
        const result = await runLoad(request, load)
        await settle()
        if (result.failures > 0) throw new Error(`${request.method} ${request.url}: ${result.failures} failed`)
        return { rps: result.rps, cpuMs: readProcessCpuMs((server as ServerProcess).pid) - before, sent: result.sent }
      }
      const bare = await measure(pair.bare)
      const floor = await measure(pair.floor)
      ratios.push(floor.rps / bare.rps)
      cpu.floor += floor.cpuMs
      cpu.bare += bare.cpuMs
      cpu.floorSent += floor.sent
      cpu.bareSent += bare.sent
      console.log(`  round ${round}/${settings.rounds} ${pair.label}: floor ${Math.round(floor.rps)} req/s, bare ${Math.round(bare.rps)}: ${(floor.rps / bare.rps).toFixed(2)}×`)
    }
    const floorMicros = microsPerResponse(cpu.floor, cpu.floorSent)
    const bareMicros = microsPerResponse(cpu.bare, cpu.bareSent)
    rows.push(`| ${pair.label} | ${median(ratios).toFixed(2)}× | ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}× | ${floorMicros.toFixed(0)} (${bareMicros.toFixed(0)}) | ${(bareMicros / floorMicros).toFixed(2)}× |`)
  }
  console.log(`\n## The contract's floor: ${settings.rounds} × ${settings.seconds} s, ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}\n`)
  console.log(`- Command: \`${commandLine('bench:floor', process.env)}\` at commit ${gitCommit()}`)
  console.log(`- Machine: ${machine.nproc} × ${machine.cpuModel}, node ${machine.node}, ${machine.os}; load average ${machine.load} at start`)
  console.log(`- ${pinning.note}; ${settings.connections} connections; bare and floor routes in one process (bench/floor-server.ts)\n`)
  // req/s saturate at 1× when autocannon, not the server, is the bottleneck: the CPU ratio does not.
  console.log('| Route | floor / bare req/s (median) | range | CPU µs/response, floor (bare) | bare / floor CPU |')
  console.log('|---|---:|---:|---:|---:|')
  for (const row of rows) console.log(row)
} finally {
  await server?.stop()
}
