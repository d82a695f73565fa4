import t from 'tap'
import { adminHeaders, uniqueSlug, uniqueEmail } from '../helper.ts'
import { freshDatabase, needs, withClient } from './support/stores.ts'
import { startInstance } from './support/instances.ts'
import { request, type HttpResponse } from './support/http.ts'
import { assertAlive, assertUnavailable, crashLines, eventually, proxied } from './support/faults.ts'

// PostgreSQL vanishes (a proxy of the test's own cuts every connection and refuses new ones)
// under a real server process, then comes back.

t.test('PostgreSQL cut: 503 envelopes, /ready 503, /health 200, no crash; restored: recovers by itself', { skip: needs('postgres') }, async t => {
  const { url } = await freshDatabase(t)
  const pg = await proxied(t, url)
  const app = await startInstance(t, 'A', { DATABASE_URL: pg.url })
  const listOrgs = (): Promise<HttpResponse> => request(app.url, { path: '/api/v1/admin/orgs', headers: adminHeaders })
  t.equal((await listOrgs()).status, 200, 'baseline')

  await pg.proxy.cut()
  const statuses: number[] = []
  for (let round = 0; round < 3; round++) {
    const list = await listOrgs()
    const create = await request(app.url, { method: 'POST', path: '/api/v1/admin/orgs', headers: adminHeaders, body: { slug: uniqueSlug('cut'), name: 'Cut' } })
    const user = await request(app.url, { method: 'POST', path: '/api/v1/admin/users', headers: adminHeaders, body: { email: uniqueEmail(), name: 'Cut', password: 'long enough password' } })
    assertUnavailable(t, list, 'read while cut')
    assertUnavailable(t, create, 'write while cut')
    assertUnavailable(t, user, 'user write while cut')
    statuses.push(list.status, create.status, user.status)
  }
  const ready = await request(app.url, { path: '/ready' })
  t.equal(ready.status, 503, '/ready says not ready')
  t.match(ready.json(), { status: 'error', code: 'unavailable', database: 'down' })
  t.equal((await request(app.url, { path: '/health' })).status, 200, '/health stays 200')
  // A client error is still a client error, not a 503, while the store is down.
  t.equal((await request(app.url, { path: '/api/v1/admin/orgs' })).status, 401)
  t.notOk(statuses.some(status => status === 500), 'no 500 while cut')
  assertAlive(t, app)

  await pg.proxy.restore()
  const recovered = await eventually(listOrgs, res => res.status === 200)
  t.equal(recovered.status, 200, 'reads recover without a restart')
  t.equal((await request(app.url, { path: '/ready' })).status, 200, '/ready recovers')
  const created = await request(app.url, { method: 'POST', path: '/api/v1/admin/orgs', headers: adminHeaders, body: { slug: uniqueSlug('back'), name: 'Back' } })
  t.equal(created.status, 201, 'writes recover')
  t.same(crashLines(app), [], 'nothing uncaught')
})

t.test('writes in flight when PostgreSQL is cut are committed or reported failed, never half-applied', { skip: needs('postgres') }, async t => {
  const { url } = await freshDatabase(t)
  const pg = await proxied(t, url)
  const app = await startInstance(t, 'A', { DATABASE_URL: pg.url })

  // Writes go out one every few milliseconds; the cut lands once some have committed, so it
  // falls among writes still in progress.
  const slugs = Array.from({ length: 80 }, () => uniqueSlug('inflight'))
  let committed = 0
  let cutNow: () => void = () => {}
  const someCommitted = new Promise<void>(resolve => { cutNow = resolve })
  const writes = slugs.map(async (slug, i) => {
    await new Promise(resolve => setTimeout(resolve, i * 5))
    const result = await request(app.url, { method: 'POST', path: '/api/v1/admin/orgs', headers: adminHeaders, body: { slug, name: 'In flight' } })
      .then(res => ({ slug, status: res.status }), () => ({ slug, status: 0 }))
    if (result.status === 201 && ++committed === 10) cutNow()
    return result
  })
  await Promise.race([someCommitted, Promise.all(writes)])
  await pg.proxy.cut()
  const results = await Promise.all(writes)
  await pg.proxy.restore()

  const stored = await withClient(url, async client => {
    const rows = await client.query<{ slug: string }>('select slug from organizations where slug = any($1)', [slugs])
    return new Set(rows.rows.map(row => row.slug))
  })
  const reportedCreated = results.filter(r => r.status === 201)
  const reportedFailed = results.filter(r => r.status !== 201)
  t.ok(results.every(r => r.status === 201 || r.status === 503), `every write answered 201 or 503 (${results.map(r => r.status).join(',')})`)
  t.ok(reportedCreated.length >= 10 && reportedFailed.length > 0, 'the cut fell among the writes')
  t.ok(reportedCreated.every(r => stored.has(r.slug)), `every org reported created exists (${reportedCreated.length})`)
  t.comment(`in-flight writes: ${reportedCreated.length} committed, ${reportedFailed.length} reported failed, ${reportedFailed.filter(r => stored.has(r.slug)).length} of those committed after all`)
  assertAlive(t, app)
  t.same(crashLines(app), [], 'nothing uncaught')
})
