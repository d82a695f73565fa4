import { readFileSync } from 'node:fs'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

// The suite as a contract check: every answer a test receives, through `app.inject` (test/helper.ts)
// or a real socket (test/reliability/support/http.ts), is compared with the OpenAPI document of
// the app that gave it. A status the operation does not document, a JSON body without
// `application/json; charset=utf-8`, or a body its documented schema refuses is a mismatch: it
// fails the request's test at once (the request's promise rejects), naming the operation, the
// status and the path.

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'

export interface ObservedResponse {
  method: string
  /** the request's URL path, with or without its query string */
  url: string
  status: number
  headers: Record<string, string | string[] | number | undefined>
  body: string
}

export class ContractMismatch extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ContractMismatch'
  }
}

type OpenApiDocument = { paths: Record<string, Record<string, Operation>>, components?: unknown }
interface Operation { operationId?: string, responses: Record<string, { content?: Record<string, { schema?: unknown }> }> }
interface Route { method: string, template: string, pattern: RegExp, staticSegments: number, operation: Operation }

const DOCUMENT_ID = 'openapi'
const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'])
// Answers no operation documents: the Swagger UI's own files, served as the docs plugin sees fit.
const UNDOCUMENTED_PREFIXES = ['/docs']

export interface ContractChecker {
  /** the mismatch, described for a person, or null when the response keeps the contract */
  check: (response: ObservedResponse) => string | null
}

const checkers = new Map<string, ContractChecker>()

/** The checker of one OpenAPI document (cached: most test apps serve the same document). */
export function contractChecker (document: unknown, source: string): ContractChecker {
  const text = JSON.stringify(document)
  let checker = checkers.get(text)
  if (checker === undefined) {
    checker = createChecker(JSON.parse(text) as OpenApiDocument, source)
    checkers.set(text, checker)
  }
  return checker
}

let committed: ContractChecker | undefined
/** The checker of the committed openapi.json, for servers in other processes (`npm run openapi` keeps it current). */
export function committedContractChecker (): ContractChecker {
  committed ??= contractChecker(JSON.parse(readFileSync(new URL('../../openapi.json', import.meta.url), 'utf8')), 'openapi.json')
  return committed
}

function createChecker (document: OpenApiDocument, source: string): ContractChecker {
  // OpenAPI 3.1's schemas are JSON Schema 2020-12. Not strict: the document carries OpenAPI's own
  // keywords (example, x-examples, headers) beside the schemas.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true })
  addFormats.default(ajv)
  // The document itself is no JSON Schema: only the schemas inside it are compiled.
  ajv.addSchema({ ...document, $id: DOCUMENT_ID }, undefined, undefined, false)
  const validators = new Map<string, ValidateFunction>()
  const validatorFor = (pointer: string): ValidateFunction => {
    let validate = validators.get(pointer)
    if (validate === undefined) {
      validate = ajv.compile({ $ref: `${DOCUMENT_ID}#${pointer}` })
      validators.set(pointer, validate)
    }
    return validate
  }

  const routes: Route[] = []
  for (const [template, item] of Object.entries(document.paths ?? {})) {
    for (const [method, operation] of Object.entries(item)) {
      if (!METHODS.has(method)) continue
      const segments = template.split('/')
      const pattern = new RegExp('^' + segments.map(s => /^\{[^}]+\}$/.test(s) ? '[^/]+' : escapeRegExp(s)).join('/') + '$')
      routes.push({ method: method.toUpperCase(), template, pattern, staticSegments: segments.filter(s => !s.startsWith('{')).length, operation })
    }
  }
  // A static segment wins over a parameter, as in the router (/org/members before /org/{id}).
  routes.sort((a, b) => b.staticSegments - a.staticSegments)
  const errorEnvelope = ajv.compile({ $ref: `${DOCUMENT_ID}#/components/schemas/ErrorResponse` })

  function check (response: ObservedResponse): string | null {
    const method = response.method.toUpperCase()
    const path = response.url.split('?')[0]
    const lookup = method === 'HEAD' ? 'GET' : method
    const route = routes.find(r => r.method === lookup && r.pattern.test(path))
    const contentType = headerOf(response.headers, 'content-type')
    const hasBody = method !== 'HEAD' && response.body.length > 0
    const shownPath = path.length > 120 ? `${path.slice(0, 100)}…(${path.length} chars)` : path
    const where = route === undefined
      ? `${method} ${shownPath} (no documented operation) answered ${response.status}`
      : `${method} ${shownPath} (operation ${route.operation.operationId ?? route.template}) answered ${response.status}`
    const fail = (what: string): string => `contract (${source}): ${where}: ${what}\n  body: ${response.body.slice(0, 300)}`

    if (response.status >= 500 && response.status !== 503) return fail('a 5xx other than 503 is never part of the contract')
    const looksJson = hasBody && /^\s*[[{]/.test(response.body)
    if (looksJson && !isJsonContentType(contentType)) {
      return fail(`a JSON body with Content-Type ${JSON.stringify(contentType ?? null)}; every JSON response carries "${JSON_CONTENT_TYPE}"`)
    }

    if (route === undefined) {
      if (UNDOCUMENTED_PREFIXES.some(prefix => path === prefix || path.startsWith(prefix + '/'))) return null
      // Unknown routes, and requests refused before routing, answer with the error envelope.
      if (response.status < 400) return fail('a success from a route the document does not have')
      return validateJson(errorEnvelope, 'the error envelope (ErrorResponse)')
    }

    const responseKey = [String(response.status), `${String(response.status)[0]}XX`, 'default'].find(key => key in route.operation.responses)
    if (responseKey === undefined) {
      return fail(`status ${response.status} is not documented for this operation (documented: ${Object.keys(route.operation.responses).join(', ')})`)
    }
    const documented = route.operation.responses[responseKey]
    const media = Object.keys(documented.content ?? {})
    if (!hasBody || media.length === 0) return null
    if (media.includes('application/json')) {
      if (documented.content?.['application/json']?.schema === undefined) return null
      const pointer = `/paths/${escapePointer(route.template)}/${route.method.toLowerCase()}/responses/${responseKey}/content/application~1json/schema`
      return validateJson(validatorFor(pointer), `the documented ${response.status} schema`)
    }
    if (!media.some(type => contentType?.toLowerCase().startsWith(type))) {
      return fail(`Content-Type ${JSON.stringify(contentType ?? null)}, documented: ${media.join(', ')}`)
    }
    return null

    function validateJson (validate: ValidateFunction, what: string): string | null {
      if (!isJsonContentType(contentType)) return fail(`Content-Type ${JSON.stringify(contentType ?? null)}; the contract wants "${JSON_CONTENT_TYPE}"`)
      let body: unknown
      try {
        body = JSON.parse(response.body)
      } catch {
        return fail('the body is not JSON')
      }
      if (validate(body)) return null
      const problems = (validate.errors ?? []).slice(0, 5).map(e => `${e.instancePath === '' ? '(body)' : e.instancePath} ${e.message ?? 'is invalid'}${e.params !== undefined ? ' ' + JSON.stringify(e.params) : ''}`)
      return fail(`the body does not match ${what}:\n    ${problems.join('\n    ')}`)
    }
  }

  return { check }
}

function isJsonContentType (value: string | undefined): boolean {
  return value !== undefined && value.toLowerCase().replace(/\s+/g, '') === JSON_CONTENT_TYPE.replace(/\s+/g, '')
}

function headerOf (headers: ObservedResponse['headers'], name: string): string | undefined {
  const value = headers[name] ?? Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1]
  return value === undefined ? undefined : String(Array.isArray(value) ? value[0] : value)
}

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function escapePointer (text: string): string {
  return text.replaceAll('~', '~0').replaceAll('/', '~1')
}

const mismatches: string[] = []

/**
 * Checks one response; throws a ContractMismatch naming the operation, status and path when it
 * breaks the contract, which fails the test that awaited the response. Should that test have
 * swallowed the error, the process still exits non-zero with the mismatch printed (an exit
 * hook rather than a throwing teardown, which would skip the other teardowns and hang the run).
 */
export function assertKeepsContract (checker: ContractChecker, response: ObservedResponse): void {
  const mismatch = checker.check(response)
  if (mismatch === null) return
  if (mismatches.push(mismatch) === 1) {
    process.once('exit', () => {
      process.stderr.write(`\n${mismatches.length} response(s) broke the contract; the first:\n${mismatches[0]}\n`)
      process.exitCode = 1
    })
  }
  throw new ContractMismatch(mismatch)
}
