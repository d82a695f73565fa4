import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { ADMIN_TOKEN } from '../../helper.ts'
import { captureLogLine, noteSecret } from '../../log-secrets.ts'
import type { TestContext } from './stores.ts'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/** The secrets every instance of one test shares, as a real deployment's instances do. */
export const SHARED_SECRETS = {
  JWT_SECRET: 'reliability-jwt-secret-0123456789abcdef0123',
  API_KEY_PEPPER: 'reliability-api-key-pepper-0123456789abcdef',
  ADMIN_TOKEN
}

export interface Instance {
  readonly name: string
  readonly url: string
  readonly port: number
  readonly child: ChildProcess
  /** every line the process wrote to stdout and stderr so far (JSON log lines and the banner) */
  readonly lines: string[]
  /** resolves with the exit code (or signal) once the process has ended */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** SIGTERM (graceful) and wait for the exit */
  stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export type InstanceEnv = Record<string, string | undefined>

/**
 * Starts the real entry (src/server.ts) as its own process on 127.0.0.1 with an ephemeral port,
 * configured only through the environment, as an operator would run it. Resolves once it
 * listens; it is stopped (SIGTERM, then SIGKILL) when the test ends.
 */
export async function startInstance (t: TestContext, name: string, env: InstanceEnv): Promise<Instance> {
  for (const secret of [...Object.values(SHARED_SECRETS), env.JWT_SECRET, env.API_KEY_PEPPER, env.ADMIN_TOKEN]) noteSecret(secret)
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: '0',
      // Debug: every line goes through the no-secret-in-logs check (test/log-secrets.ts).
      LOG_LEVEL: 'debug',
      COOKIE_SECURE: 'false',
      ...SHARED_SECRETS,
      ...env
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: string[] = []
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  const port = await new Promise<number>((resolve, reject) => {
    const collect = (stream: NodeJS.ReadableStream): void => {
      let pending = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => {
        pending += chunk
        const parts = pending.split('\n')
        pending = parts.pop() ?? ''
        for (const line of parts) {
          lines.push(line)
          captureLogLine(line)
          // The banner of src/server.ts, or Fastify's own "Server listening at" log line.
          const match = /listening (?:on|at) http:\/\/127\.0\.0\.1:(\d+)/.exec(line)
          if (match !== null) resolve(Number(match[1]))
        }
      })
    }
    collect(child.stdout as NodeJS.ReadableStream)
    collect(child.stderr as NodeJS.ReadableStream)
    exited.then(({ code, signal }) => reject(new Error(`instance ${name} exited (${code ?? signal}) before listening:\n${lines.join('\n')}`)), reject)
  })

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null, signal: NodeJS.Signals | null }> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      try {
        return await exited
      } finally {
        clearTimeout(killer)
      }
    }
    return await exited
  }
  t.teardown(() => stop())
  return { name, url: `http://127.0.0.1:${port}`, port, child, lines, exited, stop }
}

/** n instances sharing the same environment (and so the same database and Redis) */
export async function startInstances (t: TestContext, n: number, env: InstanceEnv): Promise<Instance[]> {
  const names = Array.from({ length: n }, (_, i) => String.fromCharCode(65 + i))
  // One after the other: each start loads TypeScript, and the machine's cores are shared.
  const instances: Instance[] = []
  for (const name of names) instances.push(await startInstance(t, name, env))
  return instances
}
