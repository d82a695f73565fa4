import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.ts'
import { apiKeyCacheId, hashApiKey, hasApiKeyShape, hasValidApiKeyChecksum } from '../../src/api-key-format.ts'
import { addressAllowed, guardedKey, type GuardedKey } from './prepared-key.ts'
import type { LastUsedRecorder } from './last-used.ts'
import { findApiKeyByHash } from '../../db/queries/api-keys.ts'
import { findOrgBySlug, type Org } from '../../db/queries/orgs.ts'
import { InsufficientScope, InvalidApiKey, IpNotAllowed, OrgSuspended, RateLimited } from '../../src/errors.ts'
import { slugHeader } from '../org-slug.ts'
import type { ApiKeyOutcome } from '../metrics.ts'
import type { FailureReservation } from '../failure-limiter.ts'
import type { PublicCache } from './freshness.ts'
import type { Budget, KeyBudgets } from './budget.ts'

export interface AuthenticatedApiKey {
  id: string
  orgId: string
  /** display prefix (`pk_live_a3`), safe to log */
  prefix: string
  /** the effective budget (§9): the key's own, else its org's, else RATE_LIMIT_MAX per RATE_LIMIT_WINDOW */
  budget: Budget
}

/**
 * The key and org a request uses, and the epoch each was stamped with (freshness.ts, rule 2);
 * a stamp of null: this request read it from the database itself, current for it whatever the epoch.
 */
interface Found { key: GuardedKey, org: Org, keyStamp: string | null, orgStamp: string | null }
type Cached<V> = { value: V, epoch: string } | undefined

// Why a key was refused, for the metrics only: the client always sees the same 401.
type Refusal = Exclude<ApiKeyOutcome, 'ok' | 'rate_limited'>

/**
 * Single flight: concurrent loads of one id share one query. Ids carry the epoch read before the
 * load, so whoever joins gets data read after the epoch it read itself (freshness.ts, rule 2).
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

export type PublicGuard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/**
 * The /public guard, in the order of §9, as one function of steps:
 *   1. shape      X-Org-Slug (400) and a key of the right shape (401): no I/O for a typo
 *   2. find       the key and its org: from this instance's cache, else (checksum, guessing limit)
 *                 from the database, one query each, shared by concurrent requests
 *   3. count      the request against its budget; with Redis the same round trip reads the org's
 *                 epoch, without Redis the epoch is read in memory
 *   4. confirm    what came from the cache is trusted only if stamped with that epoch, else read
 *                 again (freshness.ts); the decisions below are made on current data only
 *   5. refuse     revoked or expired (401); org suspended, address not allowed, scope missing
 *                 (403, not counted: the count is given back, no X-RateLimit-* headers);
 *                 X-API-Key-Expires-At on every answer the key authenticated
 *   6. budget     X-RateLimit-* headers, 429 when over; the key's use (lastUsedAt, metrics)
 * The fast path (everything cached and current, no Redis) awaits one promise: the count.
 */
export function createPublicGuard (app: FastifyInstance, config: Config, caches: PublicCache, budgets: KeyBudgets, lastUsed: LastUsedRecorder): PublicGuard {
  const withRedis = app.redis !== null
  const defaultBudget: Budget = { max: config.rateLimitMax, windowMs: config.rateLimitWindowMs }
  const keyLoads = new SharedLoads<GuardedKey | undefined>()
  const orgLoads = new SharedLoads<Org | null>()
  // The allowlist is parsed here, once per load, never per request.
  const findKey = async (keyHash: string): Promise<GuardedKey | undefined> => {
    const key = await findApiKeyByHash(app.db, keyHash)
    return key === undefined ? undefined : guardedKey(key)
  }
  const findOrg = async (slug: string): Promise<Org | null> => await findOrgBySlug(app.db, slug)
  // A lookup of a key not cached reserves one attempt of the guessing budget first (atomically:
  // concurrent guesses cannot all pass). Concurrent lookups of one key from one address (a
  // deploy's first burst; behind a proxy, every client) share the first one's reservation, as they
  // share its query: one attempt, not one each (a burst of 100 would otherwise use up the budget of
  // 30 with a valid key). A joiner holds no reservation, so an invalid key counts as its failure.
  const pendingGuesses = new Map<string, Promise<FailureReservation>>()
  // Behind a proxy with TRUST_PROXY unset, every client has the proxy's address: allowlists and
  // the guessing limit then see one client. Said once, on the first request that shows it.
  let forwardedWarned = config.trustProxy !== false && config.trustProxy !== 0

  return async function guardPublicRequest (request, reply) {
    // 1. shape
    const slug = slugHeader(request)
    const presented = request.headers['x-api-key']
    if (!forwardedWarned) warnOfForwardedFor(request)
    if (!hasApiKeyShape(presented) || slug === null) throw await invalid(request, 'invalid', true)

    // 2. find
    const cacheId = apiKeyCacheId(presented)
    const cachedKey = caches.keys.peek(cacheId)
    const cachedOrg = caches.orgs.peek(slug)
    let found: Found = cachedKey !== undefined && cachedOrg !== undefined
      ? { key: cachedKey.value, org: cachedOrg.value, keyStamp: cachedKey.epoch, orgStamp: cachedOrg.epoch }
      : await fromDatabase(request, reply, slug, presented, cacheId, cachedKey, cachedOrg)

    // 3. count (only a request the data at hand lets through: a refusal must first be confirmed)
    const budget = budgetOf(found)
    const refusalAtHand = refusalOf(request, found)
    const counted = refusalAtHand === null ? budgets.count(request, found.key.id, found.org.id, budget) : null
    let limit = counted === null ? null : await counted
    const epoch = !withRedis ? caches.localEpoch() : counted !== null ? budgets.epochSeen(found.org.id) : await caches.readEpoch(found.org.id)

    // 4. confirm
    const keyCurrent = found.keyStamp === null || found.keyStamp === epoch
    const orgCurrent = found.orgStamp === null || found.orgStamp === epoch
    if (cachedKey !== undefined) caches.keys.onLookup(keyCurrent)
    if (cachedOrg !== undefined) caches.orgs.onLookup(orgCurrent)
    const reloaded = !keyCurrent || !orgCurrent
    if (reloaded) {
      try {
        found = await reload(found, cacheId, epoch)
      } catch (error) {
        if (limit !== null) await budgets.release(limit)
        throw error
      }
    }

    // 5. refuse, on current data: a key that does not pass (401), then the 403s of §9, which are the
    // key's answers (usage counts them; they carry X-API-Key-Expires-At but no X-RateLimit-*).
    const refusal = reloaded ? refusalOf(request, found) : refusalAtHand
    if (refusal !== null && limit !== null) await budgets.release(limit)
    // A key found revoked or expired only on reading it again is a key in use, not a guess.
    if (refusal instanceof InvalidApiKey) throw await invalid(request, refusalReason(found) ?? 'invalid', !reloaded)
    request.org = found.org
    request.orgEpoch = epoch
    request.apiKey = { id: found.key.id, orgId: found.org.id, prefix: found.key.prefix, budget: reloaded ? budgetOf(found) : budget }
    const expiresAt = found.key.guard.expiresAtHeader
    if (expiresAt !== null) reply.header('x-api-key-expires-at', expiresAt)
    if (refusal !== null) throw refusal

    // 6. budget (counted again if it changed under the cached entry), the key's use
    const current = request.apiKey.budget
    if (limit !== null && (current.max !== budget.max || current.windowMs !== budget.windowMs)) {
      await budgets.release(limit)
      limit = null
    }
    limit ??= await budgets.count(request, found.key.id, found.org.id, current)
    budgets.enforce(reply, limit)
    app.metrics.apiKeyOutcome('ok')
    const firstUse = lastUsed.recordUse(found.key.id, found.key.last_used_at)
    if (firstUse !== null) await firstUse
  }

  function budgetOf ({ key, org }: Found): Budget {
    if (key.guard.budget !== null) return key.guard.budget
    return org.rateLimit === null ? defaultBudget : { max: org.rateLimit.max, windowMs: org.rateLimit.windowSeconds * 1000 }
  }

  /** Why the key may not make this request, in the order of §9; null when it may. A few reads of what was cached with the key. */
  function refusalOf (request: FastifyRequest, found: Found): Error | null {
    if (refusalReason(found) !== null) return new InvalidApiKey()
    const { key, org } = found
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
  }

  function refusalReason ({ key, org }: Found): Refusal | null {
    if (key.org_id !== org.id) return 'invalid'
    if (key.revoked_at !== null) return 'revoked'
    if (key.expires_at !== null && key.expires_at.getTime() <= Date.now()) return 'expired'
    return null
  }

  /**
   * The 401 for a key that does not pass, counted in the metrics and, when it is a guess (an
   * unknown key, or a refusal on what was at hand), as a failure of the client's address for the
   * guessing limit; a lookup that reserved an attempt has counted it already.
   */
  async function invalid (request: FastifyRequest, reason: Refusal, isFailure: boolean): Promise<InstanceType<typeof InvalidApiKey>> {
    app.metrics.apiKeyOutcome(reason)
    if (isFailure) await app.failureLimiter.recordFailure('apiKey', request.ip)
    return new InvalidApiKey()
  }

  /**
   * Step 2 when the cache lacks the key or the org. Keys are found by digest, never compared as
   * strings: the cache by apiKeyCacheId, the database by the peppered HMAC under a unique index,
   * so no comparison can leak by timing.
   */
  async function fromDatabase (request: FastifyRequest, reply: FastifyReply, slug: string, presented: string, cacheId: string,
    cachedKey: Cached<GuardedKey>, cachedOrg: Cached<Org>): Promise<Found> {
    // The checksum only now: every cached key has a valid one. A typo still costs no I/O.
    if (!hasValidApiKeyChecksum(presented) || caches.unknownKeyHashes.has(cacheId)) throw await invalid(request, 'invalid', true)
    // Without Redis the epoch is known now and stamps the load; with Redis it is read with the count.
    const stamp = caches.localEpoch()
    // A key this instance has seen valid passes even from an address blocked for guessing: the
    // block is for keys nobody here knows. A lookup joining one under way reserves nothing.
    let reservation: FailureReservation | null = null
    if (cachedKey === undefined && !caches.knownKeys.has(cacheId) && !keyLoads.has(`${cacheId}|${stamp}`)) {
      reservation = await reserveGuess(request, reply, cacheId)
    }
    try {
      if (cachedKey === undefined) caches.keys.onLookup(false)
      if (cachedOrg === undefined) caches.orgs.onLookup(false)
      const [loadedKey, loadedOrg] = await Promise.all([
        cachedKey === undefined ? keyLoads.run(`${cacheId}|${stamp}`, () => findKey(hashApiKey(config.apiKeyPepper, presented))) : null,
        cachedOrg === undefined ? orgLoads.run(`${slug}|${stamp}`, () => findOrg(slug)) : null
      ])
      const key = cachedKey?.value ?? loadedKey?.value
      const org = cachedOrg?.value ?? loadedOrg?.value ?? null
      if (loadedKey !== null) {
        if (loadedKey.value === undefined) caches.unknownKeyHashes.set(cacheId, true)
        else {
          caches.keys.set(cacheId, loadedKey.value, stamp)
          if (loadedKey.value.revoked_at === null) caches.knownKeys.set(cacheId, true)
        }
      }
      if (loadedOrg !== null && loadedOrg.value !== null) caches.orgs.set(slug, loadedOrg.value, stamp)
      if (key === undefined || org === null) throw await invalid(request, 'invalid', reservation === null)
      const found = {
        key,
        org,
        // What this request read itself is current for it whatever the epoch; what came from the
        // cache, or from a load another request started, is confirmed in step 4.
        keyStamp: cachedKey?.epoch ?? (loadedKey?.shared === true ? stamp : null),
        orgStamp: cachedOrg?.epoch ?? (loadedOrg?.shared === true ? stamp : null)
      }
      // A valid key is no guess; a revoked or expired one is, and its reserved attempt is the failure.
      if (reservation !== null) {
        const reason = refusalReason(found)
        if (reason !== null) throw await invalid(request, reason, false)
        await reservation.release()
      }
      return found
    } catch (error) {
      // A store down or the like is no guess: its reservation is given back.
      if (!(error instanceof InvalidApiKey)) await reservation?.release()
      throw error
    }
  }

  /** Step 4 when the cache was stale: the key and org read again, stamped with the epoch this request read. */
  async function reload (found: Found, cacheId: string, epoch: string | null): Promise<Found> {
    // Requests that read the same epoch may share a read: none of them has to see a write whose
    // epoch came later. With the epoch unknown (Redis down) each request reads for itself.
    const readKey = (): Promise<GuardedKey | undefined> => findKey(found.key.key_hash)
    const readOrg = (): Promise<Org | null> => findOrg(found.org.slug)
    const [key, org] = epoch === null
      ? await Promise.all([readKey(), readOrg()])
      : await Promise.all([
        keyLoads.run(`${cacheId}|${epoch}`, readKey).then(load => load.value),
        orgLoads.run(`${found.org.slug}|${epoch}`, readOrg).then(load => load.value)
      ])
    if (key === undefined || org === null) {
      caches.keys.delete(cacheId)
      app.metrics.apiKeyOutcome('invalid')
      throw new InvalidApiKey()
    }
    caches.keys.set(cacheId, key, epoch)
    caches.orgs.set(org.slug, org, epoch)
    return { key, org, keyStamp: null, orgStamp: null }
  }

  async function reserveGuess (request: FastifyRequest, reply: FastifyReply, cacheId: string): Promise<FailureReservation | null> {
    const id = `${cacheId}|${request.ip}`
    const pending = pendingGuesses.get(id)
    let verdict: FailureReservation
    let reservation: FailureReservation | null = null
    if (pending === undefined) {
      const reserving = app.failureLimiter.reserve('apiKey', request.ip)
      pendingGuesses.set(id, reserving)
      const settled = (): void => { pendingGuesses.delete(id) }
      reserving.then(settled, settled)
      verdict = await reserving
      reservation = verdict
    } else {
      verdict = await pending
    }
    if (verdict.blocked) {
      app.metrics.apiKeyOutcome('rate_limited')
      app.metrics.rateLimited('api_key_failures')
      reply.header('retry-after', verdict.retryAfterSeconds)
      throw new RateLimited(`Too many failed API key attempts; try again in ${verdict.retryAfterSeconds} seconds`)
    }
    return reservation
  }

  function warnOfForwardedFor (request: FastifyRequest): void {
    if (request.headers['x-forwarded-for'] === undefined) return
    forwardedWarned = true
    request.log.warn('requests carry X-Forwarded-For but TRUST_PROXY is off: client addresses (API key allowlists, failed-key and login limits) are the proxy\'s; set TRUST_PROXY to the proxies to trust')
  }
}
