import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { Config } from '../src/config.ts'
import { EpochCache, UNVERIFIED, orgEpochKey } from '../src/epoch-cache.ts'
import type { Org } from '../db/queries/orgs.ts'
import type { SessionPrincipal } from '../db/queries/sessions.ts'
import type { GuardedKey } from '../src/key-guard.ts'

export const NONE = 'none'

/**
 * What /public reads, cached per instance, and the org epochs that keep every instance's copies
 * honest. A writer moves the org's epoch on after its commit and before its response; a /public
 * request reads the epoch (in Redis, alongside its rate-limit count: one round trip) and trusts
 * only entries stamped with it. An entry is stamped with the epoch read before its database load.
 */
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
  /** the org's current epoch, or null when it cannot be known (Redis down): trust no entry then */
  readEpoch: (orgId: string) => Promise<string | null>
  /** the stamp for an entry about to be loaded when the epoch has not been read in this request */
  stampBeforeLoad: () => string
  /** every write that changes what /public answers about an org calls this after commit, before answering */
  orgChanged: (orgId: string) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    publicCache: PublicCache
  }
}

// The bound on an invalidation missed: a write made while its instance could not reach Redis,
// seen by instances that could. Reloading each entry once a minute costs one query per key,
// org, session or member in use per instance per minute.
export const ENTRY_TTL_MS = 60_000

async function publicCache (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const redis = app.redis
  const onLookup = (name: string) => (hit: boolean) => {
    if (hit) app.metrics.cacheHit(name)
    else app.metrics.cacheMiss(name)
  }
  const cache = <V extends {}>(name: string, max: number) => new EpochCache<V>(name, { max, ttlMs: ENTRY_TTL_MS, onLookup: onLookup(name) })
  // Without Redis one counter serves every org: writes are rare, and it can be read before a
  // load without knowing which org the load will find.
  let localEpoch = 0
  const epochKey = (orgId: string) => orgEpochKey(config.redisPrefix, orgId)

  // Orgs whose epochs could not be moved on: moved as soon as Redis answers again.
  const unannounced = new Set<string>()
  const caches: PublicCache = {
    keys: cache('api_keys', 50_000),
    orgs: cache('orgs', 10_000),
    principals: cache('sessions', 100_000),
    members: cache('members', 100_000),
    unknownKeyHashes: new LRUCache({ max: 50_000, ttl: 60_000 }),
    knownKeys: new LRUCache({ max: 100_000 }),
    async readEpoch (orgId) {
      if (redis === null) return `local:${localEpoch}`
      if (redis.status !== 'ready') return null
      try {
        return `redis:${await redis.get(epochKey(orgId)) ?? '0'}`
      } catch {
        return null
      }
    },
    stampBeforeLoad: () => redis === null ? `local:${localEpoch}` : UNVERIFIED,
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
