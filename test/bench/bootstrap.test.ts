import t from 'tap'
import { ADMIN_TOKEN, build } from '../helper.ts'
import { bootstrap } from '../../bench/lib/bootstrap.ts'
import { injectClient } from '../../bench/lib/http-client.ts'
import { allTargets, selectTargets } from '../../bench/lib/targets.ts'

t.test('the bench bootstrap makes, through the HTTP API, credentials that every route it measures accepts', async t => {
  const app = await build(t)
  const http = injectClient(app)
  const fixture = await bootstrap(http, ADMIN_TOKEN)

  const auth = await app.resolveAccessToken(fixture.accessToken, fixture.org.id)
  t.equal(auth?.user.id, fixture.user.id)
  t.equal(auth?.membership.role, 'org_admin')
  t.match(fixture.apiKey, /^pk_live_[0-9a-f]{64}$/)
  t.match(fixture.restrictedApiKey, /^pk_live_[0-9a-f]{64}$/)
  const keyRows = await app.db.selectFrom('api_keys').select(['scopes', 'allowed_ips']).where('org_id', '=', fixture.org.id).orderBy('created_at').orderBy('id').execute()
  t.equal(keyRows.length, 2, 'two API keys in the bench org: a plain one and a restricted one')
  t.same(keyRows[1].scopes, ['tokens:verify', 'users:read', 'org:read'])
  t.equal(keyRows[1].allowed_ips.length, 10, 'a 10-entry allowlist')

  // Each selected route is probed with the fixture and must answer as the bench expects.
  const { selected } = await selectTargets(http, allTargets(fixture, ADMIN_TOKEN), undefined)
  t.ok(selected.length > 0, 'something to measure')
  await t.rejects(selectTargets(http, allTargets(fixture, ADMIN_TOKEN), 'health,nope'), /unknown nope/)
})
