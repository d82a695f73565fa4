// The yardstick: Fastify with nothing but a route, on the same log level as the app.
import Fastify from 'fastify'
import { addBareRoutes, serveBareProcess } from './lib/bare-routes.ts'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
addBareRoutes(app)
await serveBareProcess(app)
