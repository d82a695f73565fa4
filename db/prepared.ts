import type { CompiledQuery, PostgresPool, PostgresPoolClient } from 'kysely'
import type pg from 'pg'

/**
 * The SQL of a statement that `preparing` marks starts with this comment. Harmless elsewhere (the
 * embedded database runs it as it is).
 */
const PREPARED_MARK = '/* prepared */ '

/**
 * The query, to be run on PostgreSQL as a named prepared statement: each connection parses and
 * plans it once, then (once PostgreSQL settles on a generic plan) only binds and executes it. For
 * the busiest statements, whose text depends on the code path alone (every value a parameter):
 * writing an event in the statement of its change cost more to plan than to execute.
 */
export function preparing<R> (query: CompiledQuery<R>): CompiledQuery<R> {
  return { ...query, sql: PREPARED_MARK + query.sql }
}

/** Bounds the statements a connection keeps prepared; past it, marked statements run unnamed. */
const MAX_PREPARED_PER_CONNECTION = 200
let lastName = 0
const preparedByClient = new WeakMap<pg.PoolClient, Map<string, string>>()

/**
 * The pool as Kysely's PostgresDialect takes it, running the statements `preparing` marked as
 * named prepared statements of their connection (the name stands for the text on that connection
 * alone) and every other statement as before.
 */
export function preparingPool (pool: pg.Pool): PostgresPool {
  return {
    connect: async (): Promise<PostgresPoolClient> => {
      const client = await pool.connect()
      let prepared = preparedByClient.get(client)
      if (prepared === undefined) {
        prepared = new Map()
        preparedByClient.set(client, prepared)
      }
      const statements = prepared
      // Not async: Kysely's streaming passes a cursor, which must come back as it is.
      const query = ((text: unknown, values?: readonly unknown[]): unknown => {
        if (typeof text !== 'string' || !text.startsWith(PREPARED_MARK)) return client.query(text as any, values as unknown[])
        let name = statements.get(text)
        if (name === undefined && statements.size < MAX_PREPARED_PER_CONNECTION) {
          name = `tk_${++lastName}`
          statements.set(text, name)
        }
        if (name === undefined) return client.query(text, values as unknown[])
        return client.query({ name, text, values: values as unknown[] }).catch((error: unknown) => {
          // A migration that changes what `returning *` answers makes PostgreSQL refuse the
          // statement prepared before it ("cached plan must not change result type"), every time:
          // the next run on this connection prepares it again under a new name.
          if ((error as { code?: string }).code === '0A000') statements.delete(text)
          throw error
        })
      }) as unknown as PostgresPoolClient['query']
      return { query, release: (destroy?: boolean) => { client.release(destroy) } }
    },
    end: async () => { await pool.end() }
  }
}
