// The real app, as `npm start` builds it, in a process of its own for bench/run.ts and
// bench/profile.ts. Configured by the environment the orchestrator passes.
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { benchOnly } from '../db/queries/events.ts'
import { processMemory, serveIpc, type ServerStats } from './lib/ipc.ts'

const { config } = loadConfig(process.env)
const app = await buildApp(config)
await app.listen({ host: config.host, port: config.port })
const address = app.server.address()

serveIpc({
  // bench:audit runs a write route with and without its event to measure what recording costs.
  skipEventRecording: (skip: boolean) => { benchOnly.skipEventRecording = skip },
  stats: (): ServerStats => ({ queries: app.database.stats.queries, ...processMemory() }),
  // Microseconds on the clock V8's CPU profiles use, to cut a profile to the measured window.
  clock: () => Number(process.hrtime.bigint() / 1000n),
  exit: async () => {
    await app.close()
    // After the reply is sent: a normal exit is what makes --cpu-prof write its file.
    setImmediate(() => process.exit(0))
  }
}, { port: typeof address === 'object' && address !== null ? address.port : config.port })
