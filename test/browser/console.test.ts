import { existsSync, mkdirSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { serve, type ServerType } from '@hono/node-server'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWebhooks, type Webhooks } from 'cotwebhook'
import { createHostApp, DEMO_TOKENS } from '../../examples/node/app.js'
import { startReceiver, type Receiver } from '../helpers/receiver.js'

/**
 * The delivery console end to end in headless Chromium (Debian's package, driven by playwright-core),
 * against the example host. The main flow runs with JavaScript off: every page and form must work
 * without it. Screenshots land in docs/.
 */

const CHROMIUM = '/usr/bin/chromium'
const required = process.env.COTWEBHOOK_REQUIRE_BROWSER === '1'
const available = existsSync(CHROMIUM)
if (required && !available) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium package`)
if (!available) console.warn(`delivery console in Chromium: skipped, no ${CHROMIUM}; install Debian's chromium package to run it`)
// The screenshots go to .tmp/ so a test run leaves the tree as it was; COTWEBHOOK_UPDATE_SCREENSHOTS=1
// writes the copies docs/ shows.
const docs = process.env.COTWEBHOOK_UPDATE_SCREENSHOTS === '1'
  ? new URL('../../docs/', import.meta.url).pathname
  : new URL('../../.tmp/screenshots/', import.meta.url).pathname
mkdirSync(docs, { recursive: true })
const TOKEN = 'demo-token-acme'
const COMPANY = DEMO_TOKENS[TOKEN]!
const TASK_GROUP = '6261612a8f1e99002e5c8cce'

let browser: Browser
let server: ServerType
let base = ''
let hooks: Webhooks
let receiver: Receiver

beforeAll(async () => {
  if (!available) return
  receiver = await startReceiver(() => ({ status: 204 }))
  hooks = createWebhooks({ allowPrivateNetworks: true, retry: { schedule: [20, 20] }, circuitBreaker: false })
  const { app } = createHostApp({ hooks })
  server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
  mkdirSync(docs, { recursive: true })
}, 60_000)

afterAll(async () => {
  if (!available) return
  await browser?.close()
  await hooks.close()
  await receiver.close()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

async function signIn(page: Page) {
  await page.goto(`${base}/login`)
  await page.fill('input[name=token]', TOKEN)
  await page.click('button')
  await page.waitForURL(`${base}/console`)
}

/** The host's own action that emits: create a task. */
async function createTask(fields: Record<string, unknown>) {
  const res = await fetch(`${base}/tasks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ taskGroup: TASK_GROUP, ...fields }),
  })
  expect(res.status).toBe(201)
  await hooks.drain()
}

describe.skipIf(!available)('delivery console in Chromium', () => {
  it('create with a validation error, deliveries and retries, resend, rotate: all without JavaScript', async () => {
    const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    try {
      await signIn(page)
      await expect(page.locator('main').textContent()).resolves.toContain('No webhooks match')

      // A code with spaces and capitals: refused, with the message beside the field and the input kept.
      await page.click('text=New webhook >> nth=1')
      await page.fill('#name', 'Work orders')
      await page.fill('#code', 'Work Orders')
      await page.fill('#url', `${receiver.url}/hook`)
      await page.fill('[id="context.taskGroup"]', TASK_GROUP)
      await page.click('main button[type=submit]')
      await expect(page.locator('#code-error').textContent()).resolves.toContain('code: only lowercase letters, digits and underscores')
      expect(await page.inputValue('#name')).toBe('Work orders')

      await page.fill('#code', 'work_orders')
      await page.click('main button[type=submit]')
      await expect(page.locator('.notice').textContent()).resolves.toContain('Webhook created')
      const firstSecret = (await page.locator('#secret').textContent())!
      expect(firstSecret).toMatch(/^whsec_/)
      const webhookUrl = page.url().replace(/\?.*$/, '')

      // The host emits; the delivery shows up with its status.
      await createTask({ title: 'Fix the pump' })
      await page.goto(webhookUrl)
      const rows = page.locator('#deliveries tbody tr')
      await expect(rows.count()).resolves.toBe(1)
      await expect(rows.nth(0).textContent()).resolves.toMatch(/succeeded.*204/)

      // The receiver fails: three attempts, all logged, and the delivery ends failed.
      receiver.respond(() => ({ status: 500, body: 'pump controller offline' }))
      await createTask({ title: 'Replace the valve' })
      await page.goto(webhookUrl)
      await expect(rows.nth(0).textContent()).resolves.toMatch(/failed\s*500\s*3/)
      await rows.nth(0).locator('a').first().click()
      await expect(page.locator('#attempts tbody tr').count()).resolves.toBe(3)
      await expect(page.locator('#response').textContent()).resolves.toBe('pump controller offline')
      await expect(page.locator('#event').textContent()).resolves.toContain('Replace the valve')
      await page.screenshot({ path: `${docs}console-delivery.png`, fullPage: true })
      const deliveryUrl = page.url()

      // Resend it once the receiver is back: a new delivery, which succeeds.
      receiver.respond(() => ({ status: 204 }))
      await page.click('button:has-text("Resend")')
      await expect(page.locator('.notice').textContent()).resolves.toContain('Delivery queued again')
      await hooks.drain()
      await page.reload()
      await expect(page.locator('.badge').first().textContent()).resolves.toBe('succeeded')

      // The webhook page: its deliveries, the chart of outcomes and durations.
      await page.goto(webhookUrl)
      await expect(page.locator('svg rect.bar-succeeded').count()).resolves.toBeGreaterThan(0)
      await expect(page.locator('svg rect.bar-failed').count()).resolves.toBeGreaterThan(0)
      await expect(page.locator('figcaption').textContent()).resolves.toMatch(/succeeded 2 .*failed 1/)
      await page.screenshot({ path: `${docs}console-webhook.png`, fullPage: true })

      // Rotate the secret: a new one is shown, and it is the one the registry now signs with first.
      // It asks first: nothing changes until the confirmation is sent.
      await page.click('a:has-text("Rotate secret")')
      await expect(page.locator('#confirm-rotate').textContent()).resolves.toContain('Rotate the signing secret?')
      expect(await hooks.registry.secret(COMPANY, webhookUrl.split('/').pop()!)).toBe(firstSecret)
      await page.click('button:has-text("Rotate the secret now")')
      const rotated = (await page.locator('#secret').textContent())!
      expect(rotated).toMatch(/^whsec_/)
      expect(rotated).not.toBe(firstSecret)
      expect(await hooks.registry.secret(COMPANY, webhookUrl.split('/').pop()!)).toBe(rotated)

      // Deactivate and activate; the list shows it with its health; a test event goes out.
      await page.click('button:has-text("Deactivate")')
      await expect(page.locator('.notice').textContent()).resolves.toContain('Webhook deactivated')
      await page.click('button:has-text("Activate")')
      await page.click('button:has-text("Send test event")')
      await hooks.drain()
      expect(JSON.parse(receiver.requests.at(-1)!.body).extraData).toEqual({ test: true })
      await page.goto(`${base}/console`)
      await expect(page.locator('table tbody tr').first().textContent()).resolves.toMatch(/Work orders.*work_orders.*create-edit-delete-task.*active/)
      await page.screenshot({ path: `${docs}console-list.png`, fullPage: true })
      expect(existsSync(`${docs}console-list.png`)).toBe(true)

      // The same pages on a phone (390 px): nothing wider than the screen; wide tables scroll in
      // their own box, the header wraps with Sign out inside it.
      const phone = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 390, height: 844 } })
      try {
        const small = await phone.newPage()
        await signIn(small)
        for (const [name, url] of [['list', `${base}/console`], ['webhook', webhookUrl], ['delivery', deliveryUrl], ['overview', `${base}/console/overview`]] as const) {
          await small.goto(url)
          const overflow = await small.evaluate(() => {
            const width = document.documentElement.clientWidth
            // Elements sticking out past the right edge, outside a box that scrolls them.
            const out = [...document.querySelectorAll('body *')].filter((el) => {
              for (let up = el.parentElement; up; up = up.parentElement) if (getComputedStyle(up).overflowX !== 'visible') return false
              return el.getBoundingClientRect().right > width + 0.5
            })
            return { page: document.documentElement.scrollWidth - width, elements: out.map((el) => `${el.tagName.toLowerCase()}.${el.className}`).slice(0, 5) }
          })
          expect(overflow, name).toEqual({ page: 0, elements: [] })
          const signOut = await small.locator('header button:has-text("Sign out")').boundingBox()
          expect(signOut!.x + signOut!.width, name).toBeLessThanOrEqual(390)
          await small.screenshot({ path: `${docs}console-${name}-phone.png`, fullPage: true })
        }
      } finally {
        await phone.close()
      }
    } finally {
      await context.close()
    }
  }, 90_000)

  it('shows a script tag in any field, a response or event data as text, never runs it', async () => {
    const xss = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
    const { webhook } = await hooks.registry.create(COMPANY, {
      name: `evil ${xss}`,
      code: 'evil',
      trigger: 'create-edit-delete-task',
      url: `${receiver.url}/evil?q=${encodeURIComponent(xss)}`,
      description: xss,
    })
    receiver.respond(() => ({ status: 500, body: `<script>window.__xss=3</script>` }))
    await createTask({ title: xss })
    receiver.respond(() => ({ status: 204 }))
    const [log] = await hooks.logs(COMPANY, webhook._id)
    const context = await browser.newContext({ javaScriptEnabled: true })
    const page = await context.newPage()
    try {
      await signIn(page)
      for (const path of ['/console', `/console/w/${webhook._id}`, `/console/w/${webhook._id}/d/${log!._id}`, `/console/w/${webhook._id}/edit`]) {
        await page.goto(`${base}${path}`)
        expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), path).toBeUndefined()
        expect(await page.locator('script').count(), path).toBe(0)
        expect(await page.locator('img').count(), path).toBe(0)
      }
      // A form sent back with errors shows what was typed as text too.
      await page.goto(`${base}/console/new`)
      await page.fill('#name', xss)
      await page.fill('#code', 'Not Valid')
      await page.fill('#url', 'javascript:alert(1)')
      await page.click('main button[type=submit]')
      await expect(page.locator('#code-error').count()).resolves.toBe(1)
      expect(await page.inputValue('#name')).toBe(xss)
      expect(await page.locator('script').count()).toBe(0)
      expect(await page.locator('img').count()).toBe(0)
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined()
      // Shown as text: the delivery page holds the receiver's answer and the event's data verbatim.
      await page.goto(`${base}/console/w/${webhook._id}/edit`)
      await expect(page.locator('#description').inputValue()).resolves.toBe(xss)
      await page.goto(`${base}/console/w/${webhook._id}/d/${log!._id}`)
      await expect(page.locator('#response').textContent()).resolves.toBe('<script>window.__xss=3</script>')
      await expect(page.locator('#event').textContent()).resolves.toContain(JSON.stringify(xss).slice(1, -1))
    } finally {
      await context.close()
    }
  }, 60_000)
})
