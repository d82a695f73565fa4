import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/api-keys.ts'
import { apiKeyDisplayPrefix, generateApiKey, hashApiKey } from '../src/api-key-format.ts'
import type { Config } from '../src/config.ts'
import { idPattern, newId } from '../src/ids.ts'
import { NotFound, ValidationFailed } from '../src/errors.ts'
import { insertApiKey, listApiKeys, revokeApiKey } from '../db/queries/api-keys.ts'
import { recordEvent, userActor } from '../db/queries/events.ts'

const KEY_ID = new RegExp(idPattern('key'))

function adminContext (request: FastifyRequest): { orgId: string, userId: string } {
  if (request.org === null || request.auth === null) throw new Error('org-keys routes registered without their guards')
  return { orgId: request.org.id, userId: request.auth.user.id }
}

function futureDate (value: string | undefined): Date | null {
  if (value === undefined) return null
  const date = new Date(value)
  if (Number.isNaN(date.getTime())) throw new ValidationFailed('body.expiresAt must be an ISO 8601 date-time')
  if (date.getTime() <= Date.now()) throw new ValidationFailed('body.expiresAt must be in the future')
  return date
}

/** Routes /org/api-keys: an org admin creates, lists and revokes the org's API keys. */
const orgKeys: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  app.addHook('onRequest', app.requireOrg)
  app.addHook('onRequest', app.requireUser)
  app.addHook('onRequest', app.requireActiveMember)
  app.addHook('onRequest', app.requireRole('org_admin'))

  app.post('/api-keys', { schema: schemas.createApiKey }, async (request, reply) => {
    const { orgId, userId } = adminContext(request)
    const name = request.body.name.trim()
    if (name === '') throw new ValidationFailed('body.name must not be blank')
    const expiresAt = futureDate(request.body.expiresAt)
    const key = generateApiKey()
    const apiKey = await app.db.transaction().execute(async trx => {
      const created = await insertApiKey(trx, {
        id: newId('key'), orgId, name, prefix: apiKeyDisplayPrefix(key), keyHash: hashApiKey(config.apiKeyPepper, key), createdBy: userId, expiresAt
      })
      const metadata = { name, prefix: created.prefix, expiresAt: created.expiresAt }
      await recordEvent(trx, { type: 'api_key.created', orgId, actor: userActor(request.auth!.user), target: { type: 'api_key', id: created.id }, data: metadata, ip: request.ip })
      return created
    })
    request.log.info({ orgId, apiKeyId: apiKey.id }, 'API key created')
    return reply.code(201).send({ key, apiKey })
  })

  app.get('/api-keys', { schema: schemas.listApiKeys }, async (request) => {
    return { apiKeys: await listApiKeys(app.db, adminContext(request).orgId) }
  })

  app.delete('/api-keys/:keyId', { schema: schemas.revokeApiKey }, async (request) => {
    const { orgId, userId } = adminContext(request)
    const { keyId } = request.params
    // Not an id this service makes (a NUL byte would even fail the query): no such key.
    if (!KEY_ID.test(keyId)) throw new NotFound('API key not found')
    const outcome = await app.db.transaction().execute(async trx => {
      const result = await revokeApiKey(trx, { orgId, keyId, revokedBy: userId })
      if (result === 'revoked') {
        await recordEvent(trx, { type: 'api_key.revoked', orgId, actor: userActor(request.auth!.user), target: { type: 'api_key', id: keyId }, data: {}, ip: request.ip })
      }
      return result
    })
    if (outcome === 'missing') throw new NotFound('API key not found')
    // Revocation is immediate: no instance may accept the key once this response is sent.
    await app.publicCache.orgChanged(orgId)
    if (outcome === 'revoked') request.log.info({ orgId, apiKeyId: keyId }, 'API key revoked')
    return { message: 'API key revoked' }
  })
}

export default orgKeys
