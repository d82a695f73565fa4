import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { chromium, type Page } from 'playwright-core'
import { build, createApiKey, createOrgWithMember } from '../helper.ts'

// `npm run test:browser` (not part of `npm test`): /docs in a real browser, Debian's Chromium driven by
// playwright-core. The API-key operations render, and Swagger UI's Authorize (apiKey scheme) plus
// "Try it out" on GET /public/org gets a 200 from the running app.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OUTPUT = new URL('../../test-output/', import.meta.url).pathname
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync']

const API_KEY_OPERATIONS: Array<[method: string, path: string]> = [
  ['post', '/api/v1/public/verify'],
  ['get', '/api/v1/public/users/{userId}'],
  ['get', '/api/v1/public/org'],
  ['post', '/api/v1/org/api-keys'],
  ['get', '/api/v1/org/api-keys'],
  ['delete', '/api/v1/org/api-keys/{keyId}']
]

const operation = (page: Page, method: string, path: string) =>
  page.locator(`.opblock.opblock-${method}`).filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) })

t.test('/docs: the API-key operations render, and Authorize + Try it out on GET /public/org answers 200', async t => {
  const app = await build(t)
  const origin = await app.listen({ host: '127.0.0.1', port: 0 })
  const fixture = await createOrgWithMember(app)
  const { key } = await createApiKey(app, fixture, { name: 'Docs browser test' })
  const documented = Object.values<Record<string, unknown>>((await app.inject({ method: 'GET', url: '/docs/json' })).json().paths)
    .reduce((count, item) => count + Object.keys(item).length, 0)

  const profile = mkdtempSync(join(tmpdir(), 'tenantkey-chromium-'))
  t.teardown(() => rmSync(profile, { recursive: true, force: true }))
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 1600 } })
  t.teardown(() => browser.close())
  const page = browser.pages()[0] ?? await browser.newPage()
  const consoleErrors: string[] = []
  page.on('pageerror', error => consoleErrors.push(error.message))

  await page.goto(`${origin}/docs`)
  await page.locator('.opblock').first().waitFor({ timeout: 60_000 })
  t.equal(await page.locator('.opblock').count(), documented, `every documented operation renders (${documented})`)
  for (const [method, path] of API_KEY_OPERATIONS) {
    const block = operation(page, method, path)
    t.equal(await block.count(), 1, `${method.toUpperCase()} ${path} renders`)
    t.ok((await block.locator('.opblock-summary-description').innerText()).trim().length > 0, `${method.toUpperCase()} ${path} shows its summary`)
  }

  // Authorize with the key under the apiKey scheme (X-API-Key)
  await page.locator('.auth-wrapper button.authorize').click()
  const scheme = page.locator('.auth-container').filter({ has: page.locator('h4', { hasText: /^apiKey\s*\(apiKey\)/ }) })
  await scheme.locator('input').fill(key)
  await scheme.locator('button.authorize').click()
  await scheme.locator('button', { hasText: 'Logout' }).waitFor() // Swagger UI now holds the key
  await scheme.locator('button.btn-done').click()
  await page.locator('.dialog-ux').waitFor({ state: 'detached' })

  // Try it out → Execute on GET /public/org, X-Org-Slug filled in
  const getOrg = operation(page, 'get', '/api/v1/public/org')
  await getOrg.locator('.opblock-summary').first().click()
  await getOrg.locator('.opblock-body').waitFor()
  // tryItOutEnabled opens operations ready to try; otherwise press "Try it out" first
  if (!await getOrg.locator('button.execute').isVisible()) await getOrg.locator('button.try-out__btn').click()
  await getOrg.locator('tr[data-param-name="x-org-slug"] input').fill(fixture.org.slug)
  await getOrg.locator('button.execute').click()
  const status = getOrg.locator('.live-responses-table .response .response-col_status').first()
  await status.waitFor({ timeout: 30_000 })
  t.equal((await status.innerText()).trim(), '200', 'Swagger UI shows 200')
  const shown = await getOrg.locator('.live-responses-table').first().innerText()
  t.match(shown, `"slug": "${fixture.org.slug}"`, 'and the org in the response body')
  t.match(shown, /x-ratelimit-remaining: 299/, 'and the rate-limit headers')
  t.match(await getOrg.locator('.curl-command').innerText(), `X-API-Key: ${key}`, 'the key went as X-API-Key, from Authorize')

  mkdirSync(OUTPUT, { recursive: true })
  await page.screenshot({ path: join(OUTPUT, 'docs-public-org.png'), fullPage: false })
  await getOrg.screenshot({ path: join(OUTPUT, 'docs-public-org-try-it-out.png') })
  t.same(consoleErrors, [], 'no script errors in the page')
})
