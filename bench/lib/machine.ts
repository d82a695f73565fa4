import { execFileSync, spawnSync } from 'node:child_process'
import { availableParallelism, cpus, loadavg, release } from 'node:os'

export interface Pinning {
  /** CPU for the server processes, or null when running unpinned */
  serverCpu: number | null
  clientCpu: number | null
  note: string
}

/**
 * Server processes on one core, the load generator (this process) on another, so neither
 * steals the other's time. Without taskset or a second core the run goes on unpinned.
 */
export function pinThisProcess (): Pinning {
  const serverCpu = Number(process.env.BENCH_SERVER_CPU ?? 0)
  const clientCpu = Number(process.env.BENCH_CLIENT_CPU ?? 1)
  if (process.env.BENCH_PIN === '0') return { serverCpu: null, clientCpu: null, note: 'unpinned (BENCH_PIN=0)' }
  if (availableParallelism() < 2) return { serverCpu: null, clientCpu: null, note: 'unpinned (one CPU)' }
  const pinned = spawnSync('taskset', ['-a', '-cp', String(clientCpu), String(process.pid)], { stdio: 'ignore' })
  if (pinned.error !== undefined || pinned.status !== 0) {
    console.warn('bench: taskset is not available; running unpinned')
    return { serverCpu: null, clientCpu: null, note: 'unpinned (taskset unavailable)' }
  }
  return { serverCpu, clientCpu, note: `servers on CPU ${serverCpu}, autocannon on CPU ${clientCpu} (taskset)` }
}

export function pinnedCommand (cpu: number | null, command: string[]): string[] {
  return cpu === null ? command : ['taskset', '-c', String(cpu), ...command]
}

export interface MachineInfo { nproc: number, cpuModel: string, node: string, os: string, load: string }

export function machineInfo (): MachineInfo {
  return {
    // Every CPU of the machine, not the ones this process is pinned to.
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    os: `${process.platform} ${release()}`,
    load: loadavg().map(l => l.toFixed(2)).join(' ')
  }
}

export function gitCommit (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== ''
    return dirty ? `${head} (with uncommitted changes)` : head
  } catch {
    return 'unknown'
  }
}
