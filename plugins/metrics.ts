import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Config } from '../src/config.ts'
import type { PoolStats } from '../db/connect.ts'
import { safeEqual } from '../src/secrets.ts'
import { Unauthorized } from '../src/errors.ts'
import * as schemas from '../schemas/metrics.ts'

export type ApiKeyOutcome = 'ok' | 'invalid' | 'revoked' | 'expired' | 'rate_limited'
export const API_KEY_OUTCOMES: readonly ApiKeyOutcome[] = ['ok', 'invalid', 'revoked', 'expired', 'rate_limited']

/** What other plugins report; each call is a counter increment, cheap enough for the hot path. */
export interface Metrics {
  apiKeyOutcome: (outcome: ApiKeyOutcome) => void
  cacheHit: (cache: string) => void
  cacheMiss: (cache: string) => void
  /** a request refused by a limiter, e.g. 'api_key' (per-key budget), 'api_key_failures', 'login' */
  rateLimited: (limiter: string) => void
  /** this app's metrics and the process metrics, as /metrics serves them */
  registry: Registry
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

interface Increment { inc: () => void }
type Observe = (seconds: number) => void

// Process metrics (CPU, memory, event-loop lag, GC) are per process, not per app: collected once
// into a registry every app merges, so building many apps in one process does not start many monitors.
let processRegistry: Registry | undefined
function processMetrics (): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

async function metricsPlugin (app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const registry = new Registry()

  const requestDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request to response, by method, route pattern (never the raw URL) and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry]
  })

  const apiKeyVerifications = new Counter({
    name: 'tenantkey_api_key_verifications_total',
    help: 'API-key verifications on /public/*, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [registry]
  })
  const outcomeCounters = new Map<string, Increment>()
  for (const outcome of API_KEY_OUTCOMES) {
    const counter = apiKeyVerifications.labels(outcome)
    counter.inc(0) // every outcome is a series from the start, so rate() and alerts see zeros, not gaps
    outcomeCounters.set(outcome, counter)
  }

  const cacheRequests = new Counter({
    name: 'tenantkey_cache_requests_total',
    help: 'Cache lookups by cache name and result (hit or miss); hit ratio = rate(hit) / rate(hit + miss).',
    labelNames: ['cache', 'result'] as const,
    registers: [registry]
  })
  const cacheCounts = new Map<string, { hits: number, misses: number, hit: Increment, miss: Increment }>()
  const cacheEntry = (cache: string): { hits: number, misses: number, hit: Increment, miss: Increment } => {
    let entry = cacheCounts.get(cache)
    if (entry === undefined) {
      entry = { hits: 0, misses: 0, hit: cacheRequests.labels(cache, 'hit'), miss: cacheRequests.labels(cache, 'miss') }
      cacheCounts.set(cache, entry)
    }
    return entry
  }
  new Gauge({ // eslint-disable-line no-new -- registered in the registry, read at scrape time
    name: 'tenantkey_cache_hit_ratio',
    help: 'Share of cache lookups that hit since the process started, by cache name.',
    labelNames: ['cache'] as const,
    registers: [registry],
    collect () {
      for (const [cache, { hits, misses }] of cacheCounts) this.set({ cache }, hits + misses === 0 ? 0 : hits / (hits + misses))
    }
  })

  const rateLimitRejections = new Counter({
    name: 'tenantkey_rate_limit_rejections_total',
    help: 'Requests refused with 429, by limiter.',
    labelNames: ['limiter'] as const,
    registers: [registry]
  })
  const limiterCounters = new Map<string, Increment>()

  const poolStats = app.database.poolStats
  if (app.database.kind === 'postgres') {
    const poolGauge = (name: string, help: string, read: (stats: PoolStats) => number): void => {
      new Gauge({ // eslint-disable-line no-new -- registered in the registry, read at scrape time
        name,
        help,
        registers: [registry],
        collect () {
          const stats = poolStats()
          if (stats !== null) this.set(read(stats))
        }
      })
    }
    poolGauge('tenantkey_db_pool_connections', 'PostgreSQL pool: open connections (pg totalCount).', s => s.total)
    poolGauge('tenantkey_db_pool_idle_connections', 'PostgreSQL pool: idle connections (pg idleCount).', s => s.idle)
    poolGauge('tenantkey_db_pool_waiting_clients', 'PostgreSQL pool: queries waiting for a connection (pg waitingCount).', s => s.waiting)
  }

  app.decorate('metrics', {
    apiKeyOutcome: (outcome: ApiKeyOutcome) => { outcomeCounters.get(outcome)?.inc() },
    cacheHit: (cache: string) => { const entry = cacheEntry(cache); entry.hits++; entry.hit.inc() },
    cacheMiss: (cache: string) => { const entry = cacheEntry(cache); entry.misses++; entry.miss.inc() },
    rateLimited: (limiter: string) => {
      let counter = limiterCounters.get(limiter)
      if (counter === undefined) {
        counter = rateLimitRejections.labels(limiter)
        limiterCounters.set(limiter, counter)
      }
      counter.inc()
    },
    registry: Registry.merge([processMetrics(), registry])
  } satisfies Metrics)

  // Each route gets its own onResponse hook that already knows its pattern, so a request pays
  // for no route lookup and no label object: only the cached child's observe.
  app.addHook('onRoute', (route: RouteOptions) => {
    const observeDuration = durationHook(requestDuration, route.url)
    route.onResponse = route.onResponse === undefined ? [observeDuration] : [...[route.onResponse].flat(), observeDuration]
  })
  // Unmatched URLs share one label value, so scanners cannot grow the series without bound.
  const observeUnmatched = durationHook(requestDuration, 'unmatched')
  app.addHook('onResponse', function observeNotFound (request, reply, done) {
    if (request.is404) observeUnmatched(request, reply, done)
    else done()
  })
}

/** GET /metrics, registered after the docs plugin so it is documented; behind METRICS_TOKEN when set. */
export const metricsRoute: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  const scrape = app.metrics.registry
  const expectedToken = config.metricsToken
  app.get('/metrics', {
    schema: schemas.metrics,
    onRequest: function requireMetricsToken (request, reply, done) {
      if (expectedToken === null) return done()
      const match = /^Bearer +(\S+)\s*$/i.exec(request.headers.authorization ?? '')
      if (match !== null && safeEqual(match[1], expectedToken)) return done()
      reply.header('www-authenticate', 'Bearer realm="metrics"')
      done(new Unauthorized('Invalid metrics token'))
    }
  }, async (_request, reply) => {
    reply.type(scrape.contentType)
    return await scrape.metrics()
  })
}

function durationHook (histogram: Histogram<'method' | 'route' | 'status_code'>, route: string) {
  const byMethod = new Map<string, Map<number, { observe: Observe }>>()
  return function observeDuration (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const method = request.method
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) {
      byStatus = new Map()
      byMethod.set(method, byStatus)
    }
    const status = reply.statusCode
    let child = byStatus.get(status)
    if (child === undefined) {
      child = histogram.labels(method, route, String(status))
      byStatus.set(status, child)
    }
    child.observe(reply.elapsedTime / 1000)
    done()
  }
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', dependencies: ['envelope', 'db'] })
