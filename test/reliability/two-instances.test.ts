import t from 'tap'
import { adminHeaders, uniqueSlug } from '../helper.ts'
import { freshDatabase, freshRedisPrefix, needs } from './support/stores.ts'
import { startInstances } from './support/instances.ts'
import { request } from './support/http.ts'

// Several real server processes behind no balancer, sharing one PostgreSQL database and one
// Redis: what one instance writes, every other one sees at once.
t.test('two instances share one database and one Redis', { skip: needs('postgres', 'redis') }, async t => {
  const { url } = await freshDatabase(t)
  const [a, b] = await startInstances(t, 2, { DATABASE_URL: url, REDIS_URL: process.env.REDIS_URL, REDIS_PREFIX: freshRedisPrefix(t) })
  for (const instance of [a, b]) {
    const ready = await request(instance.url, { path: '/ready' })
    t.equal(ready.status, 200, `${instance.name} is ready`)
    t.match(ready.json(), { database: 'up', redis: 'up' })
  }
  const slug = uniqueSlug('shared')
  const created = await request(a.url, { method: 'POST', path: '/api/v1/admin/orgs', headers: adminHeaders, body: { slug, name: 'Shared' } })
  t.equal(created.status, 201)
  const listed = await request(b.url, { path: '/api/v1/admin/orgs', headers: adminHeaders })
  t.ok(listed.json().data.orgs.some((org: { slug: string }) => org.slug === slug), 'B lists the org A created')
})
