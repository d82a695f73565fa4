import type { FastifyRequest } from 'fastify'
import { guardOrgAdminRoutes } from './auth-jwt.ts'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/api-keys.ts'
import { apiKeyDisplayPrefix, generateApiKey, hashApiKey } from '../src/api-key-format.ts'
import { API_KEY_SCOPES, checkKeyRateLimit, normaliseAllowedIps, orgRateLimit, type ApiKeyScope, type RateLimit } from '../src/api-key-settings.ts'
import type { Config } from '../src/config.ts'
import { idPattern, newId } from '../src/ids.ts'
import { Conflict, NotFound, ValidationFailed } from '../src/errors.ts'
import type { Org } from '../db/queries/orgs.ts'
import type { ApiKeyRow } from '../db/database.ts'
import {
  findApiKey, insertApiKey, isApiKeyActive, listApiKeys, lockApiKey, retireRotatedApiKey, revokeApiKey, toApiKey, updateApiKeySettings,
  type ApiKeySettings
} from '../db/queries/api-keys.ts'
import { recordEvent, userActor, type Actor } from '../db/queries/events.ts'

const KEY_ID = new RegExp(idPattern('key'))
const DEFAULT_GRACE_PERIOD_SECONDS = 86_400
/** A new key, unless its body says otherwise: every scope, the org's budget, any address, no expiry. */
const DEFAULT_SETTINGS: ApiKeySettings = { name: '', description: null, scopes: [...API_KEY_SCOPES], rateLimit: null, allowedIps: [], expiresAt: null }

interface AdminContext { org: Org, orgId: string, userId: string, actor: Actor }

function adminContext (request: FastifyRequest): AdminContext {
  if (request.org === null || request.auth === null) throw new Error('org-keys routes registered without their guards')
  return { org: request.org, orgId: request.org.id, userId: request.auth.user.id, actor: userActor(request.auth.user) }
}

/** An id this service never makes (a NUL byte would even fail the query) names no key: 404 like an unknown one. */
function knownKeyId (keyId: string): string {
  if (!KEY_ID.test(keyId)) throw new NotFound('API key not found')
  return keyId
}

function futureDate (value: string): Date {
  const date = new Date(value)
  if (Number.isNaN(date.getTime())) throw new ValidationFailed('body.expiresAt must be an ISO 8601 date-time')
  if (date.getTime() <= Date.now()) throw new ValidationFailed('body.expiresAt must be in the future')
  return date
}

/** The key settings of a create or update body, checked and normalised; fields the body leaves out stay out. */
interface SettingsBody {
  name?: string
  description?: string | null
  scopes?: ApiKeyScope[]
  rateLimit?: RateLimit | null
  allowedIps?: string[]
  expiresAt?: string | null
}
function settingsOf (body: SettingsBody, org: Org, config: Config): Partial<ApiKeySettings> {
  const settings: Partial<ApiKeySettings> = {}
  if (body.name !== undefined) {
    settings.name = body.name.trim()
    if (settings.name === '') throw new ValidationFailed('body.name must not be blank')
  }
  if (body.description !== undefined) settings.description = body.description?.trim() || null
  if (body.scopes !== undefined) settings.scopes = body.scopes
  if (body.rateLimit !== undefined) {
    if (body.rateLimit !== null) checkKeyRateLimit(body.rateLimit, orgRateLimit(org, config))
    settings.rateLimit = body.rateLimit
  }
  if (body.allowedIps !== undefined) settings.allowedIps = normaliseAllowedIps(body.allowedIps)
  if (body.expiresAt !== undefined) settings.expiresAt = body.expiresAt === null ? null : futureDate(body.expiresAt)
  return settings
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/** The fields of `settings` that differ from the key as it is: what an update changes. */
function changedSettings (row: ApiKeyRow, settings: Partial<ApiKeySettings>): Partial<ApiKeySettings> {
  const current = toApiKey(row)
  const changed: Partial<ApiKeySettings> = {}
  if (settings.name !== undefined && settings.name !== current.name) changed.name = settings.name
  if (settings.description !== undefined && settings.description !== current.description) changed.description = settings.description
  if (settings.scopes !== undefined && !same(settings.scopes, current.scopes)) changed.scopes = settings.scopes
  if (settings.rateLimit !== undefined && !same(settings.rateLimit, current.rateLimit)) changed.rateLimit = settings.rateLimit
  if (settings.allowedIps !== undefined && !same(settings.allowedIps, current.allowedIps)) changed.allowedIps = settings.allowedIps
  if (settings.expiresAt !== undefined && settings.expiresAt?.getTime() !== row.expires_at?.getTime()) changed.expiresAt = settings.expiresAt
  return changed
}

/**
 * Routes /org/api-keys: an org admin creates, lists, reads, changes, rotates and revokes the org's
 * API keys (§5, §9). Each change writes its api_key.* event in its transaction, and after the
 * commit moves the org's freshness mark, so the next /public request on every instance sees it.
 */
const orgKeys: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  guardOrgAdminRoutes(app)

  /** A new key's secret, as given once to the caller and as stored. */
  function newKeySecret (): { key: string, prefix: string, keyHash: string } {
    const key = generateApiKey()
    return { key, prefix: apiKeyDisplayPrefix(key), keyHash: hashApiKey(config.apiKeyPepper, key) }
  }

  app.post('/api-keys', { schema: schemas.createApiKey }, async (request, reply) => {
    const { org, orgId, userId, actor } = adminContext(request)
    const settings: ApiKeySettings = { ...DEFAULT_SETTINGS, scopes: [...API_KEY_SCOPES], ...settingsOf(request.body, org, config) }
    const { key, prefix, keyHash } = newKeySecret()
    const apiKey = await app.db.transaction().execute(async trx => {
      const created = toApiKey(await insertApiKey(trx, { id: newId('key'), orgId, prefix, keyHash, createdBy: { type: 'user', id: userId }, ...settings }))
      await recordEvent(trx, { type: 'api_key.created', orgId, actor, target: { type: 'api_key', id: created.id }, data: { apiKey: created }, ip: request.ip })
      return created
    })
    request.log.info({ orgId, apiKeyId: apiKey.id }, 'API key created')
    return reply.code(201).send({ key, apiKey })
  })

  app.get('/api-keys', { schema: schemas.listApiKeys }, async (request) => {
    return { apiKeys: await listApiKeys(app.db, adminContext(request).orgId) }
  })

  app.get('/api-keys/:keyId', { schema: schemas.getApiKey }, async (request) => {
    const row = await findApiKey(app.db, adminContext(request).orgId, knownKeyId(request.params.keyId))
    if (row === undefined) throw new NotFound('API key not found')
    return { apiKey: toApiKey(row) }
  })

  app.patch('/api-keys/:keyId', { schema: schemas.updateApiKey }, async (request) => {
    const { org, orgId, actor } = adminContext(request)
    const keyId = knownKeyId(request.params.keyId)
    const settings = settingsOf(request.body, org, config)
    const result = await app.db.transaction().execute(async trx => {
      const row = await lockApiKey(trx, orgId, keyId)
      if (row === undefined) throw new NotFound('API key not found')
      if (row.revoked_at !== null) throw new Conflict('API key is revoked: it cannot be changed')
      const changed = changedSettings(row, settings)
      const changes = Object.keys(changed)
      if (changes.length === 0) return { apiKey: toApiKey(row), changes }
      const updated = await updateApiKeySettings(trx, row, changed, (expected) =>
        ({ type: 'api_key.updated', orgId, actor, target: { type: 'api_key', id: keyId }, data: { apiKey: toApiKey(expected), changes }, ip: request.ip }))
      return { apiKey: toApiKey(updated), changes }
    })
    if (result.changes.length > 0) {
      await app.publicCache.orgChanged(orgId)
      request.log.info({ orgId, apiKeyId: keyId, changes: result.changes }, 'API key updated')
    }
    return { apiKey: result.apiKey }
  })

  // preValidation: a bodiless POST (curl -X POST, fetch without a body) rotates with the default grace period.
  app.post('/api-keys/:keyId/rotate', {
    schema: schemas.rotateApiKey,
    preValidation: async (request) => { request.body ??= {} }
  }, async (request, reply) => {
    const { orgId, userId, actor } = adminContext(request)
    const keyId = knownKeyId(request.params.keyId)
    const gracePeriodSeconds = request.body.gracePeriodSeconds ?? DEFAULT_GRACE_PERIOD_SECONDS
    const { key, prefix, keyHash } = newKeySecret()
    const rotated = await app.db.transaction().execute(async trx => {
      // Locked until commit: of two rotations of one key, the second waits, then finds it rotated.
      const old = await lockApiKey(trx, orgId, keyId)
      if (old === undefined) throw new NotFound('API key not found')
      if (old.revoked_at !== null) throw new Conflict('API key is revoked: it cannot be rotated')
      if (old.rotated_to_id !== null) throw new Conflict(`API key was already rotated (to ${old.rotated_to_id}): rotate that key instead`)
      const now = new Date()
      if (!isApiKeyActive(old, now)) throw new Conflict('API key has expired: it cannot be rotated')
      // The successor keeps every setting and the expiry: rotating must never extend nor drop a key's lifetime.
      const { name, description, scopes, rateLimit, allowedIps } = toApiKey(old, now)
      const inherited: ApiKeySettings = { name, description, scopes, rateLimit, allowedIps, expiresAt: old.expires_at }
      const created = await insertApiKey(trx, { id: newId('key'), orgId, prefix, keyHash, createdBy: { type: 'user', id: userId }, rotatedFromId: old.id, ...inherited })
      const graceEnds = new Date(now.getTime() + gracePeriodSeconds * 1000)
      const retired = await retireRotatedApiKey(trx, gracePeriodSeconds === 0
        ? { keyId: old.id, rotatedToId: created.id, expiresAt: old.expires_at, revokedAt: now, revokedBy: userId }
        : { keyId: old.id, rotatedToId: created.id, expiresAt: old.expires_at !== null && old.expires_at < graceEnds ? old.expires_at : graceEnds, revokedAt: null, revokedBy: null })
      const apiKey = toApiKey(created)
      const previous = { id: retired.id, expiresAt: toApiKey(retired).expiresAt, revokedAt: toApiKey(retired).revokedAt }
      await recordEvent(trx, { type: 'api_key.rotated', orgId, actor, target: { type: 'api_key', id: old.id }, data: { apiKey, previous }, ip: request.ip })
      return { apiKey, previous }
    })
    // The old key's new end (or revocation) must be seen by every instance before this answers.
    await app.publicCache.orgChanged(orgId)
    request.log.info({ orgId, apiKeyId: rotated.apiKey.id, rotatedFromId: keyId, gracePeriodSeconds }, 'API key rotated')
    return reply.code(201).send({ key, ...rotated })
  })

  app.delete('/api-keys/:keyId', { schema: schemas.revokeApiKey }, async (request) => {
    const { orgId, userId, actor } = adminContext(request)
    const keyId = knownKeyId(request.params.keyId)
    const result = await app.db.transaction().execute(async trx => {
      const revoked = await revokeApiKey(trx, { orgId, keyId, revokedBy: userId })
      if (revoked.outcome === 'revoked') {
        await recordEvent(trx, { type: 'api_key.revoked', orgId, actor, target: { type: 'api_key', id: keyId }, data: { apiKey: toApiKey(revoked.row) }, ip: request.ip })
      }
      return revoked.outcome
    })
    if (result === 'missing') throw new NotFound('API key not found')
    // Revocation is immediate: no instance may accept the key once this response is sent.
    await app.publicCache.orgChanged(orgId)
    if (result === 'revoked') request.log.info({ orgId, apiKeyId: keyId }, 'API key revoked')
    return { message: 'API key revoked' }
  })
}

export default orgKeys
