import autocannon from 'autocannon'

export interface LoadRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
}

export interface LoadResult {
  rps: number
  p50: number
  p99: number
  responses: number
  /** requests sent, including those still in flight when the run stopped: the server handled them all */
  sent: number
  /** responses that were not 2xx, plus connection errors and timeouts: a run with any is suspect */
  failures: number
}

export async function runLoad (request: LoadRequest, settings: { connections: number, seconds: number }): Promise<LoadResult> {
  const result = await autocannon({
    url: request.url,
    method: request.method,
    headers: request.body === undefined ? request.headers : { 'content-type': 'application/json', ...request.headers },
    body: request.body,
    connections: settings.connections,
    duration: settings.seconds
  })
  const responses = result['1xx'] + result['2xx'] + result['3xx'] + result['4xx'] + result['5xx']
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    responses,
    sent: result.requests.sent,
    failures: result.non2xx + result.errors + result.timeouts
  }
}

export function median (values: number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** A server's CPU milliseconds over the requests sent, in µs per response. */
export function microsPerResponse (cpuMs: number, sent: number): number {
  return 1000 * cpuMs / Math.max(1, sent)
}

/** Requests still in flight when autocannon stopped finish (and count their queries) before the next reading. */
export async function settle (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 250))
}
