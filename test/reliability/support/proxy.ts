import net from 'node:net'
import { once } from 'node:events'

/**
 * A TCP proxy of the test's own between the app and a store (PostgreSQL, Redis), so a test can
 * make the store vanish and come back without touching the shared server.
 *
 * - `cut()` destroys every open connection and stops listening: new connections are refused
 *   (ECONNREFUSED), as when the store's host is down.
 * - `restore()` listens again on the same port.
 */
export class TcpProxy {
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()
  private listeningPort = 0
  /** connections accepted since start, for tests that want to see the app came back */
  connections = 0

  private constructor (private readonly target: { host: string, port: number }) {
    this.server = net.createServer(client => this.pipe(client))
  }

  static async start (target: { host: string, port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target)
    await proxy.listen(0)
    return proxy
  }

  get port (): number { return this.listeningPort }
  get isCut (): boolean { return !this.server.listening }

  private async listen (port: number): Promise<void> {
    this.server.listen({ port, host: '127.0.0.1', exclusive: true })
    await once(this.server, 'listening')
    const address = this.server.address() as net.AddressInfo
    this.listeningPort = address.port
  }

  private pipe (client: net.Socket): void {
    this.connections++
    const upstream = net.connect(this.target.port, this.target.host)
    this.sockets.add(client)
    this.sockets.add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      this.sockets.delete(client)
      this.sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  }

  async cut (): Promise<void> {
    if (this.isCut) return
    const closed = new Promise<void>(resolve => this.server.close(() => resolve()))
    for (const socket of this.sockets) socket.resetAndDestroy()
    this.sockets.clear()
    await closed
  }

  async restore (): Promise<void> {
    if (!this.isCut) return
    await this.listen(this.listeningPort)
  }

  async close (): Promise<void> {
    await this.cut()
  }
}
