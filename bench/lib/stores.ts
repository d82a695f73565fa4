import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { deleteRedisKeysByPrefix } from '../../test/support/redis-keys.ts'

export interface BenchStores {
  /** environment for the app process */
  env: Record<string, string>
  label: string
  drop: () => Promise<void>
}

/**
 * The embedded database in a fresh in-memory PGlite, or with DATABASE_URL a fresh PostgreSQL
 * database made for this run and dropped after it; with REDIS_URL a key prefix of the run's own.
 */
export async function benchStores (environment: Record<string, string | undefined>): Promise<BenchStores> {
  const run = `${process.pid}_${randomBytes(3).toString('hex')}`
  const env: Record<string, string> = {}
  const cleanups: Array<() => Promise<void>> = []
  const databaseUrl = environment.DATABASE_URL
  const redisUrl = environment.REDIS_URL

  if (databaseUrl === undefined || databaseUrl === '') {
    env.DATA_DIR = 'memory://'
  } else {
    const name = `tk_bench_${run}`
    await adminQuery(databaseUrl, `create database "${name}"`)
    cleanups.push(() => adminQuery(databaseUrl, `drop database if exists "${name}" with (force)`))
    const url = new URL(databaseUrl)
    url.pathname = `/${name}`
    env.DATABASE_URL = url.toString()
  }
  if (redisUrl !== undefined && redisUrl !== '') {
    const prefix = `tk-bench-${run}:`
    env.REDIS_URL = redisUrl
    env.REDIS_PREFIX = prefix
    cleanups.push(() => deleteRedisKeysByPrefix(redisUrl, prefix))
  }
  const database = env.DATABASE_URL === undefined ? 'embedded PGlite (in memory)' : 'PostgreSQL'
  return {
    env,
    label: env.REDIS_URL === undefined ? database : `${database} + Redis`,
    drop: async () => { for (const cleanup of cleanups.reverse()) await cleanup() }
  }
}

async function adminQuery (url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}
