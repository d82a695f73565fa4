import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../src/config.ts'
import { apiKeyCacheId, hashApiKey, hasApiKeyShape, hasValidApiKeyChecksum } from '../src/api-key-format.ts'
import { createLastUsedRecorder } from '../src/last-used-recorder.ts'
import { findApiKeyByHash } from '../db/queries/api-keys.ts'
import { findOrgBySlug, type Org } from '../db/queries/orgs.ts'
import { addressAllowed, guardedKey, type GuardedKey } from '../src/key-guard.ts'
import { UNVERIFIED } from '../src/epoch-cache.ts'
import type { ApiKeyScope } from '../src/api-key-settings.ts'
import { InsufficientScope, InvalidApiKey, IpNotAllowed, OrgSuspended, RateLimited } from '../src/errors.ts'
import { slugHeader } from './org-slug.ts'
import type { ApiKeyOutcome } from './metrics.ts'
import type { FailureReservation } from './failure-limiter.ts'

export interface AuthenticatedApiKey {
  id: string
  orgId: string
  /** display prefix (`pk_live_a3`), safe to log */
  prefix: string
  /** the effective budget (§9): the key's own, else its org's, else RATE_LIMIT_MAX per RATE_LIMIT_WINDOW */
  budget: { max: number, windowMs: number }
  /** X-API-Key-Expires-At (Unix seconds), or null for a key without an expiry */
  expiresAtHeader: string | null
}

/** The key requireApiKey authenticated; an error naming the route if it did not run. */
export function guardedApiKey (request: FastifyRequest): AuthenticatedApiKey {
  if (request.apiKey === null) throw new Error(`${request.method} ${request.routeOptions.url ?? request.url} reads request.apiKey without the requireApiKey guard`)
  return request.apiKey
}

declare module 'fastify' {
  interface FastifyRequest {
    /** the key that authenticated this /public request, set by requireApiKey */
    apiKey: AuthenticatedApiKey | null
    /** the org's epoch read for this request (null: unknown, trust no cache), set by requireApiKey */
    orgEpoch: Promise<string | null> | null
  }
  interface FastifyInstance {
    /**
     * onRequest guard for /public: X-Org-Slug and X-API-Key must name a live key of that org.
     * Every key failure is the same 401 `Invalid API key`. A client IP with API_KEY_FAILURE_MAX
     * failures in the last minute is 429 before any database work. Answers from this instance's
     * cache when it can; confirmApiKey then checks the cache was current.
     */
    requireApiKey: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    /**
     * After requireApiKey: when what the guard read from the cache is older than the org's epoch,
     * reads it again from the database (401 when the key no longer passes). True when it did:
     * the key's settings and budget may have changed.
     */
    confirmApiKey: (request: FastifyRequest) => Promise<boolean>
    /**
     * Why the key may not make this request although it is valid, in the order of §9: its org is
     * suspended (403 `org_suspended`), the client address is not on its allowlist (403
     * `ip_not_allowed`), it lacks the route's scope (403 `insufficient_scope`); null when it may.
     * Synchronous: a few reads of what was cached with the key.
     */
    apiKeyRefusal: (request: FastifyRequest) => Error | null
    /**
     * False when what requireApiKey loaded is sure to be read again by confirmApiKey (it was loaded
     * by another request before the org's epoch was known): counting the request's budget before
     * confirmApiKey would only be given back.
     */
    apiKeyMayBeCurrent: (request: FastifyRequest) => boolean
    /** Once the request passed its budget: counts the key's use (metrics, lastUsedAt). */
    recordApiKeyUse: (request: FastifyRequest) => Promise<void>
  }
  interface FastifyContextConfig {
    /** the scope an API key needs for this /public route (§9) */
    scope?: ApiKeyScope
  }
}

const kLoaded = Symbol('apiKeyLoaded')
const kGuess = Symbol('apiKeyGuess')
/**
 * The key and org a request uses. keyStamp/orgStamp: the epoch of a cached entry (or of a load
 * another request started), which confirmApiKey checks; null when this request read it itself.
 */
interface Loaded { key: GuardedKey, org: Org, cacheId: string, keyStamp: string | null, orgStamp: string | null, keyCached: boolean, orgCached: boolean }

// Why a key was refused, for the metrics only: the client always sees the same 401.
type Refusal = Exclude<ApiKeyOutcome, 'ok' | 'rate_limited'>
const kRefusal = Symbol('apiKeyRefusal')
function refuse (reason: Refusal): InstanceType<typeof InvalidApiKey> {
  return Object.assign(new InvalidApiKey(), { [kRefusal]: reason })
}
function refusalOf (error: InstanceType<typeof InvalidApiKey>): Refusal {
  return (error as { [kRefusal]?: Refusal })[kRefusal] ?? 'invalid'
}

function refusalFor ({ key, org }: Pick<Loaded, 'key' | 'org'>, now = Date.now()): Refusal | null {
  if (key.org_id !== org.id) return 'invalid'
  if (key.revoked_at !== null) return 'revoked'
  if (key.expires_at !== null && key.expires_at.getTime() <= now) return 'expired'
  return null
}

/**
 * Single flight: concurrent loads of one id share one query. Whoever joins a load another
 * request started may get data read before a write it must see, so it is told: `shared`.
 */
class SharedLoads<V> {
  readonly #inFlight = new Map<string, Promise<V>>()

  async run (id: string, load: () => Promise<V>): Promise<{ value: V, shared: boolean }> {
    const flight = this.#inFlight.get(id)
    if (flight !== undefined) return { value: await flight, shared: true }
    const started = load().finally(() => this.#inFlight.delete(id))
    this.#inFlight.set(id, started)
    return { value: await started, shared: false }
  }

  has (id: string): boolean {
    return this.#inFlight.has(id)
  }
}

async function apiKey (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const lastUsed = createLastUsedRecorder({ db: app.db, log: app.log })
  app.addHook('onClose', async () => { await lastUsed.flush() })
  const cache = app.publicCache

  app.decorateRequest('apiKey', null)
  app.decorateRequest('orgEpoch', null)
  app.decorateRequest(kLoaded, null)
  // The guessing-budget attempt a database lookup reserved, if any (declared here: one request shape).
  app.decorateRequest(kGuess, null)

  // A burst of requests with a key or org not cached yet (a deploy, a new key) shares one query each.
  const keyLoads = new SharedLoads<GuardedKey | undefined>()
  // The allowlist is parsed here, once per load, never per request.
  const findKey = async (keyHash: string): Promise<GuardedKey | undefined> => {
    const key = await findApiKeyByHash(app.db, keyHash)
    return key === undefined ? undefined : guardedKey(key)
  }
  const defaultBudget = { max: config.rateLimitMax, windowMs: config.rateLimitWindowMs }
  function budgetOf (key: GuardedKey, org: Org): AuthenticatedApiKey['budget'] {
    if (key.guard.budget !== null) return key.guard.budget
    return org.rateLimit === null ? defaultBudget : { max: org.rateLimit.max, windowMs: org.rateLimit.windowSeconds * 1000 }
  }
  function authenticated (key: GuardedKey, org: Org): AuthenticatedApiKey {
    return { id: key.id, orgId: key.org_id, prefix: key.prefix, budget: budgetOf(key, org), expiresAtHeader: key.guard.expiresAtHeader }
  }

  // Behind a proxy with TRUST_PROXY unset, every client has the proxy's address: allowlists and
  // the guessing limit then see one client. Said once, on the first request that shows it.
  let forwardedWarned = config.trustProxy !== false && config.trustProxy !== 0
  function warnOfForwardedFor (request: FastifyRequest): void {
    if (request.headers['x-forwarded-for'] === undefined) return
    forwardedWarned = true
    request.log.warn('requests carry X-Forwarded-For but TRUST_PROXY is off: client addresses (API key allowlists, failed-key and login limits) are the proxy\'s; set TRUST_PROXY to the proxies to trust')
  }
  const orgLoads = new SharedLoads<Org | null>()

  // A lookup of a key not cached reserves one attempt of the guessing budget first (atomically:
  // concurrent guesses cannot all pass); the attempt counts as a failure unless the key is valid.
  // Concurrent lookups of one key from one address (a deploy's first burst; behind a proxy, every
  // client) share the first one's reservation, as they share its query: one attempt, not one each
  // (a burst of 100 would otherwise use up the budget of 30 with a valid key). A joiner holds no
  // reservation, so a key that turns out invalid counts as its failure (requireApiKey).
  const pendingGuesses = new Map<string, Promise<FailureReservation>>()
  async function refuseWhileGuessing (request: FastifyRequest, reply: FastifyReply, cacheId: string): Promise<void> {
    const id = `${cacheId}|${request.ip}`
    let pending = pendingGuesses.get(id)
    let verdict: FailureReservation
    if (pending === undefined) {
      pending = app.failureLimiter.reserve('apiKey', request.ip)
      pendingGuesses.set(id, pending)
      const settled = (): void => { pendingGuesses.delete(id) }
      pending.then(settled, settled)
      verdict = await pending
      ;(request as unknown as Record<symbol, FailureReservation>)[kGuess] = verdict
    } else {
      verdict = await pending
    }
    if (verdict.blocked) {
      app.metrics.apiKeyOutcome('rate_limited')
      app.metrics.rateLimited('api_key_failures')
      reply.header('retry-after', verdict.retryAfterSeconds)
      throw new RateLimited(`Too many failed API key attempts; try again in ${verdict.retryAfterSeconds} seconds`)
    }
  }

  /**
   * The key and its org: from the cache (stamped) or, after the guessing check, from the database.
   * Keys are found by digest, never compared as strings: the cache by apiKeyCacheId, the
   * database by the peppered HMAC under a unique index, so no comparison can leak by timing.
   */
  async function load (request: FastifyRequest, reply: FastifyReply, slug: string, presented: string): Promise<Loaded> {
    const cacheId = apiKeyCacheId(presented)
    const cachedKey = cache.keys.peek(cacheId)
    const cachedOrg = cache.orgs.peek(slug)
    if (cachedKey !== undefined && cachedOrg !== undefined) {
      return { key: cachedKey.value, org: cachedOrg.value, cacheId, keyStamp: cachedKey.epoch, orgStamp: cachedOrg.epoch, keyCached: true, orgCached: true }
    }
    // The checksum only now: every cached key has a valid one. A typo still costs no I/O.
    if (!hasValidApiKeyChecksum(presented) || cache.unknownKeyHashes.has(cacheId)) throw new InvalidApiKey()
    // A key this instance has seen valid passes even from an address blocked for guessing:
    // the block is for keys nobody here knows.
    // A lookup joining one already under way costs nothing more, and reserves nothing.
    const stamp = cache.stampBeforeLoad()
    if (cachedKey === undefined && !cache.knownKeys.has(cacheId) && !keyLoads.has(`${cacheId}|${stamp}`)) {
      await refuseWhileGuessing(request, reply, cacheId)
    }
    if (cachedKey === undefined) cache.keys.counted(false)
    if (cachedOrg === undefined) cache.orgs.counted(false)
    const [loadedKey, loadedOrg] = await Promise.all([
      cachedKey === undefined ? keyLoads.run(`${cacheId}|${stamp}`, () => findKey(hashApiKey(config.apiKeyPepper, presented))) : null,
      cachedOrg === undefined ? orgLoads.run(`${slug}|${stamp}`, () => findOrgBySlug(app.db, slug)) : null
    ])
    const key = cachedKey?.value ?? loadedKey?.value
    const org = cachedOrg?.value ?? loadedOrg?.value ?? null
    if (loadedKey !== null) {
      if (loadedKey.value === undefined) cache.unknownKeyHashes.set(cacheId, true)
      else {
        cache.keys.set(cacheId, loadedKey.value, stamp)
        if (loadedKey.value.revoked_at === null) cache.knownKeys.set(cacheId, true)
      }
    }
    if (loadedOrg !== null && loadedOrg.value !== null) cache.orgs.set(slug, loadedOrg.value, stamp)
    if (key === undefined || org === null) throw new InvalidApiKey()
    // What this request read from the database itself is current whatever the epoch says; what
    // came from the cache, or from a load another request started, confirmApiKey checks.
    return {
      key,
      org,
      cacheId,
      keyStamp: cachedKey?.epoch ?? (loadedKey?.shared === true ? stamp : null),
      orgStamp: cachedOrg?.epoch ?? (loadedOrg?.shared === true ? stamp : null),
      keyCached: cachedKey !== undefined,
      orgCached: cachedOrg !== undefined
    }
  }

  function check (loaded: Pick<Loaded, 'key' | 'org'>): void {
    const refusal = refusalFor(loaded)
    if (refusal !== null) throw refuse(refusal)
  }

  async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const slug = slugHeader(request) // a missing X-Org-Slug is 400 whatever the key
    const presented = request.headers['x-api-key']
    // Shape first, then the cache, then (in load) the checksum: a mistyped, truncated or invented key costs no I/O.
    if (!forwardedWarned) warnOfForwardedFor(request)
    if (!hasApiKeyShape(presented) || slug === null) throw new InvalidApiKey()
    const loaded = await load(request, reply, slug, presented)
    check(loaded)
    await (request as unknown as Record<symbol, FailureReservation | null>)[kGuess]?.release()
    request.org = loaded.org
    request.apiKey = authenticated(loaded.key, loaded.org)
    request.orgEpoch = cache.readEpoch(loaded.org.id)
    ;(request as unknown as Record<symbol, Loaded>)[kLoaded] = loaded
  }

  app.decorate('requireApiKey', async function requireApiKey (request: FastifyRequest, reply: FastifyReply) {
    try {
      await authenticate(request, reply)
    } catch (error) {
      // A reserved attempt is already counted; one refused before any lookup is counted now.
      // Anything else (a suspended org, a store down) is no guess: its reservation is released.
      const reserved = (request as unknown as Record<symbol, FailureReservation | null>)[kGuess]
      if (error instanceof InvalidApiKey) {
        app.metrics.apiKeyOutcome(refusalOf(error))
        if (reserved === null) await app.failureLimiter.recordFailure('apiKey', request.ip)
      } else await reserved?.release()
      throw error
    }
  })

  function loadedOf (request: FastifyRequest): Loaded {
    const loaded = (request as unknown as Record<symbol, Loaded | null>)[kLoaded]
    if (loaded === null || request.orgEpoch === null) throw new Error('the /public guard ran without requireApiKey')
    return loaded
  }

  app.decorate('confirmApiKey', async function confirmApiKey (request: FastifyRequest): Promise<boolean> {
    const loaded = loadedOf(request)
    if (loaded.keyStamp === null && loaded.orgStamp === null) return false
    const epoch = await request.orgEpoch
    const keyCurrent = loaded.keyStamp === null || loaded.keyStamp === epoch
    const orgCurrent = loaded.orgStamp === null || loaded.orgStamp === epoch
    // Peeked entries count as hits or misses here, once it is known whether they were current.
    if (loaded.keyCached) cache.keys.counted(keyCurrent)
    if (loaded.orgCached) cache.orgs.counted(orgCurrent)
    if (keyCurrent && orgCurrent) return false
    // Something about this org changed since these entries were cached: read them again.
    // Requests that read the same epoch may share a read: none of them has to see a write whose
    // epoch came later. With the epoch unknown (Redis down) each request reads for itself.
    const readKey = () => findKey(loaded.key.key_hash)
    const readOrg = () => findOrgBySlug(app.db, loaded.org.slug)
    const [key, org] = epoch === null
      ? await Promise.all([readKey(), readOrg()])
      : await Promise.all([
        keyLoads.run(`${loaded.cacheId}|${epoch}`, readKey).then(load => load.value),
        orgLoads.run(`${loaded.org.slug}|${epoch}`, readOrg).then(load => load.value)
      ])
    if (key === undefined || org === null) {
      cache.keys.delete(loaded.cacheId)
      app.metrics.apiKeyOutcome('invalid')
      throw new InvalidApiKey()
    }
    cache.keys.set(loaded.cacheId, key, epoch)
    cache.orgs.set(org.slug, org, epoch)
    const refusal = refusalFor({ key, org })
    if (refusal !== null) {
      app.metrics.apiKeyOutcome(refusal)
      throw refuse(refusal)
    }
    loaded.key = key
    loaded.org = org
    request.org = org
    request.apiKey = authenticated(key, org)
    return true
  })

  app.decorate('apiKeyRefusal', function apiKeyRefusal (request: FastifyRequest): Error | null {
    const { key, org } = loadedOf(request)
    if (org.status !== 'active') return new OrgSuspended()
    const { allowed, scopes } = key.guard
    if (allowed !== null && !addressAllowed(allowed, request.ip)) {
      return new IpNotAllowed(`Client address ${request.ip} is not on this API key's IP allowlist`)
    }
    const scope = request.routeOptions.config.scope
    if (scope !== undefined && !scopes.includes(scope)) {
      return new InsufficientScope(`This API key lacks the scope ${scope}, which ${request.method} ${request.routeOptions.url ?? request.url} needs`)
    }
    return null
  })

  app.decorate('apiKeyMayBeCurrent', function apiKeyMayBeCurrent (request: FastifyRequest): boolean {
    const { keyStamp, orgStamp } = loadedOf(request)
    return keyStamp !== UNVERIFIED && orgStamp !== UNVERIFIED
  })

  app.decorate('recordApiKeyUse', async function recordApiKeyUse (request: FastifyRequest) {
    const loaded = loadedOf(request)
    app.metrics.apiKeyOutcome('ok')
    await lastUsed.recordUse(loaded.key.id, loaded.key.last_used_at)
  })
}

export default fp(apiKey, { name: 'api-key', fastify: '5.x', dependencies: ['db', 'metrics', 'org-slug', 'failure-limiter', 'public-cache'] })
