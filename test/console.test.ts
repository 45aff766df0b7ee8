import { Validator } from '@seriousme/openapi-schema-validator'
import { Hono } from 'hono'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createCsrf, openApiDocument, webhookApi, webhookConsole } from 'cotwebhook/hono'
import type { Webhooks } from 'cotwebhook'
import { COMPANY, OTHER_COMPANY, TASK_GROUP, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'

const SESSIONS: Record<string, string> = { a: COMPANY, b: OTHER_COMPANY, odd: 'acme' }
let hooks: Webhooks
let app: Hono
const errors: unknown[] = []

beforeEach(() => {
  hooks = engine({ retry: { schedule: [] }, dispatch: false, allowPrivateNetworks: false })
  app = new Hono()
  app.route('/admin/hooks', webhookConsole(hooks, {
    company: (c) => SESSIONS[c.req.header('x-session') ?? ''],
    basePath: '/admin/hooks',
    loginUrl: '/sign-in',
    logoutUrl: '/sign-out',
    csrfSecret: 'test-secret',
    onError: (e) => errors.push(e),
  }))
  app.route('/api/v3', webhookApi(hooks, { company: () => COMPANY }))
})
afterEach(async () => {
  await closeAll()
  expect(errors).toEqual([])
  errors.length = 0
})

const get = async (path: string, session = 'a') => {
  const res = await app.request(path, { headers: session ? { 'x-session': session } : {} })
  return { status: res.status, text: await res.text(), headers: res.headers }
}
const csrfOf = (html: string) => html.match(/name="_csrf" value="([^"]+)"/)![1]!
const post = async (path: string, fields: Record<string, string>, session = 'a') => {
  const res = await app.request(path, {
    method: 'POST',
    headers: { 'x-session': session, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields),
  })
  return { status: res.status, text: await res.text(), location: res.headers.get('location') }
}
const token = async (session = 'a') => csrfOf((await get('/admin/hooks/new', session)).text)

describe('webhookConsole', () => {
  it('answers 401 with a sign-in link without a company, and sends its security headers', async () => {
    const anonymous = await get('/admin/hooks', '')
    // Nothing to navigate to, nothing to sign out of: a visitor not signed in sees the way in only.
    expect(anonymous.text).not.toContain('New webhook')
    expect(anonymous.text).not.toContain('Sign out')
    expect(anonymous.status).toBe(401)
    expect(anonymous.text).toContain('href="/sign-in"')
    const page = await get('/admin/hooks')
    expect(page.status).toBe(200)
    expect(page.text).toContain('Sign out')
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'")
    expect(page.headers.get('content-security-policy')).toContain("form-action 'self'")
    expect(page.headers.get('cache-control')).toBe('no-store')
    expect(page.text).not.toMatch(/<script|<link|https?:\/\/(?!127)/)
  })

  it('shows a 500 page and reports the host’s resolver when it maps a session to something that is not a company id', async () => {
    const res = await get('/admin/hooks', 'odd')
    expect(res.status).toBe(500)
    expect(res.text).toContain('Something went wrong')
    expect(res.text).not.toContain('acme')
    expect(errors).toHaveLength(1)
    expect((errors[0] as Error).message).toMatch(/^webhookConsole: options\.company returned "acme", which is not a company id/)
    errors.length = 0
  })

  it('marks test events, and says a pending delivery past its time is in line rather than late', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, { name: 'T', code: 't', trigger: 'create-edit-delete-user', url: 'https://example.com/h' })
    await hooks.emit({ company: COMPANY, type: 'COTUser', event: 'edit', data: { _id: COMPANY } })
    await hooks.sendTest(COMPANY, webhook._id)
    const page = await get(`/admin/hooks/w/${webhook._id}`)
    // Nothing delivers here (dispatch is off): both wait, due.
    const rows = page.text.split('<tr data-delivery=').slice(1)
    expect(rows).toHaveLength(2)
    expect(rows.filter((row) => row.includes('>test</span>'))).toHaveLength(1)
    expect(rows.every((row) => row.includes('due, in line'))).toBe(true)
  })

  it('charts deliveries of the same second as one bar, not spread over the axis', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, { name: 'C', code: 'c', trigger: 'create-edit-delete-user', url: 'https://example.com/h' })
    for (let i = 0; i < 3; i++) await hooks.emit({ company: COMPANY, type: 'COTUser', event: 'edit', data: { _id: COMPANY, n: i } })
    const page = await get(`/admin/hooks/w/${webhook._id}`)
    const bars = page.text.match(/<rect class="bar-pending"[^>]*>/g) ?? []
    expect(bars).toHaveLength(1)
    expect(page.text).toContain('<title>3 pending</title>')
  })

  it('links a delivery and its resend both ways', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, { name: 'L', code: 'l', trigger: 'create-edit-delete-user', url: 'https://example.com/h' })
    const { deliveries: [original] } = await hooks.emit({ company: COMPANY, type: 'COTUser', event: 'edit', data: { _id: COMPANY } })
    await hooks.emit({ company: COMPANY, type: 'COTUser', event: 'edit', data: { _id: COMPANY, other: true } })
    await new Promise((resolve) => setTimeout(resolve, 2)) // the resend is made a moment later
    const { deliveries: [resent] } = await hooks.resend(COMPANY, original!.id)
    const first = await get(`/admin/hooks/w/${webhook._id}/d/${original!.id}`)
    expect(first.text).toContain('Sent again as')
    expect(first.text).toContain(`href="/admin/hooks/w/${webhook._id}/d/${resent!.id}"`)
    expect(first.text).not.toContain('A resend of')
    const again = await get(`/admin/hooks/w/${webhook._id}/d/${resent!.id}`)
    expect(again.text).toContain('A resend of')
    expect(again.text).toContain(`href="/admin/hooks/w/${webhook._id}/d/${original!.id}"`)
    // The other event of the same webhook is no copy.
    expect(again.text.match(/\/d\/[0-9a-f]{24}"/g)).toHaveLength(1)
  })

  it('asks before rotating a secret: the webhook page links to a confirmation, which holds the only form', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, { name: 'R', code: 'r', trigger: 'create-edit-delete-user', url: 'https://example.com/h' })
    const plain = await get(`/admin/hooks/w/${webhook._id}`)
    expect(plain.text).toContain(`href="/admin/hooks/w/${webhook._id}?confirm=rotate"`)
    expect(plain.text).not.toContain(`action="/admin/hooks/w/${webhook._id}/rotate"`)
    const asking = await get(`/admin/hooks/w/${webhook._id}?confirm=rotate`)
    expect(asking.text).toContain('Rotate the signing secret?')
    expect(asking.text).toContain(`action="/admin/hooks/w/${webhook._id}/rotate"`)
  })

  it('refuses a form without a valid CSRF token, from another company, or too old, and changes nothing', async () => {
    const fields = { name: 'x', code: 'x', trigger: 'create-edit-delete-user', url: 'https://example.com/h', isActive: 'true' }
    expect((await post('/admin/hooks/new', fields)).status).toBe(403)
    expect((await post('/admin/hooks/new', { ...fields, _csrf: 'nope' })).status).toBe(403)
    expect((await post('/admin/hooks/new', { ...fields, _csrf: await token('b') })).status).toBe(403)
    const old = createCsrf({ secret: 'test-secret', now: () => Date.now() - 13 * 3_600_000 })
    expect((await post('/admin/hooks/new', { ...fields, _csrf: await old.issue(COMPANY) })).status).toBe(403)
    expect((await hooks.registry.list(COMPANY)).count).toBe(0)
    const created = await post('/admin/hooks/new', { ...fields, _csrf: await token() })
    expect(created.status).toBe(303)
    expect(created.location).toMatch(/^\/admin\/hooks\/w\/[0-9a-f]{24}\?done=created&show=secret$/)
  })

  it('creates an Ed25519 webhook: the page shows its whpk_ public key as such; a bad choice is shown beside the field', async () => {
    const fields = { name: 'E', code: 'e', trigger: 'create-edit-delete-user', url: 'https://example.com/h', isActive: 'true' }
    expect((await get('/admin/hooks/new')).text).toContain('<option value="ed25519">Ed25519 (v1a, public key)</option>')
    const bad = await post('/admin/hooks/new', { ...fields, signature: 'rsa', _csrf: await token() })
    expect(bad.status).toBe(400)
    expect(bad.text).toMatch(/id="signature-error"[^>]*>signature: must be &quot;hmac-sha256&quot; or &quot;ed25519&quot;/)
    expect((await hooks.registry.list(COMPANY)).count).toBe(0)
    const created = await post('/admin/hooks/new', { ...fields, signature: 'ed25519', _csrf: await token() })
    expect(created.status).toBe(303)
    const page = await get(created.location!)
    const shown = page.text.match(/<code id="secret">([^<]+)<\/code>/)?.[1]
    expect(shown).toMatch(/^whpk_/)
    expect(page.text).toContain('Public key (Ed25519)')
    const [webhook] = (await hooks.registry.list(COMPANY)).webhooks
    expect(shown).toBe(await hooks.registry.secret(COMPANY, webhook!._id))
    // The edit form has no signature field: the kind changes only at a rotation.
    const edit = (await get(`/admin/hooks/w/${webhook!._id}/edit`)).text
    expect(edit).toContain('name="url"')
    expect(edit).not.toContain('name="signature"')
  })

  it('shows validation errors beside their fields and keeps what was typed', async () => {
    const res = await post('/admin/hooks/new', {
      _csrf: await token(), name: '', code: 'Bad Code', trigger: 'create-edit-delete-task', url: 'http://169.254.169.254/', 'context.taskGroup': 'not-an-id',
    })
    expect(res.status).toBe(400)
    expect(res.text).toMatch(/id="code-error"[^>]*>code: only lowercase letters, digits and underscores/)
    expect(res.text).toMatch(/id="name-error"[^>]*>name: /)
    expect(res.text).toMatch(/id="context.taskGroup-error"[^>]*>context.taskGroup: /)
    expect(res.text).toContain('value="Bad Code"')
    expect(res.text).toContain('value="http://169.254.169.254/"')
    // Rules checked after the shapes (a context field the trigger does not use, an unsafe URL) show beside their fields too.
    const later = await post('/admin/hooks/new', {
      _csrf: await token(), name: 'n', code: 'later', trigger: 'create-edit-delete-user', url: 'http://169.254.169.254/', 'context.taskGroup': TASK_GROUP,
    })
    expect(later.status).toBe(400)
    expect(later.text).toMatch(/id="context.taskGroup-error"[^>]*>context.taskGroup: /)
    const unsafe = await post('/admin/hooks/new', { _csrf: await token(), name: 'n', code: 'later', trigger: 'create-edit-delete-user', url: 'http://169.254.169.254/' })
    expect(unsafe.text).toMatch(/id="url-error"[^>]*>url: 169.254.169.254 is a link-local address/)
    expect((await hooks.registry.list(COMPANY)).count).toBe(0)
  })

  it('scopes every page to the company: another company\'s webhook and deliveries are 404', async () => {
    const { webhook } = await hooks.registry.create(OTHER_COMPANY, taskWebhook('https://example.com/other'))
    const mine = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/mine'))
    const { deliveries } = await hooks.emit(taskEvent(1, OTHER_COMPANY))
    const csrf = await token()
    for (const path of [`/admin/hooks/w/${webhook._id}`, `/admin/hooks/w/${webhook._id}/edit`, `/admin/hooks/w/${mine.webhook._id}/d/${deliveries[0]!.id}`, `/admin/hooks/w/${webhook._id}/d/${deliveries[0]!.id}`, '/admin/hooks/w/not-an-id']) {
      const res = await get(path)
      expect(res.status, path).toBeGreaterThanOrEqual(400)
      expect(res.status, path).toBeLessThan(500)
      expect(res.text).not.toContain('https://example.com/other')
    }
    for (const action of ['active', 'rotate', 'test', 'edit']) {
      const res = await post(`/admin/hooks/w/${webhook._id}/${action}`, { _csrf: csrf, isActive: 'false', name: 'taken' })
      expect(res.status, action).toBe(404)
    }
    expect(await hooks.registry.get(OTHER_COMPANY, webhook._id)).toEqual(webhook)
    expect((await get('/admin/hooks')).text).not.toContain('https://example.com/other')
  })

  it('filters the list by trigger and state, and pages', async () => {
    for (let i = 0; i < 3; i++) await hooks.registry.create(COMPANY, taskWebhook(`https://example.com/t${i}`, { code: `task_${i}`, isActive: i !== 2 }))
    await hooks.registry.create(COMPANY, { name: 'Users', code: 'users', trigger: 'create-edit-delete-user', url: 'https://example.com/u' })
    const rows = (html: string) => html.match(/<tr><td><a /g)?.length ?? 0
    expect(rows((await get('/admin/hooks')).text)).toBe(4)
    expect(rows((await get('/admin/hooks?trigger=create-edit-delete-task')).text)).toBe(3)
    expect(rows((await get('/admin/hooks?trigger=create-edit-delete-task&active=false')).text)).toBe(1)
    expect(rows((await get('/admin/hooks?trigger=nonsense&active=maybe&page=-4')).text)).toBe(4)
  })

  it('edits with the version it read: a stale form says so instead of overwriting', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/e'))
    const form = (await get(`/admin/hooks/w/${webhook._id}/edit`)).text
    expect(form).toMatch(/name="code" value="[^"]+" readonly/)
    await hooks.registry.update(COMPANY, webhook._id, { name: 'changed elsewhere' })
    const fields = { _csrf: csrfOf(form), __v: '0', name: 'mine', code: 'hijack', trigger: webhook.trigger, url: webhook.url, isActive: 'true', 'context.taskGroup': '' }
    const stale = await post(`/admin/hooks/w/${webhook._id}/edit`, fields)
    expect(stale.status).toBe(409)
    expect(stale.text).toContain('Someone else saved this webhook meanwhile')
    // The form comes back with what was typed and the version now stored: saving again is possible.
    expect(stale.text).toContain('name="__v" value="1"')
    expect(stale.text).toContain('value="mine"')
    const fresh = await post(`/admin/hooks/w/${webhook._id}/edit`, { ...fields, __v: '1' })
    expect(fresh.status).toBe(303)
    expect(await hooks.registry.get(COMPANY, webhook._id)).toMatchObject({ name: 'mine', code: webhook.code, __v: 2 })
  })

  it('recovers failed deliveries since a UTC time from the form', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/r'))
    const { deliveries } = await hooks.emit(taskEvent(1))
    const claimed = await hooks.store.claim({ now: Date.now(), limit: 1, leaseMs: 60_000, owner: 't', ordered: true })
    await hooks.store.settle(claimed[0]!.lease, { now: Date.now(), state: 'failed', response: 'down', attempt: { at: new Date().toISOString(), status: 500, durationMs: 1 } })
    const page = (await get(`/admin/hooks/w/${webhook._id}`)).text
    const res = await post(`/admin/hooks/w/${webhook._id}/recover`, { _csrf: csrfOf(page), since: new Date(Date.now() - 60_000).toISOString().slice(0, 16) })
    expect(res.location).toBe(`/admin/hooks/w/${webhook._id}?done=recovered&n=1`)
    expect((await get(res.location!)).text).toContain('1 failed delivery queued again.')
    const bad = await post(`/admin/hooks/w/${webhook._id}/recover`, { _csrf: csrfOf(page), since: 'last tuesday' })
    expect(bad.status).toBe(400)
    expect(bad.text).toContain('since: pick a date and time')
    expect(deliveries).toHaveLength(1)
  })

  it('redirects a trailing slash to a page it knows, and nothing else, even mounted at the root', async () => {
    expect((await app.request('/admin/hooks/', { headers: { 'x-session': 'a' } })).headers.get('location')).toBe('/admin/hooks')
    const root = new Hono()
    root.route('/', webhookConsole(hooks, { company: () => COMPANY, basePath: '/', onError: (e) => errors.push(e) }))
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/r'))
    expect((await root.request(`/w/${webhook._id}/`)).headers.get('location')).toBe(`/w/${webhook._id}`)
    for (const path of ['//evil.example/', '/%5Cevil.example/', '/%09/evil.example/', '/%0d%0aSet-Cookie:x=1/', '/admin/hooks//evil.example/']) {
      const res = await root.request(path)
      expect(res.status, path).toBe(404)
      expect(res.headers.get('location'), path).toBeNull()
    }
    expect((await get('/admin/hooks/nowhere')).status).toBe(404)
  })

  it('answers a malformed, oversized or cross-site form with 400, 413 or 403, never a 500', async () => {
    const garbage = await app.request('/admin/hooks/new', { method: 'POST', headers: { 'x-session': 'a', 'content-type': 'multipart/form-data' }, body: 'not multipart' })
    expect(garbage.status).toBe(400)
    const huge = await post('/admin/hooks/new', { _csrf: await token(), name: 'x'.repeat(70_000) })
    expect(huge.status).toBe(413)
    const fields = { _csrf: await token(), name: 'x', code: 'x', trigger: 'create-edit-delete-user', url: 'https://example.com/h' }
    for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }] as Record<string, string>[]) {
      const res = await app.request('http://localhost/admin/hooks/new', {
        method: 'POST',
        headers: { 'x-session': 'a', 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(fields),
      })
      expect(res.status, JSON.stringify(headers)).toBe(403)
    }
    const same = await app.request('http://localhost/admin/hooks/new', {
      method: 'POST',
      headers: { 'x-session': 'a', 'content-type': 'application/x-www-form-urlencoded', origin: 'http://localhost', 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams(fields),
    })
    expect(same.status).toBe(303)
    expect((await hooks.registry.list(COMPANY)).count).toBe(1)
  })

  it('binds form tokens to the session when the host names one', async () => {
    const bound = new Hono()
    bound.route('/c', webhookConsole(hooks, { company: () => COMPANY, session: (c) => c.req.header('x-user'), basePath: '/c', onError: (e) => errors.push(e) }))
    const page = await (await bound.request('/c/new', { headers: { 'x-user': 'alice' } })).text()
    const submit = (user: string) =>
      bound.request('/c/new', {
        method: 'POST',
        headers: { 'x-user': user, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: csrfOf(page), name: 'x', code: `c_${user}`, trigger: 'create-edit-delete-user', url: 'https://example.com/h' }),
      })
    expect((await submit('mallory')).status).toBe(403)
    expect((await submit('alice')).status).toBe(303)
  })

  it('a delivery of another webhook of the same company is not shown under this one', async () => {
    const one = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/one', { code: 'one' }))
    const two = await hooks.registry.create(COMPANY, { name: 'two', code: 'two', trigger: 'create-edit-delete-user', url: 'https://example.com/two' })
    const { deliveries } = await hooks.emit({ company: COMPANY, type: 'COTUser', event: 'create', data: { _id: COMPANY } })
    expect((await get(`/admin/hooks/w/${two.webhook._id}/d/${deliveries[0]!.id}`)).status).toBe(200)
    const crossed = await get(`/admin/hooks/w/${one.webhook._id}/d/${deliveries[0]!.id}`)
    expect(crossed.status).toBe(404)
    expect((await post(`/admin/hooks/w/${one.webhook._id}/d/${deliveries[0]!.id}/resend`, { _csrf: await token() })).status).toBe(404)
    const other = await hooks.registry.create(OTHER_COMPANY, taskWebhook('https://example.com/secret-place'))
    const peek = await get(`/admin/hooks/w/${other.webhook._id}?show=secret`)
    expect(peek.status).toBe(404)
    expect(peek.text).not.toContain('whsec_')
  })

  it('pages a webhook\'s deliveries, and a page past the end shows the last one', async () => {
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/p'))
    for (let n = 0; n < 45; n++) await hooks.emit(taskEvent(n))
    const ids = (html: string) => [...html.matchAll(/data-delivery="([0-9a-f]{24})"/g)].map((m) => m[1])
    const pages = [1, 2, 3].map(async (n) => ids((await get(`/admin/hooks/w/${webhook._id}?page=${n}`)).text))
    const [a, b, c] = await Promise.all(pages)
    expect([a!.length, b!.length, c!.length]).toEqual([20, 20, 5])
    expect(new Set([...a!, ...b!, ...c!]).size).toBe(45)
    expect(ids((await get(`/admin/hooks/w/${webhook._id}?page=999999999`)).text)).toEqual(c)
  })
})

describe('OpenAPI document', () => {
  it('is served by webhookApi without credentials, is valid OpenAPI 3.1, and covers every route', async () => {
    const res = await app.request('/api/v3/webhook/openapi.json')
    expect(res.status).toBe(200)
    const doc = (await res.json()) as ReturnType<typeof openApiDocument>
    // An independent validator of the OpenAPI 3.1 specification's own schema.
    const validator = new Validator()
    const verdict = await validator.validate(doc as never)
    expect(verdict.errors).toBeUndefined()
    expect(verdict.valid).toBe(true)
    expect(validator.version).toBe('3.1')
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
    expect(operations.sort()).toEqual([
      'GET /webhook/stats', 'GET /webhook/subscription', 'GET /webhook/subscription/logs/{id}', 'GET /webhook/subscription/{id}', 'GET /webhook/subscription/{id}/health',
      'GET /webhook/subscription/{id}/secret', 'PATCH /webhook/subscription/{id}', 'POST /webhook/subscription', 'POST /webhook/subscription/logs/{logId}/resend',
      'POST /webhook/subscription/{id}/recover', 'POST /webhook/subscription/{id}/secret/rotate', 'POST /webhook/subscription/{id}/test',
    ])
    const schemas = (doc.components as { schemas: Record<string, Json> }).schemas
    expect(schemas.WebhookInput!.required).toEqual(expect.arrayContaining(['name', 'code', 'trigger', 'url']))
    expect((schemas.WebhookInput!.properties as Record<string, Json>).code!.pattern).toBe('^[a-z0-9_]+$')
    expect((schemas.WebhookInput!.properties as Record<string, Json>).trigger!.enum).toContain('logout-user')
    // No branch that accepts anything (a Date in valibot has no JSON form).
    expect(JSON.stringify(doc)).not.toContain('{}]')
    expect(JSON.stringify(doc)).not.toMatch(/whsec_[A-Za-z0-9+/]{20,}/)
    // Every route the document names answers (not 404) on the real API.
    for (const operation of operations) {
      const [method, path] = operation.split(' ') as [string, string]
      const concrete = path.replace(/\{[a-zA-Z]+\}/, '625be93a286ef83c1c0e0000')
      const answer = await app.request(`/api/v3${concrete}`, { method, headers: { 'content-type': 'application/json' }, body: method === 'GET' ? null : '{}' })
      expect(await answer.text(), `${operation} has no route`).not.toBe('404 Not Found')
    }
  })

  it('describes what the routes really answer: every required key is there', async () => {
    const doc = openApiDocument()
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/doc'))
    const { deliveries } = await hooks.emit(taskEvent(1))
    const claimed = await hooks.store.claim({ now: Date.now(), limit: 1, leaseMs: 60_000, owner: 't', ordered: true })
    await hooks.store.settle(claimed[0]!.lease, { now: Date.now(), state: 'failed', response: 'down', attempt: { at: new Date().toISOString(), status: 500, durationMs: 1 } })
    const calls: Array<[string, string, string, unknown?]> = [
      ['GET', '/webhook/subscription/{id}', `/webhook/subscription/${webhook._id}`],
      ['GET', '/webhook/subscription/{id}/health', `/webhook/subscription/${webhook._id}/health`],
      ['GET', '/webhook/stats', '/webhook/stats'],
      ['GET', '/webhook/subscription/logs/{id}', `/webhook/subscription/logs/${webhook._id}`],
      ['POST', '/webhook/subscription/{id}/recover', `/webhook/subscription/${webhook._id}/recover`, { since: 0 }],
      ['POST', '/webhook/subscription/logs/{logId}/resend', `/webhook/subscription/logs/${deliveries[0]!.id}/resend`],
    ]
    for (const [method, template, path, body] of calls) {
      const operation = doc.paths[template]![method.toLowerCase()] as { responses: Record<string, { content: { 'application/json': { schema: Json } } }> }
      const [status, response] = Object.entries(operation.responses).find(([code]) => code.startsWith('2'))!
      const res = await app.request(`/api/v3${path}`, { method, headers: { 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) })
      expect(String(res.status), template).toBe(status)
      checkRequired(response.content['application/json'].schema, await res.json(), (doc.components as { schemas: Record<string, Json> }).schemas, template)
    }
  })
})

type Json = Record<string, unknown>

/** Walks a schema and a value together: every `required` key of every object is present. */
function checkRequired(schema: Json, value: unknown, schemas: Record<string, Json>, where: string): void {
  if (typeof schema.$ref === 'string') return checkRequired(schemas[schema.$ref.split('/').pop()!]!, value, schemas, where)
  if (schema.type === 'object' && value && typeof value === 'object') {
    for (const key of (schema.required as string[] | undefined) ?? []) expect(value, `${where}: ${key}`).toHaveProperty(key)
    for (const [key, child] of Object.entries((schema.properties as Record<string, Json> | undefined) ?? {})) {
      if (key in (value as object)) checkRequired(child, (value as Json)[key], schemas, `${where}.${key}`)
    }
  }
  if (schema.type === 'array' && Array.isArray(value)) for (const item of value) checkRequired(schema.items as Json, item, schemas, `${where}[]`)
}

describe('the overview page', () => {
  it('shows what waits, the circuits first, and the last hour by minute; another company sees none of it', async () => {
    const { startReceiver, until, heldAnswers } = await import('./helpers/receiver.js')
    const gate = heldAnswers()
    const receiver = await startReceiver((request) => (request.path === '/held' ? gate.hold() : request.path === '/dead' ? { status: 500 } : { status: 200 }))
    try {
      const live = engine({ retry: { schedule: [] }, circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 } })
      const overview = new Hono().route('/admin/hooks', webhookConsole(live, { company: (c) => SESSIONS[c.req.header('x-session') ?? ''], basePath: '/admin/hooks', csrfSecret: 't', onError: (e) => errors.push(e) }))
      const page = async (session: string) => (await overview.request('/admin/hooks/overview', { headers: { 'x-session': session } })).text()
      expect(await page('a')).toContain('Nothing waits and no circuit is open.')
      expect(await page('a')).toContain('No deliveries ended here in the last hour.')
      const dead = await live.registry.create(COMPANY, taskWebhook(`${receiver.url}/dead`, { name: 'Dead one', code: 'dead', context: { taskGroup: '6261612a8f1e99002e5c8cc2' } }))
      const held = await live.registry.create(COMPANY, taskWebhook(`${receiver.url}/held`, { name: 'Held one', code: 'held', context: { taskGroup: TASK_GROUP } }))
      const ok = await live.registry.create(COMPANY, taskWebhook(`${receiver.url}/ok`, { name: 'Fine one', code: 'ok', context: { taskGroup: '6261612a8f1e99002e5c8cc3' } }))
      await live.emit({ ...taskEvent(1), data: { ...taskEvent(1).data, taskGroup: '6261612a8f1e99002e5c8cc2' } } as never)
      await live.emit({ ...taskEvent(2), data: { ...taskEvent(2).data, taskGroup: '6261612a8f1e99002e5c8cc3' } } as never)
      for (const n of [3, 4]) await live.emit(taskEvent(n))
      await until(async () => gate.held === 1 && (await live.stats(COMPANY)).outcomes.deliveries.succeeded === 1 && (await live.stats(COMPANY)).circuitsOpen === 1)
      const html = await page('a')
      expect(html).toMatch(/id="open">2</)
      expect(html).toMatch(/id="circuits">1</)
      // The open circuit first, then the backlog; the healthy, empty webhook is not listed.
      const rows = [...html.matchAll(/<a href="\/admin\/hooks\/w\/([0-9a-f]{24})">([^<]+)<\/a>/g)].map((m) => [m[1], m[2]])
      expect(rows).toEqual([[dead.webhook._id, 'Dead one'], [held.webhook._id, 'Held one']])
      expect(html).not.toContain(ok.webhook._id)
      // Both ended within a second or so: one minute, or two when they straddle its end.
    expect(html).toMatch(/aria-label="Last hour: 1 deliveries succeeded, 1 failed \(50% failed\); busiest minute [12]"/)
      expect(html.match(/class="bar-succeeded"/g)).toHaveLength(1)
      expect(html).toContain('href="/admin/hooks/overview"')
      // Another company's overview holds nothing of this one.
      const theirs = await page('b')
      expect(theirs).toContain('Nothing waits and no circuit is open.')
      expect(theirs).toContain('No deliveries ended here in the last hour.')
      expect(theirs).not.toContain(dead.webhook._id)
      gate.open()
    } finally {
      gate.open()
      await closeAll()
      await receiver.close()
    }
  })
})
