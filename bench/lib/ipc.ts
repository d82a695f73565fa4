import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { BENCH_BUILD, buildBenchServers, startFlags } from './build.ts'
import { pinnedCommand } from './machine.ts'

// The orchestrator talks to each server process over Node's IPC channel, never over HTTP:
// the app's query counter and memory stay off every route.

interface CallMessage { id: number, type: string, payload?: unknown }
type Handlers = Record<string, (payload: any) => unknown>

/** In a server process: announce readiness, then answer the orchestrator's calls. */
export function serveIpc (handlers: Handlers, ready: { port: number }): void {
  if (process.send === undefined) throw new Error('this file is started by bench/run.ts or bench/profile.ts')
  process.on('message', (message: CallMessage) => {
    const handler = handlers[message.type]
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown call ${message.type}`)
        return handler(message.payload)
      })
      .then(
        result => process.send?.({ id: message.id, result }),
        (error: Error) => process.send?.({ id: message.id, error: error.stack ?? String(error) })
      )
  })
  // The orchestrator's end is the server's end: no orphan keeps a core busy.
  process.on('disconnect', () => process.exit(0))
  process.send({ type: 'ready', ...ready })
}

/** Counters a server process reports; RSS figures in bytes. */
export interface ServerStats { queries: number, rss: number, maxRss: number }

export function processMemory (): Pick<ServerStats, 'rss' | 'maxRss'> {
  return { rss: process.memoryUsage.rss(), maxRss: process.resourceUsage().maxRSS * 1024 }
}

export interface ServerProcess {
  port: number
  /** the server's process id (taskset execs the server in its own process) */
  pid: number
  call: <T = unknown>(type: string, payload?: unknown) => Promise<T>
  /** resolves with the exit code once the process has ended */
  exited: Promise<number | null>
  stop: () => Promise<void>
}

export interface StartOptions {
  /** a file in bench/, run compiled (dist-bench/, see build.ts) under `npm start`'s V8 flags */
  file: string
  env: Record<string, string>
  cpu: number | null
  nodeArgs?: string[]
}

let compiled = false

export async function startServer (options: StartOptions): Promise<ServerProcess> {
  // Once per run, from this tree, before the first server starts: a compile error stops the run early.
  if (!compiled) {
    buildBenchServers()
    compiled = true
  }
  const script = join(BENCH_BUILD, 'bench', options.file.replace(/\.ts$/, '.js'))
  const [command, ...args] = pinnedCommand(options.cpu, [process.execPath, ...startFlags(), ...(options.nodeArgs ?? []), script])
  const child: ChildProcess = spawn(command, args, {
    env: { ...process.env, ...options.env },
    // Server logs go nowhere, the same for the bare server and the app; errors still show.
    stdio: ['ignore', process.env.BENCH_VERBOSE === '1' ? 'inherit' : 'ignore', 'inherit', 'ipc']
  })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  const pending = new Map<number, { resolve: (value: any) => void, reject: (error: Error) => void }>()
  let nextId = 0

  const port = await new Promise<number>((resolve, reject) => {
    const failed = (code: number | null): void => reject(new Error(`${options.file} exited with ${code} before it was ready`))
    exited.then(failed, reject)
    child.on('message', (message: any) => {
      if (message.type === 'ready') { resolve(message.port); return }
      const call = pending.get(message.id)
      if (call === undefined) return
      pending.delete(message.id)
      if (message.error !== undefined) call.reject(new Error(`${options.file}: ${message.error}`))
      else call.resolve(message.result)
    })
  })
  exited.then(() => {
    for (const call of pending.values()) call.reject(new Error(`${options.file} exited`))
    pending.clear()
  }, () => {})

  return {
    port,
    pid: child.pid as number,
    exited,
    call: (type, payload) => new Promise((resolve, reject) => {
      const id = ++nextId
      pending.set(id, { resolve, reject })
      child.send({ id, type, payload } satisfies CallMessage)
    }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      await exited
    }
  }
}
