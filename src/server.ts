import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig } from './config.ts'

let loaded
try {
  loaded = loadConfig(process.env)
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message)
    process.exit(1)
  }
  throw error
}
const { config, generatedSecrets, newSecrets, secretsFile, warnings } = loaded

// A person at a terminal reads pretty lines; anything else (a log shipper, a file, production) gets JSON.
const app = await buildApp(config, { prettyLogs: process.stdout.isTTY === true && config.nodeEnv !== 'production' })

// On a signal: keep answering for a moment with `Connection: close` (busy kept-alive clients
// move off without a reset, and a load balancer has time to stop sending), then stop listening,
// finish the requests in flight, and close the stores (pending API-key last-use times are
// written on the way). After an uncaught error there is nothing to wait for.
const DRAIN_MS = 1500

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err !== undefined) {
    app.log.error({ err }, 'closing after an uncaught error')
  } else {
    app.log.info({ signal }, 'shutting down')
    await app.drain(DRAIN_MS)
  }
  await app.close()
})

try {
  await app.listen({ port: config.port, host: config.host })
} catch (error) {
  app.log.fatal({ err: error }, 'could not start')
  process.exit(1)
}

const address = app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : config.port
const base = `http://${config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host}:${port}`
const lines = [
  '',
  `tenantkey is listening on ${base}`,
  `  API:       ${base}/api/v1`,
  `  Docs:      ${base}/docs`,
  `  Database:  ${config.databaseUrl === null ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL (DATABASE_URL)'}`,
  `  Redis:     ${config.redisUrl === null ? 'off (rate limits and caches in this process)' : 'on (REDIS_URL)'}`
]
if (generatedSecrets.length > 0) {
  lines.push(`  Warning:   ${generatedSecrets.join(', ')} not set; using generated values kept in ${secretsFile} (set them in production)`)
}
// The generated admin token is shown once, on the start that made it; a log or a terminal
// scroll-back of every later start must not hold it.
if (newSecrets.includes('ADMIN_TOKEN') && config.adminToken !== null) {
  lines.push(`  Admin token (ADMIN_TOKEN), shown this once: ${config.adminToken}`)
} else if (generatedSecrets.includes('ADMIN_TOKEN')) {
  lines.push(`  Admin token: the generated ADMIN_TOKEN in ${secretsFile}`)
} else if (config.adminToken === null) {
  lines.push('  Admin API: disabled (ADMIN_TOKEN unset in production)')
}
for (const warning of warnings) lines.push(`  Warning:   ${warning}`)
process.stdout.write(lines.join('\n') + '\n\n')
