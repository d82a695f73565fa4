import t from 'tap'
import { build, createOrgWithMember } from '../helper.ts'
import { recordEvent, SYSTEM_ACTOR } from '../../db/queries/events.ts'

// Run by test/log-secrets.test.ts as a test process of its own (not part of the suite): it records
// an audit event holding the password its own request sent, and leaves it stored. The check of
// stored events at the end of the process must then fail the process.
t.setTimeout(600_000) // as the suite's files: a loaded machine starts the embedded database slowly
t.test('an event holding a password is stored', async t => {
  const app = await build(t)
  const { org, user } = await createOrgWithMember(app)
  await app.db.transaction().execute(trx => recordEvent(trx, {
    type: 'user.login', orgId: org.id, actor: SYSTEM_ACTOR, target: { type: 'user', id: user.id }, data: { password: user.password }, ip: null
  }))
  t.pass('planted')
})
