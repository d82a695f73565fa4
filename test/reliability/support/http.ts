import http from 'node:http'
import { noteRequest, noteResponse } from '../../log-secrets.ts'
import { assertKeepsContract, committedContractChecker } from '../../support/contract.ts'

export interface HttpResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  json: () => any
}

export interface HttpRequest {
  method?: string
  path: string
  headers?: Record<string, string>
  body?: unknown
  agent?: http.Agent
}

/**
 * One HTTP request over a real socket. Transport failures (a reset, a refused connection)
 * reject with the socket error, so a test can tell them from an HTTP error status. The answer
 * is checked against the committed OpenAPI document (test/support/contract.ts): the servers
 * run in other processes, and openapi.test.ts keeps openapi.json equal to what they serve.
 */
export function request (base: string, options: HttpRequest): Promise<HttpResponse> {
  const url = new URL(options.path, base)
  const payload = options.body === undefined ? undefined : (typeof options.body === 'string' ? options.body : JSON.stringify(options.body))
  const headers: Record<string, string> = { ...options.headers }
  if (payload !== undefined) {
    headers['content-type'] ??= 'application/json'
    headers['content-length'] = String(Buffer.byteLength(payload))
  }
  noteRequest({ path: options.path, headers, body: payload })
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers, agent: options.agent }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        noteResponse({ headers: res.headers, body })
        try {
          assertKeepsContract(committedContractChecker(), { method: options.method ?? 'GET', url: options.path, status: res.statusCode ?? 0, headers: res.headers, body })
        } catch (error) {
          reject(error)
          return
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) })
      })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

/** Runs tasks with at most `limit` in flight, keeping results in order. */
export async function pool<T> (count: number, limit: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++
      results[index] = await task(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker))
  return results
}
