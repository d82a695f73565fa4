import t from 'tap'
import { build, REDIS_URL } from '../helper.ts'
import { getOrg, keyedOrg, limits } from '../support/rate-limit.ts'

t.test('400 concurrent requests at one key: exactly 300 pass', async t => {
  const app = await build(t)
  const headers = await keyedOrg(app)
  const responses = await Promise.all(Array.from({ length: 400 }, () => getOrg(app, headers)))
  const codes = responses.map(res => res.statusCode)
  const histogram = JSON.stringify(codes.reduce<Record<number, number>>((counts, code) => ({ ...counts, [code]: (counts[code] ?? 0) + 1 }), {}))
  t.equal(codes.filter(code => code === 200).length, 300, histogram)
  t.equal(codes.filter(code => code === 429).length, 100, histogram)
  const remaining = responses.filter(res => res.statusCode === 200).map(res => limits(res).remaining).sort((a, b) => a - b)
  t.same(remaining, Array.from({ length: 300 }, (_, i) => i), 'each of the 300 saw a different Remaining')
  t.equal(new Set(responses.map(res => limits(res).reset)).size, 1, 'one Reset for all')
})

t.test('with Redis, two instances share one budget per key', { skip: REDIS_URL === null ? 'needs REDIS_URL' : false }, async t => {
  const a = await build(t)
  const b = await build(t)
  const headers = await keyedOrg(a)
  const codes = []
  for (let i = 0; i < 300; i++) codes.push((await getOrg(i % 2 === 0 ? a : b, headers)).statusCode)
  t.equal(codes.filter(code => code === 200).length, 300)
  const onA = await getOrg(a, headers)
  const onB = await getOrg(b, headers)
  t.same([onA.statusCode, onB.statusCode], [429, 429], '300 in total across both instances, not 600')
  t.equal(limits(onA).reset, limits(onB).reset, 'one window')
})
