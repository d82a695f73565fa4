import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { guardOrgAdminRoutes } from './auth-jwt.ts'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/usage.ts'
import { createUsageRecorder, type UsageRecorder } from '../src/usage-recorder.ts'
import { startPeriodicJob } from '../src/periodic-job.ts'
import { deleteUsageBefore, isKeyOfOrg, listHourlyUsage, USAGE_COUNTERS, zeroUsage } from '../db/queries/usage.ts'
import { idPattern } from '../src/ids.ts'
import { NotFound, ValidationFailed } from '../src/errors.ts'
import { guardedOrg } from './org-slug.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** per-key usage counts of /public (§14), buffered in memory; prune deletes buckets past 90 days now */
    keyUsage: UsageRecorder & { prune: () => Promise<number> }
  }
  interface FastifyRequest {
    /** POST /public/verify's answer, for the usage counts: true valid, false not, null another route */
    tokenValid: boolean | null
  }
}

const RETENTION_MS = 90 * 86_400_000
const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS
const KEY_ID = new RegExp(idPattern('key'))

/** The usage recorder, its flush on shutdown, and the 90-day retention. */
async function keyUsage (app: FastifyInstance): Promise<void> {
  const recorder = createUsageRecorder({ db: app.db, log: app.log })
  const retention = startPeriodicJob(app.db, app.log, {
    name: 'api-key-usage-retention',
    intervalMs: HOUR_MS,
    runBatch: trx => deleteUsageBefore(trx, new Date(Date.now() - RETENTION_MS), 1000)
  })
  app.decorate('keyUsage', { ...recorder, prune: retention.runNow })
  app.decorateRequest('tokenValid', null)
  app.addHook('onClose', async () => {
    retention.stop()
    recorder.stop()
    await recorder.flush()
  })
}

export default fp(keyUsage, { name: 'key-usage', fastify: '5.x', dependencies: ['db'] })

/** Route /org/api-keys/:keyId/usage: an org admin reads a key's counts. */
export const keyUsageRoutes: FastifyPluginAsyncTypebox = async (app) => {
  guardOrgAdminRoutes(app)

  app.get('/api-keys/:keyId/usage', { schema: schemas.getApiKeyUsage }, async (request) => {
    const orgId = guardedOrg(request).id
    const { keyId } = request.params
    const { granularity = 'hour' } = request.query
    const size = granularity === 'day' ? DAY_MS : HOUR_MS
    const until = request.query.until === undefined ? Date.now() : Date.parse(request.query.until)
    const since = request.query.since === undefined ? until - DAY_MS : Date.parse(request.query.since)
    if (since >= until) throw new ValidationFailed('querystring.since must be before until')
    const first = since - since % size
    const buckets = Math.ceil((until - first) / size)
    if (buckets > schemas.MAX_BUCKETS) throw new ValidationFailed(`querystring.since: the range holds ${buckets} ${granularity} buckets, more than ${schemas.MAX_BUCKETS}`)
    if (!KEY_ID.test(keyId) || !await isKeyOfOrg(app.db, orgId, keyId)) throw new NotFound('API key not found')

    // What this instance counted is written first, so a read right after traffic sees it.
    await app.keyUsage.flush()
    const hours = await listHourlyUsage(app.db, keyId, new Date(first), new Date(until))
    const usage = Array.from({ length: buckets }, (_, i) => ({
      start: new Date(first + i * size).toISOString(),
      ...zeroUsage()
    }))
    for (const hour of hours) {
      const bucket = usage[Math.floor((hour.hour.getTime() - first) / size)]
      for (const name of USAGE_COUNTERS) bucket[name] += hour[name]
    }
    return { usage }
  })
}
