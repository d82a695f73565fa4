import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { once } from 'node:events'
import { promisify } from 'node:util'
import t from 'tap'

// The production path: `npm run build` compiles the sources with tsc, and `npm start` runs
// the compiled server with plain Node (no tsx, no devDependency). The build here goes to a
// directory of this test's own (not dist/, which a developer or another test may be using),
// laid out exactly as dist/ is, and the scripts of package.json are checked against it.
t.setTimeout(600_000) // tsc and a server start on a loaded two-core machine

const root = new URL('..', import.meta.url).pathname
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
mkdirSync(join(root, 'test-output'), { recursive: true })
const outDir = mkdtempSync(join(root, 'test-output', 'dist-'))
t.teardown(() => rmSync(outDir, { recursive: true, force: true }))

await promisify(execFile)(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: root })

// Plain Node: nothing of the test runner's loader (tsx through NODE_OPTIONS) may reach the child.
const plainEnv = (extra: Record<string, string>): Record<string, string> => ({ PATH: process.env.PATH ?? '', ...extra })
/** `node [--flags] dist/src/x.js` from package.json: Node's flags and the file, pointed at this test's build */
const compiledCommand = (script: string): string[] => {
  const match = /^node ((?:--\S+ )*)dist\/(\S+\.js)$/.exec(pkg.scripts[script])
  if (match === null) throw new Error(`npm run ${script} is "${pkg.scripts[script]}", not node [--flags] dist/….js`)
  return [...match[1].split(' ').filter(flag => flag !== ''), join(outDir, match[2])]
}
const compiledEntry = (script: string): string => compiledCommand(script).at(-1) as string

function compiledFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(entry =>
    entry.isDirectory() ? compiledFiles(join(dir, entry.name)) : entry.name.endsWith('.js') ? [join(dir, entry.name)] : [])
}

t.test('npm start, npm run cli and npm run db:migrate run compiled JavaScript with plain Node; npm run dev keeps tsx', async t => {
  for (const script of ['start', 'cli', 'db:migrate']) t.ok(existsSync(compiledEntry(script)), `${pkg.scripts[script]} exists after the build`)
  t.equal(pkg.scripts.prepare, 'npm run build', 'npm install and npm ci build dist/')
  t.match(pkg.scripts.dev, /^tsx watch /)
  t.notOk(pkg.dependencies.tsx, 'tsx is a devDependency only')
  t.ok(pkg.devDependencies.tsx)
})

t.test('the compiled code imports only its own files (as .js) and production dependencies', async t => {
  const allowed = new Set([...Object.keys(pkg.dependencies), ...builtinModules])
  const problems: string[] = []
  const files = compiledFiles(outDir)
  for (const file of files) {
    const code = readFileSync(file, 'utf8')
    for (const [, specifier] of code.matchAll(/(?:^import\s[^'"]*?|^export\s[^'"]*?\sfrom\s|\bimport\()\s*['"]([^'"]+)['"]/gm)) {
      const where = `${relative(outDir, file)} imports ${specifier}`
      if (specifier.startsWith('.')) {
        if (!specifier.endsWith('.js') || !existsSync(resolve(dirname(file), specifier))) problems.push(`${where}: not a compiled file`)
        continue
      }
      const name = specifier.replace(/^node:/, '').split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/')
      if (!specifier.startsWith('node:') && !allowed.has(name)) problems.push(`${where}: not in dependencies`)
      if (specifier.startsWith('node:') && !builtinModules.includes(name)) problems.push(`${where}: not a Node built-in`)
    }
  }
  t.ok(files.length > 30, `${files.length} compiled files read`)
  t.same(problems, [])
})

t.test('the compiled server starts with plain Node and serves /health, /ready and /docs with its static files', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tenantkey-build-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const child = spawn(process.execPath, compiledCommand('start'), {
    cwd: root,
    env: plainEnv({ DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' }),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', chunk => { output += String(chunk) })
  child.stderr.on('data', chunk => { output += String(chunk) })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let port: number | undefined
  while (port === undefined) {
    if (child.exitCode !== null) throw new Error(`the compiled server exited (${child.exitCode}):\n${output}`)
    port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1] ?? Number.NaN) || undefined
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const base = `http://127.0.0.1:${port}`

  const health = await fetch(`${base}/health`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })
  t.equal((await fetch(`${base}/ready`)).status, 200)
  const docs = await fetch(`${base}/docs`)
  t.equal(docs.status, 200)
  const html = await docs.text()
  t.match(html, /swagger-ui/i, 'the interactive reference')
  // Every script and style sheet the page loads comes from the installed @fastify/swagger-ui.
  const assets = [...html.matchAll(/(?:src|href)="\.?\/?([^"]+\.(?:js|css))"/g)].map(match => match[1])
  t.ok(assets.length >= 2, `${assets.join(', ')} referenced`)
  for (const asset of assets) {
    const url = new URL(asset, docs.url)
    const res = await fetch(url)
    t.equal(res.status, 200, `${url.pathname} is served`)
    t.ok((await res.arrayBuffer()).byteLength > 100, `${url.pathname} has content`)
  }
  const document = await (await fetch(`${base}/docs/json`)).json()
  t.equal(document.openapi, '3.1.0')

  // SIGTERM reaches the server itself (no npm or tsx process in between) and it exits cleanly.
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'exits 0 on SIGTERM')
})

t.test('the compiled CLI runs with plain Node', async t => {
  const { stdout } = await promisify(execFile)(process.execPath, [compiledEntry('cli'), 'help'], { cwd: root, env: plainEnv({}) })
  t.match(stdout, /create-org/)
})
