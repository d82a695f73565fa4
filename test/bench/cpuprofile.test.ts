import t from 'tap'
import { summarizeProfile, type CpuProfile } from '../../bench/lib/cpuprofile.ts'

const app = new URL('../../plugins/api-key.ts', import.meta.url).href
const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber, columnNumber: 0 })

// root → requireApiKey (app) → Hmac (node); plus idle. Samples 1 ms apart from t = 1000 µs.
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 4] },
    { id: 2, callFrame: frame('requireApiKey', app, 0), children: [3] },
    { id: 3, callFrame: frame('Hmac', 'node:internal/crypto/hash', 160) },
    { id: 4, callFrame: frame('(idle)') }
  ],
  startTime: 1000,
  endTime: 7000,
  samples: [3, 3, 2, 4, 3, 3],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000]
}

t.test('self time per function, idle apart, and the app functions by inclusive time', async t => {
  const summary = summarizeProfile(profile)
  t.equal(summary.idleMicros, 1000)
  t.equal(summary.busyMicros, 4000, 'the last sample has no duration')
  t.same(summary.functions.map(f => [f.name, f.owner, f.micros]), [['Hmac', 'node', 3000], ['requireApiKey', 'plugins/api-key.ts', 1000]])
  t.same(summary.appInclusive.map(f => [f.name, f.location, f.micros]), [['requireApiKey', 'plugins/api-key.ts:1', 4000]])
})

t.test('only samples inside the window count, and lines map through the source map', async t => {
  const summary = summarizeProfile(profile, { from: 2500, to: 4500, originalLine: () => 41 })
  t.equal(summary.busyMicros, 1000)
  t.equal(summary.idleMicros, 1000)
  t.equal(summary.functions[0].location, 'plugins/api-key.ts:42')
})
