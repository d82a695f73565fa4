import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bootstrap } from './bootstrap.ts'
import { fetchClient } from './http-client.ts'
import { runLoad } from './load.ts'
import { pinnedCommand } from './machine.ts'
import { appEnvironment } from './setup.ts'
import { ROOT, SERVER, startCommand } from './build.ts'
import type { BenchStores } from './stores.ts'
import { allTargets, selectTargets } from './targets.ts'

// The server's memory as `npm start` runs it (package.json's command, V8 flags included, built first), read from
// /proc/<pid>/status: idle after a first start on an empty database, idle after a restart on
// the same data, and the peak under the bench's load. The throughput rounds' app-server.js
// also answers the orchestrator over IPC: its RSS is not what a deployment sees.

/** Bytes: VmRSS (resident now) and VmHWM (the most it has been resident). */
export interface ProcessMemory { rss: number, peak: number }

export interface MemoryReport {
  /** what ran: `npm start`'s command line */
  command: string
  idleSeconds: number
  firstStart: ProcessMemory
  restart: ProcessMemory
  underLoad: ProcessMemory
  /** what the load was: route labels, seconds each */
  load: { labels: string[], seconds: number, connections: number }
}

export function readProcessMemory (pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}

/** CPU time (user + system) the process has used, in ms, from /proc/<pid>/stat: on a shared machine, CPU per response varies less than req/s. */
export function readProcessCpuMs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime, fields 14 and 15 of stat(5), in clock ticks (USER_HZ, 100 on Linux)
  return (Number(fields[11]) + Number(fields[12])) * 10
}

export interface MemorySettings { idleSeconds: number, seconds: number, connections: number, targets: string | undefined }

/**
 * Starts the compiled server twice on one database of its own (an empty directory for the
 * embedded database, or the fresh PostgreSQL database of `stores`), with the load in between.
 */
export async function measureMemory (stores: BenchStores, cpu: number | null, settings: MemorySettings): Promise<MemoryReport> {
  const dataDir = stores.env.DATABASE_URL === undefined ? mkdtempSync(join(tmpdir(), 'tenantkey-bench-')) : null
  const env = appEnvironment({ ...stores.env, ...(dataDir !== null && { DATA_DIR: dataDir }) })
  try {
    const first = await startCompiledServer(env.environment, cpu)
    let firstStart: ProcessMemory
    let underLoad: ProcessMemory
    let labels: string[]
    try {
      firstStart = await idle(first.pid, settings.idleSeconds)
      const base = `http://127.0.0.1:${first.port}`
      const http = fetchClient(base)
      const fixture = await bootstrap(http, env.adminToken)
      const { selected } = await selectTargets(http, allTargets(fixture, env.adminToken), settings.targets)
      for (const target of selected) {
        const cpuBefore = readProcessCpuMs(first.pid)
        const result = await runLoad({ ...target.request, url: base + target.request.path }, { connections: settings.connections, seconds: settings.seconds })
        const cpuMs = readProcessCpuMs(first.pid) - cpuBefore
        console.log(`  memory load ${target.label}: ${Math.round(result.rps)} req/s, p99 ${result.p99} ms, ` +
          `server CPU ${(cpuMs * 1000 / Math.max(1, result.responses)).toFixed(0)} µs/response` +
          `${result.failures > 0 ? `, ${result.failures} FAILED` : ''}; RSS now ${(readProcessMemory(first.pid).rss / MB).toFixed(0)} MB`)
      }
      underLoad = readProcessMemory(first.pid)
      labels = selected.map(target => target.label)
    } finally {
      await first.stop()
    }
    const second = await startCompiledServer(env.environment, cpu)
    let restart: ProcessMemory
    try {
      restart = await idle(second.pid, settings.idleSeconds)
    } finally {
      await second.stop()
    }
    return { command: ['node', ...startCommand().slice(1)].join(' '), idleSeconds: settings.idleSeconds, firstStart, restart, underLoad, load: { labels, seconds: settings.seconds, connections: settings.connections } }
  } finally {
    if (dataDir !== null) rmSync(dataDir, { recursive: true, force: true })
  }
}

async function idle (pid: number, seconds: number): Promise<ProcessMemory> {
  await new Promise(resolve => setTimeout(resolve, seconds * 1000))
  return readProcessMemory(pid)
}

interface CompiledServer { pid: number, port: number, stop: () => Promise<void> }

async function startCompiledServer (env: Record<string, string>, cpu: number | null): Promise<CompiledServer> {
  const [command, ...args] = pinnedCommand(cpu, startCommand())
  // taskset execs the command: the pid is the server's.
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', chunk => { output += String(chunk) })
  child.stderr.on('data', chunk => { output += String(chunk) })
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
  const port = await new Promise<number>((resolve, reject) => {
    const exited = (code: number | null): void => reject(new Error(`${SERVER} exited with ${code} before it listened:\n${output}`))
    child.once('exit', exited)
    const poll = setInterval(() => {
      const match = /listening on http:\/\/[^:]+:(\d+)/.exec(output)
      if (match === null) return
      clearInterval(poll)
      child.off('exit', exited)
      resolve(Number(match[1]))
    }, 50)
    child.once('exit', () => clearInterval(poll))
  })
  return { pid: child.pid as number, port, stop }
}

// In MB (10^6 bytes), the unit of issue 13's targets.
const MB = 1_000_000

export function renderMemory (memory: MemoryReport, postgres: boolean): string[] {
  const mb = (bytes: number): string => `${(bytes / MB).toFixed(0)} MB`
  const lines = [
    `Memory of \`${memory.command}\` (VmRSS and VmHWM from /proc; idle = ${memory.idleSeconds} s after it listens; load: ` +
      `${memory.load.labels.join(', ')}, ${memory.load.seconds} s each, ${memory.load.connections} connections):`,
    '',
    '| | RSS | peak RSS (VmHWM) |',
    '|---|---:|---:|',
    `| idle after a first start (empty database) | ${mb(memory.firstStart.rss)} | ${mb(memory.firstStart.peak)} |`,
    `| idle after a restart (same data) | ${mb(memory.restart.rss)} | ${mb(memory.restart.peak)} |`,
    `| after the load (first start) | ${mb(memory.underLoad.rss)} | ${mb(memory.underLoad.peak)} |`
  ]
  const checks: string[] = []
  const check = (label: string, bytes: number, limit: number): void => {
    checks.push(`${label} ≤ ${limit} MB (${mb(bytes)}) ${bytes <= limit * MB ? 'met' : '**missed**'}`)
  }
  const idleLimit = postgres ? 150 : 450
  check('idle after a first start', memory.firstStart.rss, idleLimit)
  check('idle after a restart', memory.restart.rss, idleLimit)
  if (postgres) check('peak under load', memory.underLoad.peak, 250)
  lines.push('', `Issue 13 memory targets: ${checks.join('; ')}.`)
  return lines
}
