import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto'
import { stat, readFile } from 'node:fs/promises'
import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import * as schemas from '../schemas/secret-scanning.ts'
import type { Config } from '../src/config.ts'
import { hashApiKey, isWellFormedApiKey } from '../src/api-key-format.ts'
import { NotFound, RateLimited, Unauthorized, Unavailable, ValidationFailed } from '../src/errors.ts'
import { findApiKeysByHashes, revokeLiveApiKeys } from '../db/queries/leaked-keys.ts'
import { toApiKey } from '../db/queries/api-keys.ts'
import { recordEvent, SYSTEM_ACTOR } from '../db/queries/events.ts'

const GITHUB_BODY_LIMIT = 1024 * 1024
const REPORTS_PER_MINUTE = 10
const InvalidSignature = (message: string) => Object.assign(new Unauthorized(message), { code: 'invalid_signature' })

interface Leak { key: string, source: string, url: string | null }
interface PublicKeys { mtimeMs: number, byIdentifier: Map<string, KeyObject> }

/**
 * Routes /secret-scanning/github and /api-keys/report (§13): a key found where it does not belong
 * stops working by itself. Neither needs X-Org-Slug: a leaked key names its org.
 */
const secretScanning: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  /**
   * Revokes the live keys among the reported strings and records each as `api_key.leaked`, in
   * one transaction; every org that lost a key is announced so no instance accepts it again.
   * Returns the digests of the strings that are keys of this service (live or not).
   */
  async function revokeLeaked (request: FastifyRequest, leaks: Leak[]): Promise<Set<string>> {
    const byHash = new Map<string, Leak>()
    for (const leak of leaks) {
      // A string that fails the checksum cannot be a key: no HMAC, no query.
      if (isWellFormedApiKey(leak.key)) byHash.set(hashApiKey(config.apiKeyPepper, leak.key), leak)
    }
    const known = await findApiKeysByHashes(app.db, [...byHash.keys()])
    const now = Date.now()
    const live = known.filter(row => row.revoked_at === null && (row.expires_at === null || row.expires_at.getTime() > now))
    if (live.length > 0) {
      const revoked = await app.db.transaction().execute(async trx => {
        const rows = await revokeLiveApiKeys(trx, live.map(row => row.id))
        for (const row of rows) {
          const leak = byHash.get(row.key_hash)
          // Only the reported keys were revoked: a row without its report is a defect, not a leak to record blank.
          if (leak === undefined) throw new Error(`revoked API key ${row.id} is not among the reported strings`)
          const { source, url } = leak
          await recordEvent(trx, {
            type: 'api_key.leaked',
            orgId: row.org_id,
            actor: SYSTEM_ACTOR,
            target: { type: 'api_key', id: row.id },
            data: { apiKey: toApiKey(row), source, url, actionTaken: 'revoked' },
            ip: request.ip
          })
        }
        return rows
      })
      for (const orgId of new Set(revoked.map(row => row.org_id))) await app.publicCache.orgChanged(orgId)
      for (const row of revoked) request.log.warn({ orgId: row.org_id, apiKeyId: row.id, prefix: row.prefix }, 'leaked API key revoked')
    }
    return new Set(known.map(row => row.key_hash))
  }

  await app.register(async function github (plain) {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>()
    let publicKeys: PublicKeys | null = null
    async function loadPublicKeys (file: string): Promise<PublicKeys> {
      const { mtimeMs } = await stat(file)
      if (publicKeys?.mtimeMs === mtimeMs) return publicKeys
      const document = JSON.parse(await readFile(file, 'utf8')) as { public_keys?: Array<{ key_identifier?: unknown, key?: unknown }> }
      const byIdentifier = new Map<string, KeyObject>()
      for (const entry of document.public_keys ?? []) {
        if (typeof entry.key_identifier === 'string' && typeof entry.key === 'string') byIdentifier.set(entry.key_identifier, createPublicKey(entry.key))
      }
      publicKeys = { mtimeMs, byIdentifier }
      return publicKeys
    }

    scope.addHook('onRequest', async (request) => {
      if (config.githubSecretScanningKeysFile === null) throw new NotFound(`Route ${request.method} ${request.url.split('?')[0]} not found`)
    })

    // The signature covers the raw bytes: verify them before anything parses them.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: GITHUB_BODY_LIMIT }, (request, body, done) => {
      checkSignature(request, body as Buffer).then(() => {
        let parsed: unknown
        try {
          parsed = JSON.parse((body as Buffer).toString('utf8'))
        } catch {
          return done(new ValidationFailed('Body is not valid JSON'), undefined)
        }
        done(null, parsed)
      }, error => done(error, undefined))
    })

    async function checkSignature (request: FastifyRequest, body: Buffer): Promise<void> {
      const identifier = request.headers['github-public-key-identifier']
      const signature = request.headers['github-public-key-signature']
      if (typeof identifier !== 'string' || typeof signature !== 'string') throw InvalidSignature('Missing Github-Public-Key-Identifier or Github-Public-Key-Signature header')
      let keys: PublicKeys
      try {
        keys = await loadPublicKeys(config.githubSecretScanningKeysFile as string)
      } catch (error) {
        request.log.error({ err: error, file: config.githubSecretScanningKeysFile }, 'GITHUB_SECRET_SCANNING_KEYS cannot be read')
        throw new Unavailable()
      }
      const publicKey = keys.byIdentifier.get(identifier)
      if (publicKey === undefined) throw InvalidSignature('Unknown Github-Public-Key-Identifier')
      if (!verify('sha256', body, publicKey, Buffer.from(signature, 'base64'))) throw InvalidSignature('Invalid Github-Public-Key-Signature')
    }

    scope.post('/secret-scanning/github', { schema: schemas.githubSecretScanning, bodyLimit: GITHUB_BODY_LIMIT }, async (request) => {
      const matches = request.body
      matches.forEach((match, index) => {
        storable(`body/${index}/url`, match.url)
        storable(`body/${index}/source`, match.source)
      })
      const keysOfOurs = await revokeLeaked(request, matches.map(match => ({ key: match.token, source: match.source ?? 'github', url: match.url ?? null })))
      const verdicts = matches.map(match => ({
        token_hash: createHash('sha256').update(match.token).digest('hex'),
        token_type: match.type,
        label: labelFor(isWellFormedApiKey(match.token) && keysOfOurs.has(hashApiKey(config.apiKeyPepper, match.token)))
      }))
      return verdicts
    })
  })

  const reportLimit = app.createRateLimit({ max: REPORTS_PER_MINUTE, timeWindow: 60_000, keyGenerator: request => `report:${request.ip}` })
  app.post('/api-keys/report', {
    schema: schemas.reportApiKey,
    // Counted before the body is read: malformed reports use up the budget too.
    onRequest: async (request, reply) => {
      const limit = await reportLimit(request)
      if (!limit.isAllowed && limit.isExceeded) {
        const retryAfter = Math.max(1, limit.ttlInSeconds)
        reply.header('retry-after', retryAfter)
        throw new RateLimited(`Too many reports; try again in ${retryAfter} seconds`)
      }
    }
  }, async (request, reply) => {
    const { key, source, url } = request.body
    storable('body.source', source)
    storable('body.url', url)
    await revokeLeaked(request, [{ key, source: source ?? 'report', url: url ?? null }])
    return reply.code(202).send({ message: 'Report received' as const })
  })
}

function labelFor (isKeyOfOurs: boolean): 'true_positive' | 'false_positive' {
  return isKeyOfOurs ? 'true_positive' : 'false_positive'
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

// jsonb (the audit event) holds neither U+0000 nor a lone surrogate.
function storable (field: string, value: string | undefined): void {
  if (value !== undefined && (value.includes('\u0000') || LONE_SURROGATE.test(value))) {
    throw new ValidationFailed(`${field} must be well-formed Unicode without U+0000`)
  }
}

export default secretScanning
