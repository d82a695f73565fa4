import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

// The .cpuprofile format V8 writes for `node --cpu-prof` (Chrome DevTools' Profiler.Profile).
export interface CpuProfile {
  nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface SelfTime {
  name: string
  location: string
  /** the npm package, `node` for Node's own modules, `v8` for the engine's pseudo-frames, else the app's file */
  owner: string
  micros: number
}

export interface ProfileSummary {
  /** sampled time in the window that was not idle, in microseconds */
  busyMicros: number
  idleMicros: number
  functions: SelfTime[]
  owners: Array<{ owner: string, micros: number }>
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/**
 * Self time per function (summed over every node of the call tree with the same function,
 * file and line) for the samples taken between `from` and `to` (microseconds, process.hrtime's clock).
 */
export function summarizeProfile (profile: CpuProfile, from = -Infinity, to = Infinity): ProfileSummary {
  const frames = new Map(profile.nodes.map(node => [node.id, node.callFrame]))
  const byFunction = new Map<string, SelfTime>()
  let idleMicros = 0
  let busyMicros = 0
  let timestamp = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    timestamp += profile.timeDeltas[i]
    // A sample stands for the time until the next one.
    const duration = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1] : 0
    if (timestamp < from || timestamp > to) continue
    const frame = frames.get(profile.samples[i])
    if (frame === undefined) continue
    if (frame.functionName === '(idle)') { idleMicros += duration; continue }
    busyMicros += duration
    const key = `${frame.functionName}\0${frame.url}\0${frame.lineNumber}`
    let entry = byFunction.get(key)
    if (entry === undefined) {
      entry = { name: frame.functionName === '' ? '(anonymous)' : frame.functionName, location: location(frame.url, frame.lineNumber), owner: owner(frame.url, frame.functionName), micros: 0 }
      byFunction.set(key, entry)
    }
    entry.micros += duration
  }
  const functions = [...byFunction.values()].sort((a, b) => b.micros - a.micros)
  const owners = new Map<string, number>()
  for (const entry of functions) owners.set(entry.owner, (owners.get(entry.owner) ?? 0) + entry.micros)
  return {
    busyMicros,
    idleMicros,
    functions,
    owners: [...owners].map(([name, micros]) => ({ owner: name, micros })).sort((a, b) => b.micros - a.micros)
  }
}

function location (url: string, line: number): string {
  if (url === '') return ''
  const path = url.startsWith('file://') ? relative(ROOT, fileURLToPath(url)) : url
  return `${path.replace(/^.*node_modules\//, '')}:${line + 1}`
}

function owner (url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? 'v8' : 'native'
  if (url.startsWith('node:')) return 'node'
  const modules = url.lastIndexOf('node_modules/')
  if (modules >= 0) {
    const parts = url.slice(modules + 'node_modules/'.length).split('/')
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]
  }
  return url.startsWith('file://') ? relative(ROOT, fileURLToPath(url)) : url
}
