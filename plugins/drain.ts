import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import net from 'node:net'
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
  let draining = false
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining) reply.header('connection', 'close')
    done(null, payload)
  })

  app.decorate('drain', async function drain (ms: number, settleMs = 5000) {
    draining = true
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
