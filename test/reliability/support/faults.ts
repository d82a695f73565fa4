import type { Test } from 'tap'
import { endpointOf, withEndpoint } from './stores.ts'
import { TcpProxy } from './proxy.ts'
import type { Instance } from './instances.ts'
import type { HttpResponse } from './http.ts'

/** A proxy of the test's own in front of the store at `url`, and the URL that goes through it. */
export async function proxied (t: Test, url: string): Promise<{ proxy: TcpProxy, url: string }> {
  const proxy = await TcpProxy.start(endpointOf(url))
  t.teardown(() => proxy.close())
  return { proxy, url: withEndpoint(url, '127.0.0.1', proxy.port) }
}

export function assertUnavailable (t: Test, res: HttpResponse, what: string): void {
  t.equal(res.status, 503, `${what}: 503`)
  t.match(res.json(), { status: 'error', code: 'unavailable', message: String }, `${what}: the error envelope`)
  t.ok(res.headers['retry-after'] !== undefined, `${what}: Retry-After`)
}

/** Asks until `ok` holds; the app is expected to reconnect by itself within the attempts. */
export async function eventually (attempt: () => Promise<HttpResponse>, ok: (res: HttpResponse) => boolean, attempts = 80): Promise<HttpResponse> {
  let last: HttpResponse | undefined
  for (let i = 0; i < attempts; i++) {
    last = await attempt()
    if (ok(last)) return last
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  return last as HttpResponse
}

export function assertAlive (t: Test, instance: Instance): void {
  const alive = instance.child.exitCode === null && instance.child.signalCode === null
  t.ok(alive, `instance ${instance.name} stays up`, alive ? {} : { output: instance.lines.slice(-30).join('\n') })
}

/** Log lines that tell of a crash: an uncaught error that close-with-grace caught, or worse. */
export function crashLines (instance: Instance): string[] {
  return instance.lines.filter(line => /uncaught|second error|"level":60[,}]/i.test(line))
}
