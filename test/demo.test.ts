import { readFileSync } from 'node:fs'
import t from 'tap'
import { build, ADMIN_TOKEN } from './helper.ts'
import { ContractMismatch, STEPS, walkThrough } from '../scripts/demo.ts'

// `npm run demo` runs these steps against a server process (.ci/run does); here they run against
// the app listening in this process, which costs no extra server start.
t.test('the demo walk-through passes against the real app over HTTP', async t => {
  const app = await build(t)
  const origin = await app.listen({ host: '127.0.0.1', port: 0 })
  const lines: string[] = []
  const steps = await walkThrough({ origin, adminToken: ADMIN_TOKEN, log: line => lines.push(line) })
  t.equal(steps, STEPS.length, 'every step ran')
  t.match(lines.join('\n'), /Verified user: ada@acme\.test/)
  t.match(lines.at(-1), /401 {2}Invalid API key/)
})

t.test('a difference from the contract stops the walk-through, naming the step and what differed', async t => {
  const app = await build(t)
  const origin = await app.listen({ host: '127.0.0.1', port: 0 })
  const failure = await walkThrough({ origin, adminToken: 'not-the-admin-token-0123456789' }).catch((error: unknown) => error)
  t.ok(failure instanceof ContractMismatch)
  t.match((failure as Error).message, /step 1 \(POST \/admin\/orgs\)[\s\S]*status: expected 201, got 401[\s\S]*body\.status: expected "success", got "error"/)
})

/** Method, path and body of each curl command in the README section "From clone to a verified token". */
function readmeSteps (): Array<{ method: string, path: string, body?: unknown }> {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const start = readme.indexOf('## From clone to a verified token')
  if (start === -1) throw new Error('README has no section "From clone to a verified token"')
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end === -1 ? undefined : end).replace(/\\\n\s*/g, ' ')
  const commands = section.split('\n').flatMap(line => line.split('$(')).filter(part => /^\s*curl /.test(part))
  return commands.map(command => {
    const method = /-X (\w+)/.exec(command)?.[1] ?? 'GET'
    const path = /\$TK(\/\S*)/.exec(command)?.[1] ?? '?'
    const single = / -d '([^']*)'/.exec(command)?.[1]
    const double = / -d "((?:[^"\\]|\\.)*)"/.exec(command)?.[1]?.replace(/\\"/g, '"')
    const raw = single ?? double
    return raw === undefined ? { method, path } : { method, path, body: JSON.parse(raw) }
  })
}

t.test('the README walk-through shows the demo\'s steps, in the same order, with the same bodies', async t => {
  t.same(readmeSteps(), STEPS)
})
