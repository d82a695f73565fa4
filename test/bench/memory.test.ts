import t from 'tap'
import { startCommand } from '../../bench/lib/build.ts'
import { readProcessMemory, renderMemory, type MemoryReport } from '../../bench/lib/memory.ts'

const MB = 1_000_000
const report = (firstStart: number, restart: number, peakUnderLoad: number): MemoryReport => ({
  command: 'node --max-semi-space-size=8 dist/src/server.js',
  idleSeconds: 5,
  firstStart: { rss: firstStart * MB, peak: (firstStart + 10) * MB },
  restart: { rss: restart * MB, peak: (restart + 10) * MB },
  underLoad: { rss: (peakUnderLoad - 20) * MB, peak: peakUnderLoad * MB },
  load: { labels: ['GET /public/org'], seconds: 3, connections: 50 }
})

t.test('the resident and peak sizes of a process, from /proc', async t => {
  const memory = readProcessMemory(process.pid)
  const rss = process.memoryUsage.rss()
  t.ok(Math.abs(memory.rss - rss) < 50 * MB, `VmRSS ${memory.rss} is this process's RSS (${rss})`)
  t.ok(memory.peak >= memory.rss, 'the peak is at least the resident size')
})

t.test('embedded: idle after a first start and after a restart, each at most 450 MB', async t => {
  const lines = renderMemory(report(440, 300, 900), false).join('\n')
  t.match(lines, /\| idle after a first start \(empty database\) \| 440 MB \| 450 MB \|/)
  t.match(lines, /idle after a first start ≤ 450 MB \(440 MB\) met; idle after a restart ≤ 450 MB \(300 MB\) met\./)
  t.notMatch(lines, /peak under load ≤/, 'no peak target for the embedded database')
  t.match(renderMemory(report(460, 300, 300), false).join('\n'), /idle after a first start ≤ 450 MB \(460 MB\) \*\*missed\*\*/)
})

t.test('PostgreSQL: idle at most 150 MB, peak under load at most 250 MB', async t => {
  t.match(renderMemory(report(140, 150, 250), true).join('\n'), /≤ 150 MB \(140 MB\) met; idle after a restart ≤ 150 MB \(150 MB\) met; peak under load ≤ 250 MB \(250 MB\) met\./)
  const missed = renderMemory(report(151, 120, 251), true).join('\n')
  t.match(missed, /idle after a first start ≤ 150 MB \(151 MB\) \*\*missed\*\*/)
  t.match(missed, /peak under load ≤ 250 MB \(251 MB\) \*\*missed\*\*/)
})

t.test('the memory is measured on what npm start runs, V8 flags included', async t => {
  t.same(startCommand('node --max-semi-space-size=8 dist/src/server.js'), [process.execPath, '--max-semi-space-size=8', 'dist/src/server.js'])
  t.same(startCommand('node dist/src/server.js'), [process.execPath, 'dist/src/server.js'])
  t.throws(() => startCommand('tsx src/server.ts'), /not `node \[flags\] dist\/src\/server.js`/)
  t.match(renderMemory(report(140, 140, 200), true)[0], /^Memory of `node --max-semi-space-size=8 dist\/src\/server.js` /)
})
