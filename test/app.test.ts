import t from 'tap'
import { build } from './helper.ts'

t.test('a plugin may take up to 10 minutes to load: the embedded database\'s first start (initdb in a child process, then migrations) on a busy machine takes far longer than Fastify\'s 10 s', async t => {
  const app = await build(t)
  t.equal(app.initialConfig.pluginTimeout, 600_000)
})
