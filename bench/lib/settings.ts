import { BENCH_RATE_LIMIT_MAX, logLevel } from './setup.ts'

export interface BenchSettings {
  quick: boolean
  connections: number
  seconds: number
  rounds: number
  warmupSeconds: number
  logLevel: string
  rateLimitMax: string
  /** measure the compiled server's memory (BENCH_MEMORY=0 skips it, and the build it needs) */
  memory: boolean
  /** how long a started server sits idle before its memory is read */
  idleSeconds: number
}

/** BENCH_QUICK=1 is the smoke run: 3 s × 1 round. Each figure can be set on its own. */
export function benchSettings (env: Record<string, string | undefined>): BenchSettings {
  const quick = env.BENCH_QUICK === '1'
  return {
    quick,
    connections: positive(env, 'BENCH_CONNECTIONS', 50),
    seconds: positive(env, 'BENCH_SECONDS', quick ? 3 : 10),
    rounds: positive(env, 'BENCH_ROUNDS', quick ? 1 : 5),
    warmupSeconds: positive(env, 'BENCH_WARMUP_SECONDS', quick ? 1 : 3),
    logLevel: logLevel(),
    rateLimitMax: BENCH_RATE_LIMIT_MAX,
    memory: env.BENCH_MEMORY !== '0',
    idleSeconds: positive(env, 'BENCH_IDLE_SECONDS', 5)
  }
}

function positive (env: Record<string, string | undefined>, name: string, fallback: number): number {
  const value = env[name]
  if (value === undefined || value === '') return fallback
  if (!/^[1-9][0-9]*$/.test(value)) throw new Error(`${name}=${value}: expected a positive whole number`)
  return Number(value)
}

const SHOWN_VARIABLES = ['DATABASE_URL', 'REDIS_URL', 'BENCH_QUICK', 'BENCH_ROUNDS', 'BENCH_SECONDS', 'BENCH_CONNECTIONS',
  'BENCH_WARMUP_SECONDS', 'BENCH_TARGETS', 'BENCH_LOG_LEVEL', 'BENCH_PIN', 'BENCH_DURATION', 'BENCH_TOP', 'BENCH_MEMORY', 'BENCH_IDLE_SECONDS']

/** The command line that reproduces this run, with any password in a URL masked. */
export function commandLine (script: string, env: Record<string, string | undefined>): string {
  const assignments = SHOWN_VARIABLES
    .filter(name => env[name] !== undefined && env[name] !== '')
    .map(name => `${name}=${maskPassword(env[name] as string)}`)
  return [...assignments, `npm run ${script}`].join(' ')
}

function maskPassword (value: string): string {
  return value.replace(/^([a-z]+:\/\/[^:/@]*):[^@/]*@/, '$1:***@')
}
