import type { FastifyInstance, LightMyRequestResponse } from 'fastify'

// Small request helpers shared by the /auth test files.

export const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
export const ID = (prefix: string): RegExp => new RegExp(`^${prefix}_[0-9A-HJKMNP-TV-Z]{26}$`)

let ipCounter = 0
/** A client address of its own per login, so the login throttle never interferes. */
export function nextIp (): string {
  ipCounter++
  return `10.7.${Math.floor(ipCounter / 250)}.${ipCounter % 250 + 1}`
}

export function login (app: FastifyInstance, slug: string, email: string, password: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-org-slug': slug }, payload: { email, password }, remoteAddress: nextIp() })
}
export function refresh (app: FastifyInstance, slug: string, refreshToken: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { 'x-org-slug': slug }, payload: { refreshToken } })
}
export function me (app: FastifyInstance, slug: string, accessToken: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { 'x-org-slug': slug, authorization: `Bearer ${accessToken}` } })
}
export function claimsOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
}
export interface ParsedCookie { name: string, value: string, maxAge?: number, path?: string, httpOnly?: boolean, secure?: boolean, sameSite?: string, expires?: Date }
export function cookie (res: LightMyRequestResponse, name: string): ParsedCookie | undefined {
  return (res.cookies as ParsedCookie[]).find(c => c.name === name)
}
