import type { FastifyInstance } from 'fastify'

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  url: string
  headers?: Record<string, string>
  body?: unknown
}

export interface HttpResponse {
  status: number
  body: any
}

/** The one thing the bootstrap needs: send a JSON request, get status and parsed body. */
export type HttpClient = (request: HttpRequest) => Promise<HttpResponse>

/** Over the network, as the benchmark sends its load. */
export function fetchClient (baseUrl: string): HttpClient {
  return async ({ method, url, headers = {}, body }) => {
    const response = await fetch(baseUrl + url, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await response.text()
    return { status: response.status, body: parseJson(text) }
  }
}

/** In process, for the bootstrap's test. */
export function injectClient (app: FastifyInstance): HttpClient {
  return async ({ method, url, headers = {}, body }) => {
    const response = await app.inject({ method, url, headers, ...(body !== undefined && { payload: body as object }) })
    return { status: response.statusCode, body: parseJson(response.body) }
  }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
