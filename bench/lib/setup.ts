import { randomBytes } from 'node:crypto'
import { bootstrap, type BenchFixture } from './bootstrap.ts'
import { fetchClient, type HttpClient } from './http-client.ts'
import { startServer, type ServerProcess } from './ipc.ts'
import type { BenchStores } from './stores.ts'

/** Raised for the bench only: the default 300 per 15 minutes would turn the run into 429s. */
export const BENCH_RATE_LIMIT_MAX = '999999999'

export function logLevel (): string {
  return process.env.BENCH_LOG_LEVEL ?? 'warn'
}

export interface BenchApp {
  server: ServerProcess
  base: string
  http: HttpClient
  adminToken: string
  fixture: BenchFixture
}

/** The real app in its own process, configured as in production, with its bench data made. */
/** The app's environment: production, on 127.0.0.1, fresh secrets, the stores of this run. */
export function appEnvironment (storesEnv: Record<string, string>): { environment: Record<string, string>, adminToken: string } {
  const adminToken = randomBytes(24).toString('base64url')
  return {
    adminToken,
    environment: {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: logLevel(),
      JWT_SECRET: randomBytes(32).toString('base64url'),
      API_KEY_PEPPER: randomBytes(32).toString('base64url'),
      ADMIN_TOKEN: adminToken,
      RATE_LIMIT_MAX: BENCH_RATE_LIMIT_MAX,
      ...storesEnv
    }
  }
}

export async function startApp (stores: BenchStores, cpu: number | null, nodeArgs: string[] = []): Promise<BenchApp> {
  const { environment, adminToken } = appEnvironment(stores.env)
  const server = await startServer({ file: 'app-server.ts', cpu, nodeArgs, env: environment })
  try {
    const base = `http://127.0.0.1:${server.port}`
    const http = fetchClient(base)
    const fixture = await bootstrap(http, adminToken)
    return { server, base, http, adminToken, fixture }
  } catch (error) {
    await server.stop()
    throw error
  }
}
