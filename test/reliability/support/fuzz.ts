import fc from 'fast-check'

// Request generators driven by the OpenAPI document the app serves (/docs/json), so every
// route, including ones added later, is fuzzed without this file knowing it exists.

type JsonSchema = Record<string, any>

export interface Operation {
  method: string
  /** OpenAPI path, e.g. /api/v1/org/members/{userId} */
  path: string
  pathParams: Array<{ name: string, schema: JsonSchema }>
  queryParams: Array<{ name: string, schema: JsonSchema, required: boolean }>
  headerParams: Array<{ name: string, schema: JsonSchema, required: boolean }>
  /** names of the security schemes any of which the route accepts */
  security: string[]
  body: JsonSchema | null
}

export function operationsOf (document: any): Operation[] {
  const operations: Operation[] = []
  for (const [path, item] of Object.entries<Record<string, any>>(document.paths)) {
    for (const [method, operation] of Object.entries<any>(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue
      const parameters: any[] = [...(item.parameters ?? []), ...(operation.parameters ?? [])]
      const param = (where: string): any[] => parameters.filter(p => p.in === where)
        .map(p => ({ name: p.name, schema: p.schema ?? {}, required: p.required === true }))
      const security = (operation.security ?? document.security ?? []).flatMap((requirement: object) => Object.keys(requirement))
      operations.push({
        method: method.toUpperCase(),
        path,
        pathParams: param('path'),
        queryParams: param('query'),
        headerParams: param('header'),
        security,
        body: operation.requestBody?.content?.['application/json']?.schema ?? null
      })
    }
  }
  return operations
}

/**
 * Real values the fuzzer mixes in so requests get past the guards and reach the handlers.
 * Mutable: the test refreshes credentials that a fuzzed logout or revocation used up.
 */
export interface Pools {
  adminToken: string
  /** for X-Org-Slug: the fixture org */
  orgSlugs: string[]
  /** for the admin API's :slug, an org that fuzzing may suspend without harm */
  adminSlugs: string[]
  accessTokens: string[]
  apiKeys: string[]
  /** real ids by parameter or property name (userId, keyId, …) */
  ids: Record<string, string[]>
}

const pick = (pool: () => string[]): fc.Arbitrary<string> =>
  fc.nat().map(i => { const values = pool(); return values.length === 0 ? '' : values[i % values.length] })

const NASTY_STRINGS = [
  '', ' ', '\u0000', 'null', 'undefined', '0', '-1', 'true', '[]', '{}', '%00', '%', '%zz', '..', '../../etc/passwd',
  "' OR '1'='1", '"; DROP TABLE users; --', '$' + '{7*7}', '{{7*7}}', '<script>alert(1)</script>', '\uFEFF', '\u202Eevil',
  '\uD800', '\uDFFF', '🔑'.repeat(100), 'Ω≈ç√∫˜µ≤≥÷', 'ｔｅｓｔ', 'a'.repeat(257), 'b'.repeat(5000), 'c'.repeat(20_000),
  'pk_live_' + '0'.repeat(64), 'pk_live_' + 'f'.repeat(63), 'Bearer ', 'x'.repeat(101), ' padded ', 'UPPER-CASE',
  '\r\n', 'a\r\nX-Injected: 1', 'usr_00000000000000000000000000', 'key_' + 'Z'.repeat(26), 'org_', '__proto__', 'constructor',
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', '-0', '1e309', 'NaN', 'Infinity', '2026-13-45T25:61:61.000Z', '1970-01-01T00:00:00.000Z',
  'javascript:alert(1)', 'http://', 'https://' + 'a'.repeat(3000) + '.test', 'mailto:x@y', 'a@b', '@', 'a@' + 'b'.repeat(300) + '.test'
]
const NASTY_NUMBERS = [0, -0, -1, 1, 0.5, 2 ** 31, -(2 ** 31), 2 ** 53 + 1, 1e308, -1e308, Number.MIN_VALUE]

/**
 * Code points at the edges: U+0000 and other controls, lone surrogates (half a UTF-16 pair, which
 * fast-check's 'binary' and 'grapheme' units never produce), noncharacters, the BOM, bidi
 * overrides, separators JavaScript and JSON disagree on, combining marks, the last code point.
 */
const EDGE_CODE_POINTS = ['\u0000', '\u0001', '\u001f', '\u007f', '\u0085', '\u00a0', '\ud800', '\udbff', '\udc00', '\udfff',
  '\ufffe', '\uffff', '\ufeff', '\ufffd', '\u200b', '\u200d', '\u202e', '\u2028', '\u2029', '\u0301', '\u{10ffff}', '\u{1f511}', '\u{e0001}']
export const edgeChar: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...EDGE_CODE_POINTS), weight: 3 },
  { arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map(unit => String.fromCharCode(unit)), weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 2 },
  { arbitrary: fc.constantFrom('a', 'Z', '0', ' ', '-', '.', '@'), weight: 2 }
)
/** Strings made of edge code points (and a few plain ones between them). */
export const edgeString: fc.Arbitrary<string> = fc.string({ unit: edgeChar, minLength: 1, maxLength: 40 })

/** The strings of `base`, in `weight` of 5 cases with an edge code point spliced in somewhere. */
export function withEdges (base: fc.Arbitrary<string>, weight: number): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: base, weight: 5 - weight },
    { arbitrary: fc.tuple(base, edgeChar, fc.nat()).map(([text, edge, at]) => { const i = at % (text.length + 1); return text.slice(0, i) + edge + text.slice(i) }), weight }
  )
}

export const nastyString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...NASTY_STRINGS), weight: 3 },
  { arbitrary: edgeString, weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 64 }), weight: 2 },
  { arbitrary: fc.string({ unit: 'grapheme', maxLength: 300 }), weight: 1 }
)

/** Any JSON value of the wrong kind, a boundary number or a nasty string. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  nastyString,
  fc.constantFrom<unknown>(...NASTY_NUMBERS, null, true, false, [], {}, [null], { $ne: null }, { $gt: '' }),
  fc.jsonValue({ maxDepth: 3 })
)

function hinted (name: string | undefined, pools: Pools): fc.Arbitrary<unknown> | null {
  if (name === undefined) return null
  const lower = name.toLowerCase()
  if (pools.ids[name] !== undefined) return pick(() => pools.ids[name])
  if (lower === 'token' || lower === 'accesstoken') return pick(() => pools.accessTokens)
  if (lower === 'userid') return pick(() => pools.ids.userId ?? [])
  return null
}

/** Values that should pass the schema (or nearly): examples, enums, pattern and format matches. */
function plausible (schema: JsonSchema, pools: Pools, name: string | undefined, depth: number): fc.Arbitrary<unknown> {
  const choices: Array<fc.Arbitrary<unknown>> = []
  const hint = hinted(name, pools)
  if (hint !== null) choices.push(hint, hint)
  if (Array.isArray(schema.examples) && schema.examples.length > 0) choices.push(fc.constantFrom(...schema.examples))
  if (schema.const !== undefined) return fc.constant(schema.const)
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum)
  const alternatives = schema.anyOf ?? schema.oneOf
  if (Array.isArray(alternatives)) return fc.oneof(...alternatives.map((s: JsonSchema) => fuzzValue(s, pools, name, depth)))
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'string': choices.push(plausibleString(schema)); break
    case 'integer': choices.push(fc.integer({ min: schema.minimum ?? -1000, max: schema.maximum ?? 1_000_000 })); break
    case 'number': choices.push(fc.double({ noNaN: true, noDefaultInfinity: true })); break
    case 'boolean': choices.push(fc.boolean()); break
    case 'null': choices.push(fc.constant(null)); break
    case 'array': choices.push(fc.array(fuzzValue(schema.items ?? {}, pools, undefined, depth + 1), { maxLength: depth > 2 ? 1 : 4 })); break
    case 'object': choices.push(fuzzObject(schema, pools, depth)); break
    default: choices.push(fc.jsonValue({ maxDepth: 2 }))
  }
  return fc.oneof(...choices)
}

/**
 * A string that (nearly) passes the schema. Free text (no pattern, format or enum: names,
 * tokens, passwords), which reaches the stores as sent, holds an edge code point in 2 of 5.
 */
function plausibleString (schema: JsonSchema): fc.Arbitrary<string> {
  const passing = passingString(schema)
  return typeof schema.pattern === 'string' || typeof schema.format === 'string' ? withEdges(passing, 1) : withEdges(passing, 2)
}

function passingString (schema: JsonSchema): fc.Arbitrary<string> {
  const maxLength = Math.min(schema.maxLength ?? 64, 300)
  const minLength = Math.min(schema.minLength ?? 0, maxLength)
  if (schema.format === 'email') return fc.emailAddress().filter(e => e.length <= maxLength)
  if (schema.format === 'date-time') return fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map(d => d.toISOString())
  if (schema.format === 'uri') return fc.webUrl({ validSchemes: ['http', 'https'] }).filter(u => u.length <= maxLength)
  if (typeof schema.pattern === 'string') {
    return fc.stringMatching(new RegExp(schema.pattern)).filter(s => s.length >= minLength && s.length <= maxLength)
  }
  return fc.string({ minLength, maxLength, unit: 'grapheme' })
}

function fuzzObject (schema: JsonSchema, pools: Pools, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const properties: Record<string, JsonSchema> = schema.properties ?? {}
  const record = fc.record(
    Object.fromEntries(Object.entries(properties).map(([key, s]) => [key, fuzzValue(s, pools, key, depth + 1)])),
    { requiredKeys: (schema.required ?? []).filter((key: string) => key in properties) }
  )
  const extra = fc.dictionary(fc.oneof(fc.string({ maxLength: 12 }), edgeString, fc.constantFrom('__proto__', 'constructor', 'prototype', 'id', 'orgId', 'role')), hostileValue, { maxKeys: 3 })
  return fc.oneof(
    { arbitrary: record, weight: 4 },
    { arbitrary: fc.tuple(record, extra).map(([r, e]) => ({ ...e, ...r })), weight: 1 }
  )
}

/** A value for a schema: mostly plausible, sometimes hostile, at every depth. */
export function fuzzValue (schema: JsonSchema, pools: Pools, name?: string, depth = 0): fc.Arbitrary<unknown> {
  if (depth > 4) return hostileValue
  return fc.oneof({ arbitrary: plausible(schema, pools, name, depth), weight: 5 }, { arbitrary: hostileValue, weight: 2 })
}

/** Bodies no schema describes: broken, huge, deep, poisoned. */
const rawBody: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', ' ', '{', '}', '{"a":}', '{"a":1,}', 'nul', 'undefined', '{"a":1}{"b":2}', '\uFEFF{}', '\u0000', '[', '"', '1e99999',
    '{"__proto__":{"isAdmin":true}}', '{"constructor":{"prototype":{"isAdmin":true}}}', '{"a":1,"a":2}', '{"name":"\\ud800"}', '{"name":"\\u0000"}'),
  fc.integer({ min: 100, max: 8000 }).map(n => '['.repeat(n) + ']'.repeat(n)),
  fc.integer({ min: 100, max: 3000 }).map(n => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
  fc.integer({ min: 16 * 1024 - 16, max: 200_000 }).map(n => JSON.stringify({ name: 'x'.repeat(n) })),
  fc.string({ unit: 'binary', maxLength: 200 })
)

const contentTypes = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 12 },
  { arbitrary: fc.constantFrom('application/json; charset=utf-8', 'APPLICATION/JSON', 'application/json; charset=latin1', 'application/json;', 'application/vnd.api+json', 'text/plain', 'text/json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', '*/*', 'application', ';', ''), weight: 3 }
)

/** Header values as an HTTP parser would let them through (visible Latin-1 and spaces). */
export function headerSafe (value: string): string {
  return value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?')
}

const headerValue = (valid: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: nastyString, weight: 2 }).map(headerSafe)

function pathSegment (schema: JsonSchema, pools: Pools, name: string): fc.Arbitrary<string> {
  const pool = name === 'slug' ? pick(() => pools.adminSlugs) : hinted(name, pools) as fc.Arbitrary<string> | null
  return fc.oneof(
    // Unencoded in the path, so never a lone surrogate (no URL can carry one); edges come encoded below.
    { arbitrary: pool ?? passingString(schema), weight: 5 },
    { arbitrary: passingString(schema), weight: 2 },
    { arbitrary: nastyString.map(s => encodeURIComponent(s.replace(/[\uD800-\uDFFF]/g, '?'))), weight: 2 },
    { arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%00', '..', '%2e%2e', '%2F', 'a'.repeat(2000)), weight: 1 }
  )
}

export interface FuzzRequest {
  method: string
  url: string
  headers: Record<string, string>
  payload?: string
}

export function requestFor (operation: Operation, pools: Pools): fc.Arbitrary<FuzzRequest> {
  const segments = fc.record(Object.fromEntries(operation.pathParams.map(p => [p.name, pathSegment(p.schema, pools, p.name)])))
  const query = fc.oneof(
    { arbitrary: fc.constant(''), weight: 6 },
    { arbitrary: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), nastyString, { maxKeys: 3 }).map(q => '?' + new URLSearchParams(q as Record<string, string>).toString()), weight: 2 },
    { arbitrary: fc.constantFrom('?', '?a', '?a=1&a=2', '?__proto__[x]=1', '?%zz=1', '?' + 'q='.repeat(2000)), weight: 1 }
  )
  const credentials = fc.record({
    admin: fc.oneof({ arbitrary: fc.constant(pools.adminToken), weight: 5 }, { arbitrary: nastyString, weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 }),
    bearer: fc.oneof({ arbitrary: pick(() => pools.accessTokens), weight: 5 }, { arbitrary: nastyString, weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 }),
    cookie: fc.option(fc.oneof(pick(() => pools.accessTokens), nastyString), { freq: 3 }),
    apiKey: fc.oneof({ arbitrary: pick(() => pools.apiKeys), weight: 5 }, { arbitrary: nastyString, weight: 2 }, { arbitrary: fc.constant(undefined), weight: 1 }),
    orgSlug: fc.oneof({ arbitrary: pick(() => pools.orgSlugs), weight: 8 }, { arbitrary: nastyString, weight: 2 }, { arbitrary: fc.constant(undefined), weight: 1 })
  })
  const declaredHeaders = fc.record(Object.fromEntries(operation.headerParams
    .filter(p => !['x-org-slug', 'x-api-key', 'authorization'].includes(p.name.toLowerCase()))
    .map(p => [p.name.toLowerCase(), headerValue(plausibleString(p.schema))])))
  const extraHeaders = fc.dictionary(
    fc.constantFrom('x-forwarded-for', 'x-real-ip', 'origin', 'accept', 'accept-encoding', 'x-http-method-override', 'x-request-id', 'content-encoding', 'transfer-encoding-x', 'x-org-id', 'if-none-match', 'range'),
    nastyString.map(headerSafe), { maxKeys: 2 })
  const body = operation.body === null
    ? fc.option(rawBody, { freq: 6 })
    : fc.oneof(
      { arbitrary: fuzzValue(operation.body, pools, undefined, 0).map(value => JSON.stringify(value) ?? ''), weight: 8 },
      { arbitrary: rawBody, weight: 2 },
      { arbitrary: fc.constant(undefined), weight: 1 })

  return fc.record({ segments, query, credentials, declaredHeaders, extraHeaders, body, contentType: contentTypes }).map(parts => {
    let path = operation.path
    for (const [name, value] of Object.entries(parts.segments)) path = path.replace(`{${name}}`, value as string)
    const headers: Record<string, string> = { ...parts.extraHeaders, ...(parts.declaredHeaders as Record<string, string>) }
    const { admin, bearer, cookie, apiKey, orgSlug } = parts.credentials
    const schemes = operation.security
    if (schemes.includes('adminToken') && admin !== undefined) headers.authorization = headerSafe(`Bearer ${admin}`)
    else if (schemes.includes('bearerAuth') && bearer !== undefined) headers.authorization = headerSafe(`Bearer ${bearer}`)
    if (cookie !== null && cookie !== undefined) headers.cookie = headerSafe(`access_token=${cookie}`)
    if ((schemes.includes('apiKey') || operation.path.includes('/public/')) && apiKey !== undefined) headers['x-api-key'] = headerSafe(apiKey)
    if (/^\/api\/v1\/(auth|org|public)(\/|$)/.test(operation.path) && orgSlug !== undefined) headers['x-org-slug'] = headerSafe(orgSlug)
    const request: FuzzRequest = { method: operation.method, url: path + parts.query, headers }
    if (parts.body !== null && parts.body !== undefined) {
      request.payload = parts.body
      headers['content-type'] = parts.contentType
    }
    return request
  })
}
