import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

// What an operator deploys besides the code: the sample systemd unit and the licence.
const root = new URL('..', import.meta.url).pathname
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const unit = readFileSync(join(root, 'deploy/tenantkey.service'), 'utf8')
const systemdAnalyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find(existsSync)

t.test('the systemd unit runs what npm start runs, with plain Node, in production, with private files', async t => {
  const execStart = /^ExecStart=(\S+) (.+)$/m.exec(unit)
  t.ok(execStart, 'one ExecStart line: node, its flags and the server')
  t.match(execStart?.[1], /\/node$/)
  t.equal(execStart?.[2], pkg.scripts.start.replace(/^node /, '').replace(/(^| )dist\//, '$1/opt/tenantkey/dist/'),
    'the flags and the file npm start runs')
  t.match(unit, /^WorkingDirectory=\/opt\/tenantkey$/m)
  t.match(unit, /^Environment=NODE_ENV=production$/m)
  t.match(unit, /^UMask=0077$/m)
  t.match(unit, /^StateDirectoryMode=0700$/m)
  t.match(unit, /^Environment=DATA_DIR=\/var\/lib\/tenantkey$/m, 'DATA_DIR is the state directory')
})

t.test('systemd-analyze verify accepts the unit without a warning', {
  skip: systemdAnalyze === undefined ? 'systemd-analyze is not installed (Debian: apt-get install systemd)' : false
}, async t => {
  // verify checks that ExecStart's program exists: point it at this machine's node.
  const dir = mkdtempSync(join(tmpdir(), 'tenantkey-unit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'tenantkey.service')
  writeFileSync(file, unit.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`))
  const result = await new Promise<{ code: number, output: string }>(resolve => {
    execFile(systemdAnalyze as string, ['verify', file], (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number(error.code ?? 1), output: stdout + stderr })
    })
  })
  t.equal(result.code, 0, 'exit status 0')
  t.equal(result.output, '', 'no unknown key, bad value or missing program')
})

t.test('LICENSE and the OpenAPI document carry the licence package.json names', async t => {
  t.equal(pkg.license, 'MIT')
  const licence = readFileSync(join(root, 'LICENSE'), 'utf8')
  t.match(licence, /^MIT License\n\nCopyright \(c\) \d{4} /)
  t.match(licence, 'Permission is hereby granted, free of charge, to any person obtaining a copy')
  const openapi = JSON.parse(readFileSync(join(root, 'openapi.json'), 'utf8'))
  t.same(openapi.info.license, { name: pkg.license, identifier: pkg.license }, 'and the OpenAPI document names it')
})
