import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Kysely, Migrator, PostgresDialect, sql, type KyselyPlugin, type LogEvent, type RootOperationNode } from 'kysely'
import pg from 'pg'
import type { PGlite } from '@electric-sql/pglite'
import { PGliteDialect } from 'kysely-pglite-dialect'
import type { Database } from './database.ts'
import { migrationProvider } from './migrations/index.ts'
import { makePrivateDir } from '../src/private-dir.ts'
import { preparingPool } from './prepared.ts'

export interface DatabaseHandle {
  db: Kysely<Database>
  /** the embedded instance, when kind is pglite */
  pglite: PGlite | null
  kind: 'postgres' | 'pglite'
  /**
   * Every query Kysely sends, counted: the benchmark and the tests read it. `queries` are those of
   * requests; `backgroundQueries` those sent through `backgroundDb` (work no request waits for).
   */
  stats: { queries: number, backgroundQueries: number }
  /** connections of the PostgreSQL pool right now; null for the embedded database, which has no pool */
  poolStats: () => PoolStats | null
  ping: () => Promise<void>
  /**
   * Calls onNotify for every NOTIFY on the channel (delivered when the notifying transaction
   * commits), until the returned function is called. Best effort: on PostgreSQL a lost listening
   * connection is re-opened and onNotify called once, since notifications sent meanwhile are lost;
   * listeners must also poll.
   */
  listen: (channel: string, onNotify: () => void) => Promise<() => Promise<void>>
  close: () => Promise<void>
}

export interface PoolStats { total: number, idle: number, waiting: number }

export interface DatabaseOptions {
  databaseUrl: string | null
  dataDir: string
  /** a PGlite data directory dump to start from instead of initialising an empty one (tests) */
  pgliteDataDir?: Blob
  /** called with errors of idle pool connections, which must never crash the process */
  onPoolError?: (error: Error) => void
}

// PostgreSQL's default 128 MB of shared buffers is for a server with many connections; the
// embedded database has one, a small working set, and its files already in memory (memory://)
// or in the OS page cache. 16 MB takes ~120 MB off the resident size (bench/RESULTS.md, Memory).
const embeddedStartParams = (pglite: typeof PGlite): string[] => [...pglite.defaultStartParams, '-c', 'shared_buffers=16MB']

// PGlite's module is loaded by the first embedded database only: with DATABASE_URL it is never
// needed (~1 MB of heap, ~2 MB resident). Through require, so that createDatabase stays
// synchronous; nothing else in the process loads PGlite, so there is one copy of it.
const require = createRequire(import.meta.url)
const loadPGlite = (): typeof PGlite => (require('@electric-sql/pglite') as typeof import('@electric-sql/pglite')).PGlite

/**
 * createDatabase for the server: an embedded database that does not exist yet is made first
 * (initdb) in a short-lived child process. Made in this process, initdb's WebAssembly memory
 * stays with it for good (~950 MB peak, ~590 MB idle); made elsewhere, a first start costs
 * what a restart does.
 */
export async function openDatabase (options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl !== null || options.pgliteDataDir !== undefined) return createDatabase(options)
  return createDatabase({ ...options, pgliteDataDir: await initdbInChildProcess(options.dataDir) })
}

const runFile = promisify(execFile)

// Run with `node --input-type=module -e`, so it needs no file of its own in src/ or dist/.
const INITDB_SCRIPT = `
const [pgliteUrl, dataDir, dumpFile] = process.argv.slice(1)
const { PGlite } = await import(pgliteUrl)
const { writeFile } = await import('node:fs/promises')
const pglite = await PGlite.create(dataDir)
if (dumpFile !== undefined) await writeFile(dumpFile, Buffer.from(await (await pglite.dumpDataDir('none')).arrayBuffer()))
await pglite.close()
`

/** Makes the embedded database if it is missing: in its directory, or for memory:// as a dump to load. */
async function initdbInChildProcess (dataDir: string): Promise<Blob | undefined> {
  const inMemory = dataDir === '' || dataDir.startsWith('memory://')
  if (!inMemory && existsSync(join(dataDir.replace(/^file:\/\//, ''), 'PG_VERSION'))) return undefined
  const scratch = inMemory ? await mkdtemp(join(tmpdir(), 'tenantkey-initdb-')) : null
  const dumpFile = scratch === null ? [] : [join(scratch, 'pgdata.tar')]
  try {
    await runFile(process.execPath, ['--input-type=module', '-e', INITDB_SCRIPT, import.meta.resolve('@electric-sql/pglite'), dataDir, ...dumpFile])
    return scratch === null ? undefined : new Blob([await readFile(dumpFile[0])])
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message
    throw new Error(`could not create the embedded database in ${dataDir}: ${detail}`)
  } finally {
    if (scratch !== null) await rm(scratch, { recursive: true, force: true })
  }
}

// Queries sent through a backgroundDb, known by their operation node (the object Kysely compiles
// and hands to the log). Not an AsyncLocalStorage: on Node 20 that turns on promise hooks for the
// whole process, which cost every request ~15 % of its CPU (bench/RESULTS.md).
const backgroundNodes = new WeakSet<RootOperationNode>()
const markBackground: KyselyPlugin = {
  transformQuery ({ node }) {
    backgroundNodes.add(node)
    return node
  },
  transformResult: async ({ result }) => result
}

/**
 * The database as work no request waits for (outbox workers, periodic jobs, buffered flushes) uses
 * it: its queries, and those of its transactions, count as background queries, so a request's
 * count, which the tests and the benchmark read, is its own whenever a worker happens to poll.
 */
export function backgroundDb<T> (db: Kysely<T>): Kysely<T> {
  return db.withPlugin(markBackground)
}

export function createDatabase (options: DatabaseOptions): DatabaseHandle {
  const stats = { queries: 0, backgroundQueries: 0 }
  const log = (event: LogEvent): void => {
    if (event.level !== 'query') return
    if (backgroundNodes.has(event.query.query)) stats.backgroundQueries++
    else stats.queries++
  }
  let db: Kysely<Database>
  let kind: DatabaseHandle['kind']
  let pglite: PGlite | null = null
  let poolStats: DatabaseHandle['poolStats'] = () => null
  let listen: DatabaseHandle['listen']
  let closeListener = async (): Promise<void> => {}
  if (options.databaseUrl !== null) {
    kind = 'postgres'
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: 10,
      // A down database must surface as a quick 503, not a request that hangs.
      connectionTimeoutMillis: 3000,
      query_timeout: 10_000,
      idleTimeoutMillis: 30_000
    })
    pool.on('error', error => options.onPoolError?.(error))
    // pg-pool listens for errors only on idle clients: a socket that dies under a checked-out
    // client (a query in flight when the database goes away) would emit an unhandled 'error' and
    // crash the process. The query itself still fails, and the pool drops the broken client.
    pool.on('connect', client => { client.on('error', error => options.onPoolError?.(error)) })
    poolStats = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount })
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: preparingPool(pool) }), log })
    const listener = new NotificationListener(options.databaseUrl, error => options.onPoolError?.(error))
    listen = (channel, onNotify) => listener.listen(channel, onNotify)
    closeListener = () => listener.close()
  } else {
    kind = 'pglite'
    // Its tables and WAL hold emails and password hashes: files for this user only (see makePrivateDir).
    if (options.pgliteDataDir === undefined && !options.dataDir.startsWith('memory://')) makePrivateDir(options.dataDir)
    const PGliteClass = loadPGlite()
    const startParams = embeddedStartParams(PGliteClass)
    pglite = options.pgliteDataDir === undefined
      ? new PGliteClass(options.dataDir, { startParams })
      : new PGliteClass({ loadDataDir: options.pgliteDataDir, startParams })
    db = new Kysely<Database>({ dialect: new PGliteDialect(pglite), log })
    const embedded = pglite
    listen = async (channel, onNotify) => {
      const unlisten = await embedded.listen(channel, () => onNotify())
      return async () => { if (!embedded.closed) await unlisten() }
    }
  }
  return {
    db,
    kind,
    pglite,
    stats,
    poolStats,
    ping: async () => { await sql`select 1`.execute(db) },
    listen,
    close: async () => {
      await closeListener()
      await db.destroy()
    }
  }
}

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/

/**
 * One dedicated connection per database handle for LISTEN (a pooled connection cannot keep
 * listening), shared by every channel. It is opened on the first listen, re-opened after a loss
 * with a growing delay (at most 10 s), and each subscriber is called once after a re-open.
 */
class NotificationListener {
  readonly #subscribers = new Map<string, Set<() => void>>()
  #client: pg.Client | null = null
  #opening: Promise<void> | null = null
  #retryTimer: NodeJS.Timeout | null = null
  #retryDelayMs = 250
  #closed = false

  constructor (readonly url: string, readonly onError: (error: Error) => void) {}

  async listen (channel: string, onNotify: () => void): Promise<() => Promise<void>> {
    if (!CHANNEL.test(channel)) throw new Error(`not a plain channel name: ${channel}`)
    let subscribers = this.#subscribers.get(channel)
    if (subscribers === undefined) {
      subscribers = new Set()
      this.#subscribers.set(channel, subscribers)
      if (this.#client !== null) await this.#client.query(`listen ${channel}`).catch(error => this.onError(error))
    }
    subscribers.add(onNotify)
    // A first connection that fails is retried in the background: the caller polls meanwhile.
    if (this.#client === null) await this.#open().catch(() => {})
    return async () => {
      const set = this.#subscribers.get(channel)
      set?.delete(onNotify)
      if (set !== undefined && set.size === 0) {
        this.#subscribers.delete(channel)
        await this.#client?.query(`unlisten ${channel}`).catch(() => {})
      }
    }
  }

  #open (): Promise<void> {
    this.#opening ??= (async () => {
      const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 3000 })
      const lost = (error?: Error): void => {
        if (error !== undefined) this.onError(error)
        if (this.#client !== client) return
        this.#client = null
        client.end().catch(() => {})
        this.#scheduleReopen()
      }
      client.on('error', lost)
      client.on('end', () => lost())
      client.on('notification', message => {
        for (const notify of this.#subscribers.get(message.channel) ?? []) notify()
      })
      try {
        await client.connect()
        for (const channel of this.#subscribers.keys()) await client.query(`listen ${channel}`)
      } catch (error) {
        client.end().catch(() => {})
        this.#scheduleReopen()
        throw error
      }
      if (this.#closed) {
        await client.end()
        return
      }
      this.#client = client
      this.#retryDelayMs = 250
    })().finally(() => { this.#opening = null })
    return this.#opening
  }

  #scheduleReopen (): void {
    if (this.#closed || this.#retryTimer !== null) return
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null
      this.#open().then(() => {
        // Whatever was notified while the connection was down is lost: let every subscriber look.
        for (const subscribers of this.#subscribers.values()) for (const notify of subscribers) notify()
      }, () => {})
    }, this.#retryDelayMs)
    this.#retryTimer.unref()
    this.#retryDelayMs = Math.min(this.#retryDelayMs * 2, 10_000)
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer)
    await this.#opening?.catch(() => {})
    const client = this.#client
    this.#client = null
    await client?.end().catch(() => {})
  }
}

export async function migrateToLatest (db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider })
  const { error, results } = await migrator.migrateToLatest()
  if (error !== undefined) throw error
  return (results ?? []).filter(r => r.status === 'Success').map(r => r.migrationName)
}

export async function migrateDown (db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider })
  const { error, results } = await migrator.migrateDown()
  if (error !== undefined) throw error
  return (results ?? []).filter(r => r.status === 'Success').map(r => r.migrationName)
}
