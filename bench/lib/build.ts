import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

// The benchmarks measure the app as `npm start` runs it: JavaScript compiled by tsc, under
// `npm start`'s V8 flags. Under tsx the same code does more work per request: esbuild's
// keepNames wraps every function made per request (a closure in a hook) in __name, an
// Object.defineProperty each time — about a tenth of a /public request's CPU in a profile.

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const SERVER = 'dist/src/server.js'
/** Where tsconfig.bench.json puts the app and the bench's server files, compiled. */
export const BENCH_BUILD = join(ROOT, 'dist-bench')

/** What `npm start` runs, from package.json: `node`, its flags (V8's heap sizing), the server file. */
export function startCommand (start: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start): string[] {
  const [node, ...args] = start.trim().split(/\s+/)
  if (node !== 'node' || args.at(-1) !== SERVER) throw new Error(`npm start is not \`node [flags] ${SERVER}\`: ${start}`)
  return [process.execPath, ...args]
}

/** `npm start`'s flags for node, without the server file. */
export function startFlags (): string[] {
  return startCommand().slice(1, -1)
}

/** dist/ as `npm start` runs it, from this tree: before the run, so a compile error stops it early. */
export function buildServer (): void {
  execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' })
}

/** The app and bench/*-server.ts compiled into dist-bench/, for the server processes the bench starts. */
export function buildBenchServers (): void {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.bench.json'], { cwd: ROOT, stdio: 'inherit' })
}
