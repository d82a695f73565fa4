import t from 'tap'
import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import * as publicSchemas from '../schemas/public.ts'
import * as orgSchemas from '../schemas/org.ts'
import { ErrorResponse } from '../schemas/common.ts'
import { wrapSuccess } from '../plugins/envelope.ts'

// The response schemas reach the handlers' types: tsc (npm test's typecheck) refuses a handler whose
// return value the documented 200 does not describe. Each @ts-expect-error below is such a handler;
// were the types to stop flowing, the directive would be unused and tsc would fail on it.

t.test('a handler returns the data of its documented 200; the envelope wraps it', async t => {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(ErrorResponse)
  app.addHook('preSerialization', wrapSuccess)
  const org = { id: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', slug: 'acme', name: 'Acme', plan: 'pro', status: 'active' as const, appUrl: null, createdAt: '2025-05-23T12:00:00.000Z' }
  app.get('/org', { schema: { response: publicSchemas.getOrg.response } }, async () => ({ org }))
  // @ts-expect-error the 200 of GET /public/org is `{ org }`, not an org
  app.get('/wrong-shape', { schema: { response: publicSchemas.getOrg.response } }, async () => org)
  // @ts-expect-error `valid` is a boolean literal, not a string
  app.post('/wrong-verify', { schema: { response: publicSchemas.verify.response } }, async () => ({ valid: 'no' }))
  // @ts-expect-error an org's status is active or suspended
  app.get('/wrong-enum', { schema: { response: orgSchemas.getOrg.response } }, async () => ({ org: { ...org, status: 'deleted' } }))

  const res = await app.inject({ method: 'GET', url: '/org' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'success', data: { org } })
  await app.close()
})
