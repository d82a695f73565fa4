import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { Config } from '../../src/config.ts'
import type { Org } from '../../db/queries/orgs.ts'
import type { SessionPrincipal } from '../../db/queries/sessions.ts'
import type { GuardedKey } from './prepared-key.ts'

/*
 * THE FRESHNESS RULE of the /public caches (every instance keeps its own copies of keys, orgs,
 * sessions and members; none is ever told to drop one).
 *
 * Each org has an epoch: a counter in Redis (`<prefix>epoch:<orgId>`), or without Redis one
 * counter in this process for every org.
 *   1. A writer moves the org's epoch on after its transaction commits and before it answers
 *      (orgChanged). So once a client has the answer to a write, the epoch is past the write.
 *   2. A cache entry is stamped with an epoch read BEFORE the database read that filled it, so
 *      an entry stamped e holds every write whose epoch move came before e was read.
 *   3. A request reads its org's epoch once, after it arrived (with Redis, in the same round trip
 *      that counts it against its budget), and trusts an entry only when the entry's stamp is
 *      that epoch. Anything else it reads again from the database, stamped with that epoch.
 * Together: a write answered before a request arrived moved the epoch to e' ≤ the epoch e the
 * request reads; an entry stamped e was read from the database after e was read, so after the
 * write committed. No request on any instance answers from data older than a write that was
 * answered before it arrived: revocations, suspensions, logouts, scopes and allowlists apply from
 * the next request everywhere.
 *
 * Corner cases, each on the safe side: an entry loaded before the epoch was known (a first
 * request with Redis) is stamped UNVERIFIED and trusted by nobody; an epoch that cannot be read
 * (Redis down) is null and trusts nothing; a write that cannot move the epoch (Redis down for the
 * writer) is announced when Redis is back, and entries live at most ENTRY_TTL_MS meanwhile.
 * Tested against real Redis and two instances in test/plugins/public-cache.test.ts and
 * test/reliability/freshness-races.test.ts.
 */

/** The Redis key of an org's epoch. */
export function orgEpochKey (redisPrefix: string, orgId: string): string {
  return `${redisPrefix}epoch:${orgId}`
}

/** Stamp of an entry loaded before its org's epoch was known: trusted by no request. */
export const UNVERIFIED = 'unverified'

// The bound on an invalidation missed: a write made while its instance could not reach Redis,
// seen by instances that could. Reloading each entry once a minute costs one query per key,
// org, session or member in use per instance per minute.
export const ENTRY_TTL_MS = 60_000

/** A bounded cache whose entries carry the epoch they were stamped with (rule 2). */
export class EpochCache<V extends {}> {
  readonly #entries: LRUCache<string, { value: V, epoch: string }>

  constructor (readonly name: string, max: number, readonly onLookup: (hit: boolean) => void) {
    this.#entries = new LRUCache({ max, ttl: ENTRY_TTL_MS })
  }

  /** The value if it was stamped with this epoch (rule 3); null (unknown) trusts nothing. Counted. */
  get (key: string, epoch: string | null): V | undefined {
    const entry = this.#entries.get(key)
    const hit = entry !== undefined && epoch !== null && entry.epoch === epoch
    this.onLookup(hit)
    return hit ? entry.value : undefined
  }

  /** The entry whatever its stamp, for a guard that checks the stamp once it knows the epoch; not counted. */
  peek (key: string): { value: V, epoch: string } | undefined {
    return this.#entries.get(key)
  }

  set (key: string, value: V, epoch: string | null): void {
    this.#entries.set(key, { value, epoch: epoch ?? UNVERIFIED })
  }

  delete (key: string): void {
    this.#entries.delete(key)
  }

  clear (): void {
    this.#entries.clear()
  }
}

export const NONE = 'none'

export interface PublicCache {
  /** by apiKeyCacheId of the presented key, with its settings prepared for the guard */
  keys: EpochCache<GuardedKey>
  /** by slug */
  orgs: EpochCache<Org>
  /** `${orgId}:${sessionId}:${userId}` → the live session's user and membership, or NONE */
  principals: EpochCache<SessionPrincipal | typeof NONE>
  /** `${orgId}:${userId}` → the member, or NONE */
  members: EpochCache<SessionPrincipal | typeof NONE>
  /** apiKeyCacheIds that name no key: a flood of made-up keys reaches the database once each */
  unknownKeyHashes: LRUCache<string, true>
  /**
   * apiKeyCacheIds of keys this instance has seen valid, kept long after their entries in `keys`
   * expire: a client address blocked for guessing keys may still use a key it is known to hold
   * (behind a proxy with TRUST_PROXY unset every client shares one address); only unknown keys wait.
   */
  knownKeys: LRUCache<string, true>
  /** the org's epoch now (one Redis GET; without Redis, synchronous), or null when it cannot be known */
  readEpoch: (orgId: string) => Promise<string | null> | string | null
  /** without Redis, the epoch (synchronous); with Redis, UNVERIFIED: it is read with the request's count */
  localEpoch: () => string
  /** rule 1: every write that changes what /public answers about an org calls this after commit, before answering */
  orgChanged: (orgId: string) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    publicCache: PublicCache
  }
}

async function publicCache (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const redis = app.redis
  const cache = <V extends {}>(name: string, max: number): EpochCache<V> =>
    new EpochCache<V>(name, max, hit => { if (hit) app.metrics.cacheHit(name); else app.metrics.cacheMiss(name) })
  // Without Redis one counter serves every org: writes are rare, and it can be read before a
  // load without knowing which org the load will find.
  let localEpoch = 0
  const epochKey = (orgId: string): string => orgEpochKey(config.redisPrefix, orgId)

  // Orgs whose epochs could not be moved on: moved as soon as Redis answers again.
  const unannounced = new Set<string>()
  const caches: PublicCache = {
    keys: cache('api_keys', 50_000),
    orgs: cache('orgs', 10_000),
    principals: cache('sessions', 100_000),
    members: cache('members', 100_000),
    unknownKeyHashes: new LRUCache({ max: 50_000, ttl: 60_000 }),
    knownKeys: new LRUCache({ max: 100_000 }),
    readEpoch (orgId) {
      if (redis === null) return `local:${localEpoch}`
      if (redis.status !== 'ready') return null
      return redis.get(epochKey(orgId)).then(value => `redis:${value ?? '0'}`, () => null)
    },
    localEpoch: () => redis === null ? `local:${localEpoch}` : UNVERIFIED,
    async orgChanged (orgId) {
      localEpoch++
      if (redis === null) return
      try {
        await redis.incr(epochKey(orgId))
      } catch (error) {
        unannounced.add(orgId)
        app.log.error({ err: error, orgId }, 'redis unreachable: instances that can reach it may answer from their caches about this org for up to 60 s; the change is announced when Redis is back')
      }
    }
  }
  // While Redis was away, writes could not move epochs on: start again from the database.
  redis?.on('ready', () => {
    for (const c of [caches.keys, caches.orgs, caches.principals, caches.members]) c.clear()
    const missed = [...unannounced]
    unannounced.clear()
    for (const orgId of missed) redis.incr(epochKey(orgId)).catch(() => unannounced.add(orgId))
  })
  app.decorate('publicCache', caches)
}

export default fp(publicCache, { name: 'public-cache', fastify: '5.x', dependencies: ['redis', 'metrics'] })
