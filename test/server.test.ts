import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { once } from 'node:events'
import t from 'tap'
import type { TestContext } from './helper.ts'
import { request } from './reliability/support/http.ts'

// The real entry point as a person starts it: the start-up summary, LOG_LEVEL, and pretty
// lines on a terminal (a pseudo-terminal from util-linux `script`) but JSON anywhere else.
t.setTimeout(600_000) // starting a server process on a loaded two-core machine can take a while

const root = new URL('..', import.meta.url).pathname

interface Running { child: ChildProcess, output: () => string, port: number }

async function start (t: TestContext, env: Record<string, string>, tty: boolean): Promise<Running> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tenantkey-server-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const fullEnv = { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', ...env }
  const command = 'node --import tsx src/server.ts'
  const child = tty
    ? spawn('script', ['-qefc', command, '/dev/null'], { cwd: root, env: fullEnv, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: root, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  let port = 0
  child.stdout?.on('data', chunk => { output += String(chunk) })
  child.stderr?.on('data', chunk => { output += String(chunk) })
  t.teardown(async () => {
    // `script` runs the server in a session of its own on the pseudo-terminal, where a signal to
    // `script` does not reach it, and once `script` has gone the server is no longer its
    // descendant: stop the process listening on the server's port and every descendant
    // (servers of these cases were found spinning long after their test had ended).
    if (tty) {
      for (const pid of [...listeningOn(port), ...descendants(child.pid as number)]) signal(pid, 'SIGKILL')
    }
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  const match = await waitFor(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output), () => output, child)
  port = Number(match[1])
  return { child, output: () => output, port }
}

function listeningOn (port: number): number[] {
  if (port === 0) return []
  const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' })
  return [...out.matchAll(/pid=(\d+)/g)].map(match => Number(match[1]))
}

function descendants (root: number): number[] {
  const children = new Map<number, number[]>()
  for (const line of execFileSync('ps', ['-eo', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n')) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number)
    children.set(ppid, [...(children.get(ppid) ?? []), pid])
  }
  const found: number[] = []
  const visit = (pid: number): void => { for (const child of children.get(pid) ?? []) { found.push(child); visit(child) } }
  visit(root)
  return found
}

function signal (pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {} // already gone
}

async function waitFor<T> (probe: () => T | null | undefined | false, output: () => string, child: ChildProcess): Promise<T> {
  for (;;) {
    const found = probe()
    if (found !== null && found !== undefined && found !== false) return found
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}):\n${output()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

const jsonLines = (output: string): Array<Record<string, unknown>> =>
  output.split('\n').filter(line => line.startsWith('{')).map(line => JSON.parse(line))

t.test('without a terminal, logs are JSON lines after one readable start-up summary', async t => {
  const server = await start(t, { LOG_LEVEL: 'info' }, false)
  t.equal((await request(`http://127.0.0.1:${server.port}`, { path: '/health' })).status, 200)
  await waitFor(() => server.output().includes('request completed'), server.output, server.child)
  const output = server.output()
  for (const line of ['API:       http://127.0.0.1:', 'Docs:      http://127.0.0.1:', 'Database:  embedded PGlite in', 'Redis:     off']) t.match(output, line)
  const completed = jsonLines(output).find(line => line.msg === 'request completed')
  t.match(completed, { level: 30, res: { statusCode: 200 } }, 'a JSON log line for the request')
})

t.test('LOG_LEVEL=warn leaves out info lines', async t => {
  const server = await start(t, { LOG_LEVEL: 'warn' }, false)
  t.equal((await request(`http://127.0.0.1:${server.port}`, { path: '/health' })).status, 200)
  server.child.kill('SIGTERM')
  await once(server.child, 'exit')
  const output = server.output()
  t.match(output, 'tenantkey is listening on', 'the summary is still printed')
  t.same(jsonLines(output).filter(line => (line.level as number) < 40), [], 'no info or debug lines')
})

t.test('on a terminal, logs are pretty lines, not JSON', { skip: existsSync('/usr/bin/script') ? false : 'util-linux `script` is not installed' }, async t => {
  const server = await start(t, { LOG_LEVEL: 'info' }, true)
  t.equal((await request(`http://127.0.0.1:${server.port}`, { path: '/health' })).status, 200)
  await waitFor(() => server.output().includes('request completed'), server.output, server.child)
  const output = server.output()
  t.match(output, /\[\d\d:\d\d:\d\d\.\d{3}\] .*INFO.*request completed/, 'a time-stamped, levelled, readable line')
  t.notMatch(output, '{"level":', 'no JSON lines')
})

t.test('NODE_ENV=production on a terminal still logs JSON', { skip: existsSync('/usr/bin/script') ? false : 'util-linux `script` is not installed' }, async t => {
  const server = await start(t, {
    LOG_LEVEL: 'info',
    NODE_ENV: 'production',
    JWT_SECRET: 'production-jwt-secret-0123456789abcdef',
    API_KEY_PEPPER: 'production-pepper-0123456789abcdef0123'
  }, true)
  t.equal((await request(`http://127.0.0.1:${server.port}`, { path: '/health' })).status, 200)
  await waitFor(() => server.output().includes('request completed'), server.output, server.child)
  t.match(server.output(), '{"level":30', 'JSON lines')
})

t.test('NODE_ENV=production with an empty JWT_SECRET or API_KEY_PEPPER exits 1 naming it', async t => {
  for (const [name, other] of [['JWT_SECRET', 'API_KEY_PEPPER'], ['API_KEY_PEPPER', 'JWT_SECRET']]) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', DATA_DIR: 'memory://', [name]: '', [other]: 'production-secret-0123456789abcdef0123' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout.on('data', chunk => { output += String(chunk) })
    child.stderr.on('data', chunk => { output += String(chunk) })
    const [code] = await once(child, 'exit')
    t.equal(code, 1, `${name}= exits 1`)
    t.match(output, `${name} is required in production and is empty`)
    t.notMatch(output, 'listening')
  }
})

/** Every directory and file under dir whose mode lets anyone but its owner in. */
function notPrivate (dir: string): string[] {
  const found: string[] = []
  const visit = (path: string): void => {
    const stat = lstatSync(path)
    if (stat.isSymbolicLink()) return
    if ((stat.mode & 0o077) !== 0 || (stat.isDirectory() && (stat.mode & 0o700) !== 0o700)) found.push(`${(stat.mode & 0o777).toString(8)} ${path}`)
    if (stat.isDirectory()) for (const entry of readdirSync(path)) visit(join(path, entry))
  }
  visit(dir)
  return found
}

t.test('a generated admin token is printed on the start that generated it only; DATA_DIR and every file in it are private', async t => {
  const dataDir = join(mkdtempSync(join(tmpdir(), 'tenantkey-server-')), 'data')
  t.teardown(() => rmSync(dirname(dataDir), { recursive: true, force: true }))
  const first = await start(t, { DATA_DIR: dataDir, LOG_LEVEL: 'warn' }, false)
  t.equal((await fetch(`http://127.0.0.1:${first.port}/health`)).status, 200)
  first.child.kill('SIGTERM')
  await once(first.child, 'exit')
  const token = /Admin token \(ADMIN_TOKEN\), shown this once: (\S+)/.exec(first.output())?.[1]
  t.ok(token !== undefined && token.length >= 32, 'the first start prints the generated token')
  t.ok(readdirSync(join(dataDir, 'pg_wal')).length > 0, 'PGlite wrote its WAL')
  t.same(notPrivate(dataDir), [], 'the embedded database (its WAL too) and secrets.json: directories 0700, files 0600 or stricter')

  chmodSync(join(dataDir, 'secrets.json'), 0o644)
  const second = await start(t, { DATA_DIR: dataDir, LOG_LEVEL: 'warn' }, false)
  const response = await fetch(`http://127.0.0.1:${second.port}/api/v1/admin/orgs`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(response.status, 200, 'the kept token still works')
  second.child.kill('SIGTERM')
  await once(second.child, 'exit')
  t.notMatch(second.output(), token as string, 'a later start does not print the token')
  t.match(second.output(), `Admin token: the generated ADMIN_TOKEN in ${join(dataDir, 'secrets.json')}`, 'it says where the token is kept')
  t.match(second.output(), `${join(dataDir, 'secrets.json')} could be read by other users (mode 0644): made private to this user`)
  t.same(notPrivate(dataDir), [], 'secrets.json is 0600 again')
})
