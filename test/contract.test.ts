import t from 'tap'
import { build } from './helper.ts'
import { contractChecker, type ObservedResponse } from './support/contract.ts'

// The suite's contract check (test/support/contract.ts) is only as good as what it notices:
// each kind of drift it exists for, shown on the app's own document.

const json = 'application/json; charset=utf-8'
const envelope = (message: string, code: string): string => JSON.stringify({ status: 'error', message, code })

t.test('the contract check names the operation, status and path of each kind of drift', async t => {
  const app = await build(t, { redisUrl: null })
  const checker = contractChecker(app.swagger(), 'test document')
  const response = (overrides: Partial<ObservedResponse>): ObservedResponse => ({
    method: 'POST', url: '/api/v1/public/verify', status: 200, headers: { 'content-type': json }, body: JSON.stringify({ status: 'success', data: { valid: false } }), ...overrides
  })

  t.equal(checker.check(response({})), null, 'a documented answer passes')
  t.equal(checker.check(response({ url: '/api/v1/public/verify?x=1' })), null, 'the query string is not part of the path')
  t.equal(checker.check(response({ method: 'GET', url: '/api/v1/public/users/usr_x', status: 404, body: envelope('User not found', 'not_found') })), null, 'a path parameter matches its template')

  t.match(checker.check(response({ headers: {} })),
    /POST \/api\/v1\/public\/verify \(operation publicVerifyToken\) answered 200: a JSON body with Content-Type null/, 'a JSON body without its content type')
  t.match(checker.check(response({ headers: { 'content-type': 'application/json' } })), /Content-Type "application\/json"/, 'JSON without its charset')
  t.match(checker.check(response({ status: 404, body: envelope('x', 'not_found') })),
    /publicVerifyToken\) answered 404: status 404 is not documented for this operation \(documented: 200, 400, 401/, 'an undocumented status')
  t.match(checker.check(response({ body: JSON.stringify({ status: 'success', data: { valid: 'yes' } }) })),
    /answered 200: the body does not match the documented 200 schema:[\s\S]*\/data\/valid must be boolean/, 'a body its schema refuses, at the field')
  t.match(checker.check(response({ status: 401, body: JSON.stringify({ error: 'Unauthorized' }) })), /the body does not match the documented 401 schema/, 'an error outside the envelope')
  t.match(checker.check(response({ status: 500, body: envelope('Internal Server Error', 'internal_error') })), /a 5xx other than 503 is never part of the contract/)

  t.equal(checker.check(response({ method: 'GET', url: '/api/v1/nowhere', status: 404, body: envelope('Route GET /api/v1/nowhere not found', 'not_found') })), null, 'an unknown route answers with the envelope')
  t.match(checker.check(response({ method: 'GET', url: '/api/v1/nowhere', status: 200, body: '{}' })), /GET \/api\/v1\/nowhere \(no documented operation\) answered 200: a success from a route the document does not have/)
  t.match(checker.check(response({ method: 'GET', url: '/metrics', status: 200, headers: { 'content-type': 'text/html' }, body: 'x' })), /Content-Type "text\/html", documented: text\/plain/, 'a non-JSON answer of the wrong type')
  t.equal(checker.check(response({ method: 'HEAD', url: '/health', status: 200, body: '' })), null, 'HEAD answers as its GET, without a body')
})

t.test('every answer a test app gives is checked: POST /public/verify names its JSON content type', async t => {
  const app = await build(t, { redisUrl: null })
  // build() wraps inject; an answer that broke the contract would reject here.
  const res = await app.inject({ method: 'POST', url: '/api/v1/public/verify', headers: { 'x-org-slug': 'acme' }, payload: { token: 'x' } })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['content-type'], json)
})
