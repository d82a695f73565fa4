import type { Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../../db/database.ts'
import { recordLastUses, setFirstUse } from '../../db/queries/api-keys.ts'

export interface LastUsedRecorder {
  /**
   * storedLastUsedAt: the key's last_used_at as read with the key (null: never used). A promise
   * only for a first use, which is written before the request is answered; null otherwise.
   */
  recordUse: (keyId: string, storedLastUsedAt: Date | null) => Promise<void> | null
  /** writes every pending use now (shutdown) */
  flush: () => Promise<void>
}

export interface LastUsedRecorderOptions {
  db: Kysely<Database>
  log: FastifyBaseLogger
  /** at most one write per key per this many ms */
  spacingMs?: number
  now?: () => number
}

interface Pending { usedAt: number, dueAt: number }

/**
 * lastUsedAt without a write per request: the first use of a key is written at once; later
 * uses wait in memory until 60 s after the key's previous write, and every use due by then
 * is written in one batched UPDATE.
 */
export function createLastUsedRecorder ({ db, log, spacingMs = 60_000, now = Date.now }: LastUsedRecorderOptions): LastUsedRecorder {
  // when this process last wrote each key: the 60 s spacing is between writes
  const lastWriteAt = new Map<string, number>()
  const pending = new Map<string, Pending>()
  let timer: NodeJS.Timeout | null = null
  let timerDueAt = Infinity

  function arm (dueAt: number): void {
    if (dueAt >= timerDueAt) return
    if (timer !== null) clearTimeout(timer)
    timerDueAt = dueAt
    timer = setTimeout(() => { flushDue(now()).catch(() => {}) }, Math.max(0, dueAt - now()))
    timer.unref()
  }

  async function write (uses: Array<[string, Pending]>): Promise<void> {
    if (uses.length === 0) return
    const writeAt = now()
    for (const [keyId] of uses) {
      pending.delete(keyId)
      lastWriteAt.set(keyId, writeAt)
    }
    try {
      await recordLastUses(db, uses.map(([keyId, use]) => ({ keyId, usedAt: new Date(use.usedAt) })))
    } catch (error) {
      // Losing a last-use time is harmless; it is set again by the key's next use.
      log.warn({ err: error, keys: uses.length }, 'could not record API key last use')
    }
  }

  async function flushDue (at: number): Promise<void> {
    timer = null
    timerDueAt = Infinity
    const due = [...pending].filter(([, use]) => use.dueAt <= at)
    await write(due)
    let next = Infinity
    for (const use of pending.values()) next = Math.min(next, use.dueAt)
    if (next !== Infinity) arm(next)
  }

  return {
    recordUse (keyId, storedLastUsedAt) {
      const usedAt = now()
      if (storedLastUsedAt === null && !lastWriteAt.has(keyId)) {
        lastWriteAt.set(keyId, usedAt)
        return setFirstUse(db, keyId, new Date(usedAt)).catch(error => {
          lastWriteAt.delete(keyId)
          log.warn({ err: error }, 'could not record API key first use')
        })
      }
      // Another instance's write shows in the stored time: space from whichever is later.
      const previous = Math.max(lastWriteAt.get(keyId) ?? 0, storedLastUsedAt?.getTime() ?? 0)
      const dueAt = Math.max(usedAt, previous + spacingMs)
      pending.set(keyId, { usedAt, dueAt: pending.get(keyId)?.dueAt ?? dueAt })
      arm(dueAt)
      return null
    },
    async flush () {
      if (timer !== null) clearTimeout(timer)
      timer = null
      timerDueAt = Infinity
      await write([...pending])
    }
  }
}
