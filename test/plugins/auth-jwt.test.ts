import t from 'tap'
import { build } from '../helper.ts'

const ids = { userId: 'usr_01JZ8Q4K7X3W5N2M9B6V1C0D8E', orgId: 'org_01JZ8Q4K7X3W5N2M9B6V1C0D8E', slug: 'acme', role: 'member' as const, sessionId: 'ses_01JZ8Q4K7X3W5N2M9B6V1C0D8E' }

t.test('access tokens expire 15 minutes after issue', async t => {
  const app = await build(t, { redisUrl: null })
  const claims = app.verifyAccessToken(app.issueAccessToken(ids))
  t.ok(claims !== null)
  t.equal(claims!.exp - claims!.iat, 15 * 60)
  const payload = { sub: ids.userId, org: ids.orgId, slug: ids.slug, role: ids.role, sid: ids.sessionId, typ: 'access' }
  t.ok(app.verifyAccessToken(app.jwt.sign(payload, { clockTimestamp: Date.now() - 14 * 60_000 })) !== null, 'issued 14 minutes ago: valid')
  t.equal(app.verifyAccessToken(app.jwt.sign(payload, { clockTimestamp: Date.now() - 16 * 60_000 })), null, 'issued 16 minutes ago: expired')
})
