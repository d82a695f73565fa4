import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import type { MachineInfo } from './machine.ts'
import { renderMemory, type MemoryReport } from './memory.ts'

export interface RouteSummary {
  key: string
  label: string
  rps: number
  rpsMin: number
  rpsMax: number
  p50: number
  p99: number
  bareLabel: string
  bareRps: number
  bareP99: number
  /** the server process's CPU time (user + system) per response, µs: steadier than req/s on a shared machine */
  cpuPerResponse: number
  bareCpuPerResponse: number
  queriesPerRequest: number
  failures: number
}

export interface RunReport {
  mode: string
  /** true with PostgreSQL + Redis: the targets differ */
  shared: boolean
  command: string
  date: Date
  commit: string
  machine: MachineInfo
  pinning: string
  settings: { connections: number, seconds: number, rounds: number, warmupSeconds: number, logLevel: string, rateLimitMax: string }
  loadAtEnd: string
  skipped: string[]
  routes: RouteSummary[]
  peakRss: { app: number, bare: number }
  /** the compiled server's memory; null when skipped (BENCH_MEMORY=0) */
  memory: MemoryReport | null
}

const HEADER = `# Benchmark results

Written by \`npm run bench\` (bench/run.ts): one section per run, newest last. Each route
of the real app is measured right after the bare-Fastify route of the same method, headers
and body, round after round; figures are medians of the rounds. See bench/README.md.
`

export function appendReport (file: string, report: RunReport): void {
  const previous = existsSync(file) ? readFileSync(file, 'utf8').trimEnd() + '\n' : HEADER
  writeFileSync(file, `${previous}\n${renderReport(report)}`)
}

export function renderReport (report: RunReport): string {
  const { settings, machine } = report
  const lines = [
    `## ${report.mode}: ${settings.rounds} × ${settings.seconds} s, ${report.date.toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    `- Command: \`${report.command}\` at commit ${report.commit}`,
    `- Machine: ${machine.nproc} × ${machine.cpuModel}, node ${machine.node}, ${machine.os}; load average ${machine.load} at start, ${report.loadAtEnd} at end` +
      (Number(machine.load.split(' ')[0]) > machine.nproc / 2 ? ' — **the machine was busy with other work: absolute figures are low, ratios noisy**' : ''),
    `- ${report.pinning}; ${settings.connections} connections; ${settings.warmupSeconds} s warm-up per route; LOG_LEVEL=${settings.logLevel}; RATE_LIMIT_MAX=${settings.rateLimitMax}`,
    '- Bootstrap through the HTTP API: admin API, POST /auth/login, POST /org/api-keys' +
      (report.skipped.length > 0 ? `; not on this commit: ${report.skipped.join(', ')}` : ''),
    '',
    '| Route | req/s | req/s range | p50 ms | p99 ms | bare route | bare req/s | bare p99 ms | ratio | CPU µs/response (bare) | DB queries/req | failed |',
    '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of report.routes) {
    lines.push(`| ${r.label} | ${int(r.rps)} | ${int(r.rpsMin)}–${int(r.rpsMax)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.bareLabel} | ${int(r.bareRps)} | ${r.bareP99.toFixed(0)} | ${ratio(r)}× | ${r.cpuPerResponse.toFixed(0)} (${r.bareCpuPerResponse.toFixed(0)}) | ${r.queriesPerRequest.toFixed(2)} | ${r.failures} |`)
  }
  lines.push('', `Peak RSS: app ${mib(report.peakRss.app)} (bench/app-server.ts compiled, with its IPC), bare server ${mib(report.peakRss.bare)}.`)
  if (report.memory !== null) lines.push('', ...renderMemory(report.memory, report.shared))
  const checks = targetChecks(report)
  if (checks.length > 0) lines.push('', `Issue 13 targets: ${checks.join('; ')}.`)
  return lines.join('\n') + '\n'
}

function targetChecks (report: RunReport): string[] {
  const route = (key: string) => report.routes.find(r => r.key === key)
  const checks: string[] = []
  const check = (label: string, pass: boolean) => checks.push(`${label} ${pass ? 'met' : '**missed**'}`)
  const org = route('org')
  const verify = route('verify')
  const restricted = route('org-restricted')
  // Issue 14: a scoped, allowlisted key costs the guard at most 5 % of a plain key's throughput.
  if (org !== undefined && restricted !== undefined) {
    check(`scoped + allowlisted key ≥ 0.95× plain key (${(restricted.rps / org.rps).toFixed(2)}×)`, restricted.rps / org.rps >= 0.95)
  }
  // Issue 13: the ratios to bare Fastify, embedded and on PostgreSQL + Redis.
  const [orgTarget, verifyTarget] = report.shared ? [0.40, 0.45] : [0.60, 0.70]
  if (org !== undefined) check(`/public/org ≥ ${orgTarget.toFixed(2)}× bare (${ratio(org)}×)`, org.rps / org.bareRps >= orgTarget)
  if (verify !== undefined) check(`/public/verify ≥ ${verifyTarget.toFixed(2)}× bare (${ratio(verify)}×)`, verify.rps / verify.bareRps >= verifyTarget)
  const publicRoutes = report.routes.filter(r => ['org', 'org-restricted', 'user', 'verify'].includes(r.key))
  if (publicRoutes.length > 0) {
    const worstP99 = Math.max(...publicRoutes.map(r => r.p99))
    check(`p99 ≤ 10 ms (worst ${worstP99.toFixed(0)} ms)`, worstP99 <= 10)
    const worstQueries = Math.max(...publicRoutes.map(r => r.queriesPerRequest))
    check(`0.00 DB queries/req (worst ${worstQueries.toFixed(2)})`, worstQueries < 0.005)
  }
  return checks
}

function ratio (r: RouteSummary): string {
  return (r.rps / r.bareRps).toFixed(2)
}

function int (value: number): string {
  return Math.round(value).toLocaleString('en-US')
}

function mib (bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`
}
