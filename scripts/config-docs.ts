import { readFileSync, writeFileSync } from 'node:fs'
import { ENVIRONMENT } from '../src/config.ts'

// The README's configuration table and .env.example, both written from the schema of the
// environment in src/config.ts (its checks, defaults and descriptions): `npm run config:docs`
// after changing a variable; test/config-docs.test.ts fails while either is stale.

export const README_START = '<!-- configuration table: generated from src/config.ts by `npm run config:docs` -->'
export const README_END = '<!-- end of the configuration table -->'

const cell = (text: string): string => text.replaceAll('|', '\\|')
const sentence = (text: string): string => text.endsWith('.') ? text : `${text}.`

export function configTable (): string {
  const rows = Object.entries(ENVIRONMENT).map(([name, docs]) => {
    const byDefault = docs.default !== undefined ? `\`${docs.default}\`` : `unset: ${docs.unset}`
    return `| \`${name}\` | ${cell(byDefault)} | ${cell(docs.meaning)} | ${cell(docs.description)} |`
  })
  return ['| Variable | Default | What it does | Accepted values |', '|---|---|---|---|', ...rows].join('\n')
}

/** The README with its configuration table replaced by the generated one. */
export function readmeWithTable (readme: string): string {
  const start = readme.indexOf(README_START)
  const end = readme.indexOf(README_END)
  if (start === -1 || end < start) throw new Error(`README.md: the configuration table's markers are missing:\n${README_START}\n${README_END}`)
  return `${readme.slice(0, start)}${README_START}\n${configTable()}\n${readme.slice(end)}`
}

function wrap (text: string, width = 98): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + word.length + 1 > width) {
      lines.push(line)
      line = word
    } else {
      line = line === '' ? word : `${line} ${word}`
    }
  }
  return [...lines, line]
}

export function envExample (): string {
  const plain = (text: string): string => text.replaceAll('`', '')
  const header = [
    '# tenantkey configuration: every variable, commented out at its default. Copy this file to .env',
    '# (node --env-file=.env dist/src/server.js, or systemd\'s EnvironmentFile) and set what you need;',
    '# in production at least JWT_SECRET and API_KEY_PEPPER. An empty value counts as unset.',
    '# Generated from src/config.ts by `npm run config:docs`: edit the schema there, not this file.'
  ]
  const blocks = Object.entries(ENVIRONMENT).map(([name, docs]) => [
    ...wrap(sentence(plain(docs.meaning))).map(line => `# ${line}`),
    ...wrap(`Accepts ${sentence(plain(docs.description))}${docs.unset !== undefined ? ` Unset: ${sentence(plain(docs.unset))}` : ''}`).map(line => `# ${line}`),
    `#${name}=${/\s/.test(docs.default ?? '') ? JSON.stringify(docs.default) : docs.default ?? ''}`
  ].join('\n'))
  return [header.join('\n'), ...blocks].join('\n\n') + '\n'
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const readme = new URL('../README.md', import.meta.url)
  writeFileSync(readme, readmeWithTable(readFileSync(readme, 'utf8')))
  writeFileSync(new URL('../.env.example', import.meta.url), envExample())
  console.log('wrote the configuration table of README.md and .env.example')
}
