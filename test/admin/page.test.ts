// The operator page in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser download): after real skopeo pulls through trustpull from a real
// docker-registry with real cosign signatures, the list shows the refused image first, its detail
// page shows the reason and each signature's code, and the link at the end of skopeo's own error
// message opens that page. Screenshots go to .tap/admin/. Anonymous and non-admin browsers get
// 401/403.
import t from 'tap'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { pushImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const CHROMIUM = process.env.TRUSTPULL_TEST_CHROMIUM ?? '/usr/bin/chromium'
const SHOTS = join(REPO_ROOT, '.tap/admin')
const ADMIN_TOKEN = 'ops-token-0123456789abcdef'
const NODE_TOKEN = 'node-token-0123456789abcdef'

async function launch(t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(() => browser.close())
  return browser
}

// Each CLI run and browser start costs seconds of start-up on a loaded 2-core machine.
t.setTimeout(480_000)

t.test('the page, in Chromium, over real pulls', async (t) => {
  await mkdir(SHOTS, { recursive: true })
  const registry = await startRegistry(t)
  const work = await tempDir(t)
  const [key, otherKey] = await Promise.all([generateKeyPair(await tempDir(t)), generateKeyPair(await tempDir(t))])
  const good = await pushImage(registry.url, 'library/web', '1')
  const wrong = await pushImage(registry.url, 'library/api', '1', { seed: 'api' })
  await Promise.all([
    signImage(`${registry.host}/library/web@${good.digest}`, key.privateKeyPath),
    signImage(`${registry.host}/library/api@${wrong.digest}`, otherKey.privateKeyPath),
  ])

  // admin.publicUrl must name the proxy's own address, known before it starts.
  const port = await freePort()
  const proxy = await startProxy(
    t,
    hubConfig(registry.url, {
      listen: `127.0.0.1:${port}`,
      admin: { publicUrl: `http://127.0.0.1:${port}` },
      policies: [{ name: 'library', images: [{ glob: 'index.docker.io/library/*' }], authorities: [{ name: 'release-key', key: { data: key.publicKeyPem } }] }],
    }),
  )
  const ok = await skopeoCopy(`${proxy.host}/library/web:1`, join(work, 'web'))
  t.equal(ok.code, 0, ok.stderr)
  const refused = await skopeoCopy(`${proxy.host}/library/api:1`, join(work, 'api'))
  t.not(refused.code, 0)
  const link = /\(details: (http:\/\/[^\s)"\\]+)\)/.exec(refused.stderr)?.[1]
  t.equal(link, `http://127.0.0.1:${port}/ui/verdicts/${wrong.digest}`, "skopeo's error message ends with the page's link")

  const browser = await launch(t)
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })

  t.test('the list shows the refused image first', async (t) => {
    const res = await page.goto(`${proxy.url}/ui/`)
    t.equal(res?.status(), 200)
    const rows = page.locator('tr.verdict')
    t.equal(await rows.count(), 2)
    t.match(await rows.nth(0).innerText(), /DENY\s+docker\.io\/library\/api/i)
    t.match(await rows.nth(1).innerText(), /ALLOW\s+docker\.io\/library\/web/i)
    t.match(await page.locator('body').innerText(), 'Policies in force')
    await page.screenshot({ path: join(SHOTS, 'ui-list.png'), fullPage: true })

    await page.selectOption('select[name=result]', 'allow')
    await page.click('button[type=submit]')
    t.equal(await rows.count(), 1, 'the filter form works without JavaScript (a GET form)')
    t.match(await rows.nth(0).innerText(), 'library/web')
  })

  t.test("skopeo's link opens the detail page: the reason and each signature's code", async (t) => {
    const res = await page.goto(link!)
    t.equal(res?.status(), 200)
    t.match(await page.locator('#reason').innerText(), 'policy "library": no signature verified (1 found)')
    const evidence = page.locator('tr.evidence')
    t.equal(await evidence.count(), 1)
    t.match(await evidence.nth(0).locator('.code').innerText(), 'UNTRUSTED_KEY')
    t.match(await evidence.nth(0).innerText(), 'sig-tag')
    t.match(await page.locator('body').innerText(), 'Authority release-key (key)')
    await page.screenshot({ path: join(SHOTS, 'ui-verdict-deny.png'), fullPage: true })

    await page.goto(`${proxy.url}/ui/verdicts/${good.digest}`)
    t.match(await page.locator('tr.evidence .code').innerText(), 'VERIFIED')
    await page.screenshot({ path: join(SHOTS, 'ui-verdict-allow.png'), fullPage: true })
  })

  t.test('readable on a phone: no horizontal scrolling of the page itself', async (t) => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true })
    await phone.goto(link!)
    const overflow = await phone.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth')
    t.equal(overflow, 0)
    await phone.screenshot({ path: join(SHOTS, 'ui-verdict-phone.png'), fullPage: true })
    await phone.close()
  })

  t.test('the page loads nothing but itself and runs no script', async (t) => {
    const requested: string[] = []
    const fresh = await browser.newPage()
    fresh.on('request', (r) => requested.push(r.url()))
    await fresh.goto(`${proxy.url}/ui/`)
    t.same(requested, [`${proxy.url}/ui/`])
    t.equal(await fresh.locator('script').count(), 0)
    await fresh.close()
  })
})

t.test('anonymous and non-admin browsers are refused the page', async (t) => {
  const registry = await startRegistry(t)
  const proxy = await startProxy(
    t,
    hubConfig(registry.url, {
      clients: {
        tokens: [
          { name: 'ops', token: ADMIN_TOKEN },
          { name: 'node-1', token: NODE_TOKEN },
        ],
        admins: ['ops'],
      },
    }),
  )
  const browser = await launch(t)
  const as = async (token?: string) => {
    const context = await browser.newContext(token ? { extraHTTPHeaders: { authorization: `Bearer ${token}` } } : {})
    const page = await context.newPage()
    const res = await page.goto(`${proxy.url}/ui/`)
    const status = res?.status()
    await context.close()
    return status
  }
  t.equal(await as(), 401)
  t.equal(await as(NODE_TOKEN), 403)
  t.equal(await as(ADMIN_TOKEN), 200)
})
