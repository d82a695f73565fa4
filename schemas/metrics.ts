import { Type } from '@sinclair/typebox'
import { errorResponse } from './common.ts'

export const metrics = {
  tags: ['Operations'],
  security: [{}, { metricsToken: [] }] as Array<Record<string, string[]>>,
  operationId: 'metrics',
  summary: 'Prometheus metrics',
  description: 'Prometheus text exposition format: request duration by route pattern and status, API-key ' +
    'verification outcomes, cache hits and misses (and the hit ratio), rate-limit rejections, database pool ' +
    'use (PostgreSQL), webhook deliveries (`tenantkey_webhook_attempts_total` by outcome, `tenantkey_webhook_deliveries_total` ' +
    'by final status, `tenantkey_webhook_attempt_duration_seconds`, and `tenantkey_webhook_queue_depth` with `state` `due` ' +
    'and `overdue` — due for over a minute), and the process metrics. When `METRICS_TOKEN` is set it must be sent as ' +
    '`Authorization: Bearer <METRICS_TOKEN>` (401 otherwise); unset, the endpoint is open, so keep it off ' +
    'public networks.',
  response: {
    200: {
      description: 'Metrics in the Prometheus text format',
      content: {
        'text/plain': {
          schema: Type.String({
            examples: ['# HELP tenantkey_api_key_verifications_total API-key verifications on /public/*, by outcome.\n' +
              '# TYPE tenantkey_api_key_verifications_total counter\n' +
              'tenantkey_api_key_verifications_total{outcome="ok"} 42\n']
          })
        }
      }
    },
    ...errorResponse(401, ['Invalid metrics token', 'unauthorized'])
  }
}
