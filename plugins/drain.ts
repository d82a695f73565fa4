import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import net from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The first steps of a graceful shutdown, before close(). For `ms` the server keeps
     * answering, every response with `Connection: close`, so a load balancer has time to stop
     * sending and kept-alive clients move off after an answer. Then it stops accepting and waits
     * (at most `settleMs`) for the open connections to finish their requests and close.
     */
    drain: (ms: number, settleMs?: number) => Promise<void>
  }
}

// A connection that has sent nothing for this long is idle, not a request on its way.
const IDLE_AFTER_MS = 1000

async function drain (app: FastifyInstance): Promise<void> {
  // Added only when draining starts, ahead of Fastify's own listener: until then no request pays
  // for it (an onSend hook would cost every response a trip through the hook runner). Node
  // answers a response that may not keep its connection alive with Connection: close.
  const closeAfterAnswer = (_request: IncomingMessage, response: ServerResponse): void => { response.shouldKeepAlive = false }

  app.decorate('drain', async function drain (ms: number, settleMs = 5000) {
    if (!app.server.listeners('request').includes(closeAfterAnswer)) app.server.prependListener('request', closeAfterAnswer)
    await sleep(ms)
    const server = app.server
    if (!server.listening) return
    const closed = once(server, 'close')
    // Stop accepting through net.Server's close, not http.Server's: the latter also closes
    // "idle" connections at once, and a connection accepted a moment ago whose request is
    // not parsed yet counts as idle there; its client would see a reset.
    net.Server.prototype.close.call(server)
    const idle = setInterval(() => server.closeIdleConnections(), IDLE_AFTER_MS)
    try {
      await Promise.race([closed, sleep(settleMs)])
    } finally {
      clearInterval(idle)
    }
  })
}

export default fp(drain, { name: 'drain', fastify: '5.x' })
