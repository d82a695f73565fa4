import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import type { Config } from '../src/config.ts'
import type { PoolStats } from '../db/connect.ts'
import { safeEqual } from '../src/secrets.ts'
import { Unauthorized } from '../src/errors.ts'
import * as schemas from '../schemas/metrics.ts'
import { countDueDeliveries, OVERDUE_AFTER_MS } from '../db/queries/webhooks.ts'

export type ApiKeyOutcome = 'ok' | 'invalid' | 'revoked' | 'expired' | 'rate_limited'
export const API_KEY_OUTCOMES: readonly ApiKeyOutcome[] = ['ok', 'invalid', 'revoked', 'expired', 'rate_limited']

/** How a webhook delivery attempt ended (plugins/webhooks/sender.ts). */
export type WebhookAttemptOutcome = 'succeeded' | 'http_error' | 'gone' | 'timeout' | 'network_error' | 'refused_address'
export const WEBHOOK_ATTEMPT_OUTCOMES: readonly WebhookAttemptOutcome[] = ['succeeded', 'http_error', 'gone', 'timeout', 'network_error', 'refused_address']

/** What other plugins report; each call is a counter increment, cheap enough for the hot path. */
export interface Metrics {
  apiKeyOutcome: (outcome: ApiKeyOutcome) => void
  cacheHit: (cache: string) => void
  cacheMiss: (cache: string) => void
  /** a request refused by a limiter, e.g. 'api_key' (per-key budget), 'api_key_failures', 'login' */
  rateLimited: (limiter: string) => void
  /** one webhook delivery attempt: how it ended and how long it took */
  webhookAttempt: (outcome: WebhookAttemptOutcome, seconds: number) => void
  /** a webhook delivery finished for good */
  webhookDelivery: (status: 'succeeded' | 'failed') => void
  /** this app's metrics and the process metrics, as /metrics serves them */
  registry: Registry
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

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

  const requestDuration = new RequestDurations()
  registry.registerMetric(requestDuration as unknown as Metric)

  // The hot path only adds to plain numbers; prom-client's counters are brought up to date when
  // /metrics is scraped (its labelled inc() hashes its labels on every call).
  const counted = (name: string, help: string, labelNames: string[]) => {
    const totals = new Map<string, { labels: Record<string, string>, value: number }>()
    new Counter({ // eslint-disable-line no-new -- registered in the registry, read at scrape time
      name,
      help,
      labelNames,
      registers: [registry],
      collect () {
        this.reset()
        for (const { labels, value } of totals.values()) this.inc(labels, value)
      }
    })
    // The outcome and cache series are looked up once and kept; only a 429 (rare) looks its series up each time.
    return (labels: Record<string, string>) => {
      const key = Object.values(labels).join('\u0000')
      let total = totals.get(key)
      if (total === undefined) {
        total = { labels, value: 0 }
        totals.set(key, total)
      }
      return total
    }
  }

  // every outcome is a series from the start, so rate() and alerts see zeros, not gaps
  const outcomeTotal = counted('tenantkey_api_key_verifications_total', 'API-key verifications on /public/*, by outcome.', ['outcome'])
  const outcomeTotals = new Map(API_KEY_OUTCOMES.map(outcome => [outcome, outcomeTotal({ outcome })]))
  const cacheTotal = counted('tenantkey_cache_requests_total', 'Cache lookups by cache name and result (hit or miss); hit ratio = rate(hit) / rate(hit + miss).', ['cache', 'result'])
  const rejectionTotal = counted('tenantkey_rate_limit_rejections_total', 'Requests refused with 429, by limiter.', ['limiter'])

  const cacheCounts = new Map<string, { hits: { value: number }, misses: { value: number } }>()
  const cacheEntry = (cache: string): { hits: { value: number }, misses: { value: number } } => {
    let entry = cacheCounts.get(cache)
    if (entry === undefined) {
      entry = { hits: cacheTotal({ cache, result: 'hit' }), misses: cacheTotal({ cache, result: 'miss' }) }
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
      for (const [cache, { hits, misses }] of cacheCounts) this.set({ cache }, hits.value + misses.value === 0 ? 0 : hits.value / (hits.value + misses.value))
    }
  })

  const attemptTotal = counted('tenantkey_webhook_attempts_total', 'Webhook delivery attempts, by outcome: succeeded (2xx), http_error (another status), gone (410: the webhook was deactivated), timeout, network_error, refused_address (the SSRF guard).', ['outcome'])
  const attemptTotals = new Map(WEBHOOK_ATTEMPT_OUTCOMES.map(outcome => [outcome, attemptTotal({ outcome })]))
  const deliveryTotal = counted('tenantkey_webhook_deliveries_total', 'Webhook deliveries finished, by status: succeeded, or failed after the last attempt of WEBHOOK_RETRY_SCHEDULE (or a 410).', ['status'])
  const deliveryTotals = { succeeded: deliveryTotal({ status: 'succeeded' }), failed: deliveryTotal({ status: 'failed' }) }
  const attemptDuration = new Histogram({
    name: 'tenantkey_webhook_attempt_duration_seconds',
    help: 'Time of one webhook delivery attempt, from the check of its URL to the end of the answer (at most WEBHOOK_TIMEOUT).',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const db = app.db
  new Gauge({ // eslint-disable-line no-new -- registered in the registry, read at scrape time
    name: 'tenantkey_webhook_queue_depth',
    help: `Pending webhook deliveries whose attempt is due (state="due"), and of those the ones due for over ${OVERDUE_AFTER_MS / 1000} s (state="overdue": the workers are behind). Counted in the database, so every instance reports the whole queue.`,
    labelNames: ['state'] as const,
    registers: [registry],
    async collect () {
      try {
        const { due, overdue } = await countDueDeliveries(db)
        this.set({ state: 'due' }, due)
        this.set({ state: 'overdue' }, overdue)
      } catch {
        // The database is down: /ready says so; the scrape still answers with the other metrics.
        this.reset()
      }
    }
  })

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
    apiKeyOutcome: (outcome: ApiKeyOutcome) => { (outcomeTotals.get(outcome) ?? outcomeTotal({ outcome })).value++ },
    cacheHit: (cache: string) => { cacheEntry(cache).hits.value++ },
    cacheMiss: (cache: string) => { cacheEntry(cache).misses.value++ },
    rateLimited: (limiter: string) => { rejectionTotal({ limiter }).value++ },
    webhookAttempt: (outcome: WebhookAttemptOutcome, seconds: number) => {
      (attemptTotals.get(outcome) ?? attemptTotal({ outcome })).value++
      attemptDuration.observe(seconds)
    },
    webhookDelivery: (status: 'succeeded' | 'failed') => { deliveryTotals[status].value++ },
    registry: Registry.merge([processMetrics(), registry])
  } satisfies Metrics)

  // Each route gets its own onResponse hook that already knows its pattern, so a request pays
  // for no route lookup and no label object: a few additions to its series.
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

interface DurationSeries { labels: Record<'method' | 'route' | 'status_code', string>, buckets: Float64Array, sum: number, count: number }

/**
 * http_request_duration_seconds, kept as plain numbers per series and written out in
 * prom-client's histogram format at scrape time: observing is a bucket search and three
 * additions, where prom-client's Histogram validates and hashes its labels every time.
 */
class RequestDurations {
  readonly name = 'http_request_duration_seconds'
  readonly help = 'Time from request to response, by method, route pattern (never the raw URL) and status code.'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #series: DurationSeries[] = []

  series (method: string, route: string, statusCode: number): DurationSeries {
    const series = { labels: { method, route, status_code: String(statusCode) }, buckets: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 }
    this.#series.push(series)
    return series
  }

  observe (series: DurationSeries, seconds: number): void {
    let bucket = 0
    while (bucket < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[bucket]) bucket++
    if (bucket < DURATION_BUCKETS.length) series.buckets[bucket]++
    series.sum += seconds
    series.count++
  }

  get (): { name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> } {
    const values = []
    for (const { labels, buckets, sum, count } of this.#series) {
      let cumulative = 0
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        cumulative += buckets[i]
        values.push({ labels: { le: DURATION_BUCKETS[i], ...labels }, value: cumulative, metricName: `${this.name}_bucket` })
      }
      values.push({ labels: { le: '+Inf', ...labels }, value: count, metricName: `${this.name}_bucket` })
      values.push({ labels, value: sum, metricName: `${this.name}_sum` })
      values.push({ labels, value: count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const series of this.#series) {
      series.buckets.fill(0)
      series.sum = 0
      series.count = 0
    }
  }
}

function durationHook (durations: RequestDurations, route: string) {
  const byMethod = new Map<string, Map<number, DurationSeries>>()
  return function observeDuration (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const method = request.method
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) {
      byStatus = new Map()
      byMethod.set(method, byStatus)
    }
    const status = reply.statusCode
    let series = byStatus.get(status)
    if (series === undefined) {
      series = durations.series(method, route, status)
      byStatus.set(status, series)
    }
    durations.observe(series, reply.elapsedTime / 1000)
    done()
  }
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', dependencies: ['envelope', 'db'] })
