import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

// The .cpuprofile format V8 writes for `node --cpu-prof` (Chrome DevTools' Profiler.Profile).
export interface CpuProfile {
  nodes: Array<{ id: number, callFrame: CallFrame, children?: number[] }>
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }

/** Maps a position in the code V8 ran (tsx's output) to the 0-based line in the TypeScript source. */
export type OriginalLine = (url: string, line: number, column: number) => number | undefined

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
  /** the app's own functions (not node_modules, not Node) by inclusive time: where in the request path the time goes */
  appInclusive: SelfTime[]
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/**
 * Self time per function (summed over every node of the call tree with the same function,
 * file and line) for the samples taken between `from` and `to` (microseconds, process.hrtime's clock).
 */
export function summarizeProfile (profile: CpuProfile, window: { from?: number, to?: number, originalLine?: OriginalLine } = {}): ProfileSummary {
  const { from = -Infinity, to = Infinity, originalLine = () => undefined } = window
  const describe = (frame: CallFrame): SelfTime => ({
    name: frame.functionName === '' ? '(anonymous)' : frame.functionName,
    location: location(frame.url, originalLine(frame.url, frame.lineNumber, frame.columnNumber) ?? frame.lineNumber),
    owner: owner(frame.url, frame.functionName),
    micros: 0
  })
  const frames = new Map(profile.nodes.map(node => [node.id, node.callFrame]))
  const parents = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  const byFunction = new Map<string, SelfTime>()
  const inclusive = new Map<string, SelfTime>()
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
      entry = describe(frame)
      byFunction.set(key, entry)
    }
    entry.micros += duration
    // Each app function on this sample's stack, once even when it recurses.
    const seen = new Set<string>()
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parents.get(id)) {
      const caller = frames.get(id)
      if (caller === undefined || !isAppFile(caller.url)) continue
      const callerKey = `${caller.functionName}\0${caller.url}\0${caller.lineNumber}`
      if (seen.has(callerKey)) continue
      seen.add(callerKey)
      let total = inclusive.get(callerKey)
      if (total === undefined) {
        total = describe(caller)
        inclusive.set(callerKey, total)
      }
      total.micros += duration
    }
  }
  const functions = [...byFunction.values()].sort((a, b) => b.micros - a.micros)
  const owners = new Map<string, number>()
  for (const entry of functions) owners.set(entry.owner, (owners.get(entry.owner) ?? 0) + entry.micros)
  return {
    busyMicros,
    idleMicros,
    functions,
    owners: [...owners].map(([name, micros]) => ({ owner: name, micros })).sort((a, b) => b.micros - a.micros),
    appInclusive: [...inclusive.values()].sort((a, b) => b.micros - a.micros)
  }
}

function isAppFile (url: string): boolean {
  return url.startsWith('file://') && !url.includes('/node_modules/') && !url.includes('/bench/')
}

/** The app's source files that appear in the profile. */
export function appFiles (profile: CpuProfile): string[] {
  return [...new Set(profile.nodes.map(node => node.callFrame.url).filter(isAppFile))]
}

/** The app's file as in the source tree: dist-bench/plugins/x.js (what the bench runs) is plugins/x.ts. */
function sourcePath (url: string): string {
  return relative(ROOT, fileURLToPath(url)).replace(/^dist-bench\/(.*)\.js$/, '$1.ts')
}

function location (url: string, line: number): string {
  if (url === '') return ''
  const path = url.startsWith('file://') ? sourcePath(url) : url
  return `${path.replace(/^.*node_modules\//, '')}:${line + 1}`
}

function owner (url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? 'v8' : 'native'
  if (url.startsWith('node:')) return 'node'
  if (url.startsWith('wasm://')) return 'wasm'
  const modules = url.lastIndexOf('node_modules/')
  if (modules >= 0) {
    const parts = url.slice(modules + 'node_modules/'.length).split('/')
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]
  }
  return url.startsWith('file://') ? sourcePath(url) : url
}
