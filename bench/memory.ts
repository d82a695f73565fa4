// npm run bench:memory: only the memory part of `npm run bench` (bench/lib/memory.ts), without the
// throughput rounds: build, first start on an empty database, idle, load, restart. Prints the
// memory table and the req/s of each load run; appends nothing to bench/RESULTS.md.
import { machineInfo, pinThisProcess } from './lib/machine.ts'
import { buildServer } from './lib/build.ts'
import { measureMemory, renderMemory } from './lib/memory.ts'
import { benchSettings, commandLine } from './lib/settings.ts'
import { benchStores } from './lib/stores.ts'

const settings = benchSettings(process.env)
const pinning = pinThisProcess()
buildServer()
const stores = await benchStores(process.env)
try {
  console.log(`bench:memory: ${stores.label}; ${pinning.note}; load average ${machineInfo().load}`)
  const memory = await measureMemory(stores, pinning.serverCpu, { ...settings, targets: process.env.BENCH_TARGETS })
  console.log(`\n${commandLine('bench:memory', process.env)}\n`)
  console.log(renderMemory(memory, stores.env.DATABASE_URL !== undefined).join('\n'))
} finally {
  await stores.drop()
}
