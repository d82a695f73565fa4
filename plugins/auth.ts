import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { CookieSerializeOptions } from '@fastify/cookie'
import type { Config } from '../src/config.ts'
import * as schemas from '../schemas/auth.ts'
import { ACCESS_TOKEN_TTL_SECONDS, accessTokenFrom, guardedAuth } from './auth-jwt.ts'
import { guardedOrg } from './org-slug.ts'
import { findUserByEmail, upgradePasswordHash } from '../db/queries/users.ts'
import { findMembership } from '../db/queries/memberships.ts'
import { findLiveSessionPrincipal, insertSession, revokeSession, type SessionPrincipal } from '../db/queries/sessions.ts'
import { consumeRefreshToken, findRefreshToken, insertRefreshToken } from '../db/queries/refresh-tokens.ts'
import { recordEvent, SYSTEM_ACTOR, userActor } from '../db/queries/events.ts'
import { dummyPasswordHash, hashPassword, needsRehash, verifyPassword } from '../src/passwords.ts'
import { sha256Hex } from '../src/secrets.ts'
import { newId } from '../src/ids.ts'
import { Forbidden, InvalidCredentials, RateLimited, Unauthorized, ValidationFailed } from '../src/errors.ts'
import { isStorable, NOT_STORABLE } from '../src/unicode.ts'
import { clientKey, type FailureReservation } from './failure-limiter.ts'

export const REFRESH_TOKEN_TTL_SECONDS = 7 * 86400
// Rotation keeps a session alive while it is used, but never beyond this after the login.
export const SESSION_MAX_AGE_SECONDS = 30 * 86400

const INVALID_REFRESH = 'Invalid or expired refresh token'

function newRefreshToken (): string {
  return randomBytes(32).toString('base64url')
}

/**
 * How a session is started and its tokens handed out: login's answer and cookies. Shared by
 * login, refresh and accept-invite (§12 "the same shape and cookies as login").
 */
export function sessionTokens (app: FastifyInstance, config: Config) {
  const cookieOptions: CookieSerializeOptions = { httpOnly: true, secure: config.cookieSecure, sameSite: 'lax', path: '/' }

  async function issueTokens (reply: FastifyReply, input: { sessionId: string, sessionExpiresAt: Date, orgId: string, slug: string, principal: SessionPrincipal }, trx = app.db) {
    const refreshToken = newRefreshToken()
    const refreshExpiresAt = new Date(Math.min(Date.now() + REFRESH_TOKEN_TTL_SECONDS * 1000, input.sessionExpiresAt.getTime()))
    await insertRefreshToken(trx, { tokenHash: sha256Hex(refreshToken), sessionId: input.sessionId, expiresAt: refreshExpiresAt })
    const { user, membership } = input.principal
    const accessToken = app.issueAccessToken({ userId: user.id, orgId: input.orgId, slug: input.slug, role: membership.role, sessionId: input.sessionId })
    reply.setCookie('access_token', accessToken, { ...cookieOptions, maxAge: ACCESS_TOKEN_TTL_SECONDS })
    reply.setCookie('refresh_token', refreshToken, { ...cookieOptions, maxAge: Math.floor((refreshExpiresAt.getTime() - Date.now()) / 1000) })
    return { accessToken, refreshToken, user, membership: { role: membership.role, status: membership.status } }
  }

  /** A new session of the principal in the org, in the caller's transaction, recorded as user.login; answers as login does. */
  async function startSession (trx: Kysely<Database>, reply: FastifyReply, request: FastifyRequest, input: { org: { id: string, slug: string }, principal: SessionPrincipal }) {
    const sessionId = newId('ses')
    const sessionExpiresAt = new Date(Date.now() + SESSION_MAX_AGE_SECONDS * 1000)
    const agentHeader = request.headers['user-agent']
    // Stored in the session and its audit event: a header the stores cannot hold is refused (§1).
    if (agentHeader !== undefined && !isStorable(agentHeader)) throw new ValidationFailed(`headers.user-agent ${NOT_STORABLE}`)
    const userAgent = agentHeader?.slice(0, 512) ?? null
    const { user } = input.principal
    await insertSession(trx, { id: sessionId, orgId: input.org.id, userId: user.id, expiresAt: sessionExpiresAt, ip: request.ip, userAgent })
    const who = { id: user.id, email: user.email }
    await recordEvent(trx, { type: 'user.login', orgId: input.org.id, actor: userActor(who), target: { type: 'user', id: user.id }, data: { user: who, sessionId, userAgent }, ip: request.ip })
    const body = await issueTokens(reply, { sessionId, sessionExpiresAt, orgId: input.org.id, slug: input.org.slug, principal: input.principal }, trx)
    return { sessionId, body }
  }

  return { cookieOptions, issueTokens, startSession }
}

/** Routes /auth/*: login, refresh with rotation, logout, me. */
const auth: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  app.addHook('onRequest', app.requireOrg)

  const { cookieOptions, issueTokens, startSession } = sessionTokens(app, config)

  function refreshTokenFrom (request: FastifyRequest): string | null {
    const fromBody = (request.body as { refreshToken?: unknown } | undefined)?.refreshToken
    if (typeof fromBody === 'string' && fromBody !== '') return fromBody
    const fromCookie = request.cookies?.refresh_token
    return typeof fromCookie === 'string' && fromCookie !== '' ? fromCookie : null
  }

  // A body is optional where a cookie can carry the token: let a bodiless POST validate.
  async function emptyBodyIsAnObject (request: FastifyRequest): Promise<void> {
    request.body ??= {}
  }

  /**
   * Reserves this attempt in both login budgets before the password is checked (atomically:
   * concurrent guesses cannot all pass a check made before any of them failed), or refuses it
   * with 429. Returns the reservations, which count as failures unless released.
   */
  async function reserveAttempt (reply: FastifyReply, emailKey: string, ip: string): Promise<FailureReservation[]> {
    const [perEmail, perIp] = await Promise.all([
      app.failureLimiter.reserve('login', emailKey),
      app.failureLimiter.reserve('loginIp', ip)
    ])
    if (!perEmail.blocked && !perIp.blocked) return [perEmail, perIp]
    // Refused before any password was tried: what one budget held is not a failure.
    await Promise.all([perEmail.release(), perIp.release()])
    const retryAfter = Math.max(perEmail.retryAfterSeconds, perIp.retryAfterSeconds)
    app.metrics.rateLimited(perEmail.blocked ? 'login' : 'login_ip')
    reply.header('retry-after', String(retryAfter))
    throw new RateLimited(`Too many failed login attempts; try again in ${retryAfter} seconds`)
  }

  /** A hash made with older parameters is replaced at login, the only time the password is known. A failure only delays it. */
  async function upgradeHash (request: FastifyRequest, userId: string, stored: string, password: string): Promise<void> {
    try {
      if (await upgradePasswordHash(app.db, userId, stored, await hashPassword(password))) request.log.info({ userId }, 'password hash upgraded to the current parameters')
    } catch (error) {
      request.log.warn({ err: error, userId }, 'password hash upgrade failed; retried at the next login')
    }
  }

  app.post('/login', { schema: schemas.login }, async (request, reply) => {
    const org = guardedOrg(request)
    const email = request.body.email.trim().toLowerCase()
    // Per client address: an IPv4 address, an IPv6 /64 (one host often holds a whole /64).
    const emailKey = `${email}|${clientKey(request.ip)}`
    const reservations = await reserveAttempt(reply, emailKey, request.ip)

    let user: Awaited<ReturnType<typeof findUserByEmail>>
    let passwordOk = false
    try {
      user = await findUserByEmail(app.db, email)
      // An unknown email costs one scrypt too, so timing does not tell which emails exist.
      passwordOk = await verifyPassword(request.body.password, user?.password_hash ?? await dummyPasswordHash())
    } catch (error) {
      // Not the client's failure (a store is down): give the attempt back.
      await Promise.all(reservations.map(reservation => reservation.release()))
      throw error
    }
    // A wrong email or password keeps both reservations: they are the failures counted.
    if (user === undefined || !passwordOk) throw new InvalidCredentials()
    await Promise.all([app.failureLimiter.reset('login', emailKey), reservations[1].release()])
    if (needsRehash(user.password_hash)) await upgradeHash(request, user.id, user.password_hash, request.body.password)

    const membership = await findMembership(app.db, org.id, user.id)
    if (membership === undefined) throw new Forbidden('You are not a member of this organization')
    if (membership.status !== 'active') throw new Forbidden('Your membership in this organization is not active')

    const principal: SessionPrincipal = {
      user: { id: user.id, name: user.name, email: user.email, role: user.role, isEmailVerified: user.is_email_verified },
      membership: { role: membership.role, status: membership.status, joinedAt: membership.joined_at.toISOString() }
    }
    const { sessionId, body } = await app.db.transaction().execute(trx => startSession(trx, reply, request, { org, principal }))
    request.log.info({ userId: user.id, orgId: org.id, sessionId }, 'user logged in')
    return body
  })

  app.post('/refresh', { schema: schemas.refresh, preValidation: emptyBodyIsAnObject }, async (request, reply) => {
    const org = guardedOrg(request)
    const token = refreshTokenFrom(request)
    if (token === null) throw new Unauthorized('Refresh token required: send the refresh_token cookie or { "refreshToken" }')
    const tokenHash = sha256Hex(token)
    const presented = await findRefreshToken(app.db, tokenHash)
    // A token of another org is refused without touching it: it may be fine where it belongs.
    if (presented === null || presented.orgId !== org.id) throw new Unauthorized(INVALID_REFRESH)
    if (presented.used) {
      await revokeForReuse(request, presented.sessionId, presented.userId)
      throw new Unauthorized(INVALID_REFRESH)
    }
    if (presented.dead) throw new Unauthorized(INVALID_REFRESH)

    const principal = await findLiveSessionPrincipal(app.db, { sessionId: presented.sessionId, userId: presented.userId, orgId: org.id })
    if (principal === null) throw new Unauthorized(INVALID_REFRESH)
    if (principal.membership.status !== 'active') throw new Forbidden('Your membership in this organization is not active')

    const body = await app.db.transaction().execute(async trx => {
      if (!await consumeRefreshToken(trx, tokenHash)) return null
      return await issueTokens(reply, { sessionId: presented.sessionId, sessionExpiresAt: presented.sessionExpiresAt, orgId: org.id, slug: org.slug, principal }, trx)
    })
    if (body === null) {
      // Another request spent this token between our read and our write: that is reuse too.
      await revokeForReuse(request, presented.sessionId, presented.userId)
      throw new Unauthorized(INVALID_REFRESH)
    }
    return body
  })

  async function revokeForReuse (request: FastifyRequest, sessionId: string, userId: string): Promise<void> {
    const revoked = await app.db.transaction().execute(async trx => {
      if (!await revokeSession(trx, sessionId, 'refresh_token_reuse')) return false
      await recordEvent(trx, { type: 'session.revoked', orgId: guardedOrg(request).id, actor: SYSTEM_ACTOR, target: { type: 'session', id: sessionId }, data: { reason: 'refresh_token_reuse', userId }, ip: request.ip })
      return true
    })
    if (revoked) {
      await app.publicCache.orgChanged(guardedOrg(request).id)
      request.log.warn({ sessionId, userId }, 'refresh token reused: session revoked')
    }
  }

  app.post('/logout', { schema: schemas.logout, preValidation: emptyBodyIsAnObject }, async (request, reply) => {
    const org = guardedOrg(request)
    const sessionId = await sessionToEnd(request, org.id)
    if (sessionId !== null && await revokeSession(app.db, sessionId, 'logout')) {
      await app.publicCache.orgChanged(org.id)
      request.log.info({ sessionId, orgId: org.id }, 'user logged out')
    }
    for (const name of ['access_token', 'refresh_token', 'partial_token']) reply.clearCookie(name, cookieOptions)
    return { message: 'Logged out successfully' }
  })

  /** The session named by a valid access token, else by a refresh token, of this org. */
  async function sessionToEnd (request: FastifyRequest, orgId: string): Promise<string | null> {
    const accessToken = accessTokenFrom(request)
    const claims = accessToken === null ? null : app.verifyAccessToken(accessToken)
    if (claims !== null && claims.org === orgId) return claims.sid
    const refreshToken = refreshTokenFrom(request)
    if (refreshToken === null) return null
    const presented = await findRefreshToken(app.db, sha256Hex(refreshToken))
    return presented !== null && presented.orgId === orgId ? presented.sessionId : null
  }

  await app.register(async function authenticated (scope) {
    scope.addHook('onRequest', app.requireUser)

    scope.get('/me', { schema: schemas.me }, async (request) => {
      const { user, membership } = guardedAuth(request)
      return { user, membership }
    })
  })
}

export default auth
