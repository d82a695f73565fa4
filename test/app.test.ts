import t from 'tap'
import { build } from './helper.ts'

t.test('a plugin may take up to 2 minutes to load: the embedded database\'s first start on a busy machine takes longer than Fastify\'s 10 s', async t => {
  const app = await build(t)
  t.equal(app.initialConfig.pluginTimeout, 120_000)
})
