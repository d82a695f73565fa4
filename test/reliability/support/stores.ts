import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { deleteRedisKeysByPrefix } from '../../support/redis-keys.ts'
import { DATABASE_URL, REDIS_URL, runId } from '../../helper.ts'
import { createDatabase, migrateToLatest } from '../../../db/connect.ts'

/**
 * A skip reason when this run has not been given the real stores a test needs, else false:
 * `t.test(name, { skip: needs('postgres', 'redis') }, …)`. `.ci/run` sets both URLs.
 */
export function needs (...stores: Array<'postgres' | 'redis'>): string | false {
  const missing = stores.filter(store => (store === 'postgres' ? DATABASE_URL : REDIS_URL) === null)
  if (missing.length === 0) return false
  const names = missing.map(store => store === 'postgres' ? 'DATABASE_URL' : 'REDIS_URL').join(' and ')
  return `needs a real ${missing.join(' and ')}: set ${names} (as .ci/run does)`
}

export interface TestContext { teardown: (fn: () => unknown) => void }

let databases = 0

/**
 * A fresh, migrated PostgreSQL database of this test's own on the server DATABASE_URL names,
 * dropped (with force, so a crashed instance cannot keep it) when the test ends.
 */
export async function freshDatabase (t: TestContext): Promise<{ url: string, name: string }> {
  if (DATABASE_URL === null) throw new Error('freshDatabase needs DATABASE_URL')
  const name = `tk_rel_${runId}_${++databases}`
  const admin = new pg.Client({ connectionString: DATABASE_URL })
  await admin.connect()
  try {
    await admin.query(`create database "${name}"`)
  } finally {
    await admin.end()
  }
  t.teardown(async () => {
    const dropper = new pg.Client({ connectionString: DATABASE_URL as string })
    await dropper.connect()
    try {
      await dropper.query(`drop database if exists "${name}" with (force)`)
    } finally {
      await dropper.end()
    }
  })
  const parsed = new URL(DATABASE_URL)
  parsed.pathname = `/${name}`
  const url = parsed.toString()
  const handle = createDatabase({ databaseUrl: url, dataDir: 'memory://' })
  try {
    await migrateToLatest(handle.db)
  } finally {
    await handle.close()
  }
  return { url, name }
}

/** A Redis key prefix no other test or run uses; its keys are deleted when the test ends. */
export function freshRedisPrefix (t: TestContext): string {
  const prefix = `tk-rel-${runId}-${randomBytes(4).toString('hex')}:`
  t.teardown(() => deleteRedisKeys(prefix))
  return prefix
}

export async function deleteRedisKeys (prefix: string): Promise<void> {
  if (REDIS_URL === null) return
  await deleteRedisKeysByPrefix(REDIS_URL, prefix)
}

/** A direct client on a database, for checking rows behind the app's back. */
export async function withClient<T> (url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** host and port of a postgres:// or redis:// URL, and the same URL pointed elsewhere */
export function endpointOf (url: string): { host: string, port: number } {
  const parsed = new URL(url)
  const port = parsed.port === '' ? (parsed.protocol.startsWith('redis') ? 6379 : 5432) : Number(parsed.port)
  return { host: parsed.hostname, port }
}

export function withEndpoint (url: string, host: string, port: number): string {
  const parsed = new URL(url)
  parsed.hostname = host
  parsed.port = String(port)
  return parsed.toString()
}
