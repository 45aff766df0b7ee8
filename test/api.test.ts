import { Hono } from 'hono'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { CompanyResolverError, companyIdFor, objectId, type Webhooks } from 'cotwebhook'
import { webhookApi } from 'cotwebhook/hono'
import { COMPANY, OTHER_COMPANY, TASK_GROUP, closeAll, engine, taskEvent } from './helpers/fixtures.js'
import { apiApp } from './helpers/api-app.js'
import { startReceiver, type Receiver } from './helpers/receiver.js'

let hooks: Webhooks
let app: Hono
let receiver: Receiver
const errors: unknown[] = []

beforeEach(async () => {
  receiver = await startReceiver()
  hooks = engine({ retry: { schedule: [] } })
  app = apiApp(hooks, errors)
})
afterEach(async () => {
  await closeAll()
  await receiver.close()
  expect(errors).toEqual([]) // nothing a client sent may become a 500
})

const call = async (method: string, path: string, body?: unknown, token = 'token-a', raw?: string) => {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  const res = await app.request(`/api/v3${path}`, {
    method,
    headers,
    ...(raw !== undefined ? { body: raw } : body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

const input = (overrides: Record<string, unknown> = {}) => ({
  name: 'Work Orders Update',
  code: 'wo_update',
  trigger: 'create-edit-delete-task',
  url: `${receiver.url}/hook`,
  context: { taskGroup: TASK_GROUP },
  description: 'Sends updates on Work Orders',
  ...overrides,
})

describe('POST /webhook/subscription', () => {
  it('creates a webhook: 201 with the COTWebhook and its secret, shown once', async () => {
    const res = await call('POST', '/webhook/subscription', input())
    expect(res.status).toBe(201)
    expect(res.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/)
    expect(res.body.data).toEqual({
      _id: expect.stringMatching(/^[0-9a-f]{24}$/),
      company: COMPANY,
      isActive: true,
      trigger: 'create-edit-delete-task',
      url: `${receiver.url}/hook`,
      name: 'Work Orders Update',
      code: 'wo_update',
      context: { survey: '', group: '', taskGroup: TASK_GROUP },
      __v: 0,
      description: 'Sends updates on Work Orders',
    })
    const got = await call('GET', `/webhook/subscription/${res.body.data._id}`)
    expect(JSON.stringify(got.body)).not.toContain('whsec_')
  })

  it('answers 400 naming each field and rule, and creates nothing', async () => {
    const res = await call('POST', '/webhook/subscription', input({ code: 'Bad-Code', trigger: 'nope', extra: 1 }))
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.fields).toEqual({
      code: ['code: only lowercase letters, digits and underscores'],
      trigger: [expect.stringMatching(/^trigger: must be one of: create-edit-delete-task, /)],
      extra: ['extra: unknown field'],
    })
    expect(res.body.error.message).toContain('code: only lowercase letters, digits and underscores')
    expect((await call('GET', '/webhook/subscription')).body.data.count).toBe(0)
  })

  it('answers 400 for a context field the trigger does not use', async () => {
    const res = await call('POST', '/webhook/subscription', input({ trigger: 'logout-user' }))
    expect(res.status).toBe(400)
    expect(res.body.error.fields['context.taskGroup'][0]).toMatch(/^context\.taskGroup: must be "" for trigger logout-user/)
  })

  it('answers 400 with code invalid_json for a malformed body', async () => {
    const res = await call('POST', '/webhook/subscription', undefined, 'token-a', '{"name": ')
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('invalid_json')
    expect(res.body.error.message).toMatch(/^request body is not valid JSON/)
  })

  it('answers 400 for a JSON body that is not an object', async () => {
    for (const raw of ['[]', '"text"', 'null', '42']) {
      const res = await call('POST', '/webhook/subscription', undefined, 'token-a', raw)
      expect(res.status).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
  })

  it('answers 413 for a body over 64 KiB', async () => {
    const res = await call('POST', '/webhook/subscription', input({ description: 'x'.repeat(70_000) }))
    expect(res.status).toBe(413)
    expect(res.body.error).toEqual({ code: 'payload_too_large', message: 'body is larger than 65536 bytes' })
  })

  it('answers 409 for a code already used in the company, not in another one', async () => {
    expect((await call('POST', '/webhook/subscription', input())).status).toBe(201)
    const dup = await call('POST', '/webhook/subscription', input())
    expect(dup.status).toBe(409)
    expect(dup.body.error).toMatchObject({ code: 'conflict', fields: { code: [expect.stringContaining('"wo_update" is already used')] } })
    expect((await call('POST', '/webhook/subscription', input(), 'token-b')).status).toBe(201)
  })

  it('answers 400 unsafe_url for a private destination without allowPrivateNetworks', async () => {
    const strict = engine({ allowPrivateNetworks: false })
    const strictApp = new Hono().route('/', webhookApi(strict, { company: () => COMPANY }))
    const res = await strictApp.request('/webhook/subscription', {
      method: 'POST',
      body: JSON.stringify(input({ url: 'http://169.254.169.254/latest/meta-data' })),
    })
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body.error.code).toBe('unsafe_url')
    expect(body.error.fields.url[0]).toContain('169.254.169.254 is a link-local address')
    expect(body.error.message).toContain('allowPrivateNetworks: true')
  })
})

describe('authentication', () => {
  it('leaves the host’s other routes under the mount point alone', async () => {
    const host = new Hono()
    host.route('/api/v3', webhookApi(hooks, { company: () => undefined }))
    host.get('/api/v3/health', (c) => c.text('ok'))
    const res = await host.request('/api/v3/health')
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('ok')
    expect((await host.request('/api/v3/webhook/subscription')).status).toBe(401)
  })

  it('reports a company resolver that returns something other than a company id as the host’s bug', async () => {
    const reported: unknown[] = []
    const odd = new Hono().route('/', webhookApi(hooks, { company: () => 'acme', onError: (error) => reported.push(error) }))
    const res = await odd.request('/webhook/subscription')
    // Not the caller's fault: a 500 that says nothing of the host's setup, and the whole story to onError.
    expect(res.status).toBe(500)
    expect((await res.json()).error).toEqual({ code: 'internal', message: 'internal error' })
    expect(reported).toHaveLength(1)
    expect(reported[0]).toBeInstanceOf(CompanyResolverError)
    expect((reported[0] as Error).message).toBe(
      'webhookApi: options.company returned "acme", which is not a company id (a 24-hex ObjectId); map your tenant keys to ObjectIds, for example with companyIdFor(key)',
    )
    // The way out: a stable ObjectId per tenant key, the same on every call.
    const mapped = new Hono().route('/', webhookApi(hooks, { company: () => companyIdFor('acme') }))
    expect((await mapped.request('/webhook/subscription')).status).toBe(200)
    expect(await companyIdFor('acme')).toMatch(/^[0-9a-f]{24}$/)
    expect(await companyIdFor('acme')).toBe(await companyIdFor('acme'))
    expect(await companyIdFor('acme')).not.toBe(await companyIdFor('globex'))
    await expect(companyIdFor('')).rejects.toThrow('companyIdFor: the tenant key must be a non-empty string')
  })

  it('answers 401 when the request maps to no company', async () => {
    for (const token of ['', 'unknown']) {
      const res = await call('GET', '/webhook/subscription', undefined, token)
      expect(res.status).toBe(401)
      expect(res.body.error.code).toBe('unauthorized')
    }
  })
})

describe('GET /webhook/subscription', () => {
  it('lists with limit, page, isActive and count', async () => {
    for (let i = 0; i < 12; i++) await call('POST', '/webhook/subscription', input({ code: `c${i}`, isActive: i % 3 !== 0 }))
    await call('POST', '/webhook/subscription', input({ code: 'other' }), 'token-b')
    const first = await call('GET', '/webhook/subscription')
    expect(first.status).toBe(200)
    expect(first.body.data.webhooks.map((w: { code: string }) => w.code)).toEqual(Array.from({ length: 10 }, (_, i) => `c${i}`))
    expect(first.body.data.count).toBe(12)
    const second = await call('GET', '/webhook/subscription?limit=5&page=3&count=true')
    expect(second.body.data.webhooks.map((w: { code: string }) => w.code)).toEqual(['c10', 'c11'])
    const inactive = await call('GET', '/webhook/subscription?isActive=false')
    expect(inactive.body.data).toMatchObject({ count: 4 })
    expect(inactive.body.data.webhooks.map((w: { code: string }) => w.code)).toEqual(['c0', 'c3', 'c6', 'c9'])
    expect((await call('GET', '/webhook/subscription?isActive=true')).body.data.count).toBe(8)
    expect((await call('GET', '/webhook/subscription?isActive=all')).body.data.count).toBe(12)
  })

  it('answers 400 for a bad limit, page or isActive', async () => {
    const cases: [string, string, string][] = [
      ['limit=0', 'limit', 'limit: must be at least 1'],
      ['limit=101', 'limit', 'limit: must be at most 100'],
      ['limit=ten', 'limit', 'limit: must be a positive integer'],
      ['page=0', 'page', 'page: must be at least 1'],
      ['isActive=yes', 'isActive', 'isActive: must be all, true or false'],
    ]
    for (const [query, field, message] of cases) {
      const res = await call('GET', `/webhook/subscription?${query}`)
      expect(res.status, query).toBe(400)
      expect(res.body.error.fields[field], query).toEqual([message])
    }
  })
})

describe('GET /webhook/subscription/:id', () => {
  it('answers 404 for another company’s webhook and for a missing id, 400 for a malformed id', async () => {
    const created = await call('POST', '/webhook/subscription', input())
    const id = created.body.data._id
    expect((await call('GET', `/webhook/subscription/${id}`)).body.data._id).toBe(id)
    const other = await call('GET', `/webhook/subscription/${id}`, undefined, 'token-b')
    expect(other.status).toBe(404)
    expect(other.body.error).toEqual({ code: 'not_found', message: `webhook ${id} not found` })
    expect((await call('GET', `/webhook/subscription/${objectId()}`)).status).toBe(404)
    const bad = await call('GET', '/webhook/subscription/not-an-id')
    expect(bad.status).toBe(400)
    expect(bad.body.error.fields.id).toEqual(['id: must be an ObjectId (24 lowercase hexadecimal characters)'])
  })

  it('shows the secret to its company only', async () => {
    const created = await call('POST', '/webhook/subscription', input())
    const id = created.body.data._id
    const secret = await call('GET', `/webhook/subscription/${id}/secret`)
    expect(secret.body).toEqual({ data: { secret: created.body.secret } })
    expect((await call('GET', `/webhook/subscription/${id}/secret`, undefined, 'token-b')).status).toBe(404)
  })
})

describe('PATCH /webhook/subscription/:id', () => {
  it('updates, merges context, bumps __v', async () => {
    const id = (await call('POST', '/webhook/subscription', input())).body.data._id
    const res = await call('PATCH', `/webhook/subscription/${id}`, { name: 'Renamed', isActive: false, code: 'wo_update' })
    expect(res.status).toBe(200)
    expect(res.body.data).toMatchObject({ name: 'Renamed', isActive: false, __v: 1, code: 'wo_update', context: { taskGroup: TASK_GROUP } })
    const moved = await call('PATCH', `/webhook/subscription/${id}`, { trigger: 'create-edit-delete-user', context: { taskGroup: '' } })
    expect(moved.body.data).toMatchObject({ trigger: 'create-edit-delete-user', context: { survey: '', group: '', taskGroup: '' }, __v: 2 })
  })

  it('answers 409 for a stale __v and changes nothing', async () => {
    const id = (await call('POST', '/webhook/subscription', input())).body.data._id
    expect((await call('PATCH', `/webhook/subscription/${id}`, { name: 'One', __v: 0 })).status).toBe(200)
    const stale = await call('PATCH', `/webhook/subscription/${id}`, { name: 'Two', __v: 0 })
    expect(stale.status).toBe(409)
    expect(stale.body.error.fields.__v[0]).toMatch(/^__v: version 0 is stale \(it is at __v 1\)/)
    expect((await call('GET', `/webhook/subscription/${id}`)).body.data).toMatchObject({ name: 'One', __v: 1 })
  })

  it('answers 400 for a code change or an unknown field, 404 for another company', async () => {
    const id = (await call('POST', '/webhook/subscription', input())).body.data._id
    const code = await call('PATCH', `/webhook/subscription/${id}`, { code: 'new_code' })
    expect(code.status).toBe(400)
    expect(code.body.error.fields).toEqual({ code: ['code: cannot be changed once saved'] })
    const unknown = await call('PATCH', `/webhook/subscription/${id}`, { company: OTHER_COMPANY })
    expect(unknown.body.error.fields).toEqual({ company: ['company: unknown field'] })
    expect((await call('PATCH', `/webhook/subscription/${id}`, { name: 'x' }, 'token-b')).status).toBe(404)
    expect((await call('PATCH', `/webhook/subscription/${id}`, undefined, 'token-a', '{')).status).toBe(400)
    expect((await call('GET', `/webhook/subscription/${id}`)).body.data.__v).toBe(0)
  })
})

describe('GET /webhook/subscription/logs/:id', () => {
  it('lists a webhook’s logs newest first with pages', async () => {
    const id = (await call('POST', '/webhook/subscription', input())).body.data._id
    const emitted = []
    for (let n = 0; n < 3; n++) emitted.push(await hooks.emit(taskEvent(n)))
    await hooks.drain()
    const res = await call('GET', `/webhook/subscription/logs/${id}`)
    expect(res.status).toBe(200)
    expect(res.body.data.count).toBe(3)
    expect(res.body.data.logs.map((l: { _id: string }) => l._id)).toEqual(emitted.map((e) => e.deliveries[0]!.id).reverse())
    expect(res.body.data.logs[0]).toMatchObject({ subscription: id, company: COMPANY, status: 200, retry: 0, state: 'succeeded' })
    const page = await call('GET', `/webhook/subscription/logs/${id}?limit=2&page=2`)
    expect(page.body.data.logs.map((l: { _id: string }) => l._id)).toEqual([emitted[0]!.deliveries[0]!.id])
    expect((await call('GET', `/webhook/subscription/logs/${id}`, undefined, 'token-b')).status).toBe(404)
    expect((await call('GET', `/webhook/subscription/logs/${id}?limit=500`)).status).toBe(400)
  })
})

describe('the API factory', () => {
  it('refuses to start without a company resolver', () => {
    expect(() => webhookApi(hooks, {} as never)).toThrow('webhookApi: options.company must be a function')
  })

  it('answers 500 without detail when the store itself fails, and reports it', async () => {
    const seen: unknown[] = []
    const broken = engine({ store: { ...hooks.store, listWebhooks: async () => { throw new Error('disk on fire') } } })
    const brokenApp = new Hono().route('/', webhookApi(broken, { company: () => COMPANY, onError: (e) => seen.push(e) }))
    const res = await brokenApp.request('/webhook/subscription')
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: { code: 'internal', message: 'internal error' } })
    expect(String(seen[0])).toContain('disk on fire')
  })
})
