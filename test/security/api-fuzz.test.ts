import fc from 'fast-check'
import type { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWebhooks, memoryStore, objectId, type Store, type Webhooks } from 'cotwebhook'
import { apiApp } from '../helpers/api-app.js'
import { COMPANY, OTHER_COMPANY, TASK_GROUP, taskEvent } from '../helpers/fixtures.js'

/**
 * 5,000 generated requests against the REST API: methods, paths, ids, query strings, headers,
 * tokens and bodies, valid and not. Never a 5xx, and a request answered 4xx leaves the store exactly
 * as it was. The engine does not dispatch, so only requests change the store.
 */

const RUNS = 5_000
let hooks: Webhooks
let store: Store
let app: Hono
const internal: unknown[] = []
const ids = { own: '', other: '', log: '', otherLog: '' }

beforeAll(async () => {
  store = memoryStore()
  hooks = createWebhooks({ store, dispatch: false, maxEventBytes: 4_096, onError: () => {} })
  app = apiApp(hooks, internal, { maxBodyBytes: 8_192 })
  const own = await hooks.registry.create(COMPANY, { name: 'a', code: 'a', trigger: 'create-edit-delete-task', url: 'https://example.com/a' })
  const other = await hooks.registry.create(OTHER_COMPANY, { name: 'b', code: 'b', trigger: 'create-edit-delete-task', url: 'https://example.com/b' })
  ids.own = own.webhook._id
  ids.other = other.webhook._id
  ids.log = (await hooks.emit(taskEvent(1))).deliveries[0]!.id
  ids.otherLog = (await hooks.emit(taskEvent(2, OTHER_COMPANY))).deliveries[0]!.id
  // Settle some deliveries failed, so recover and resend have real work to do.
  for (let n = 3; n < 6; n++) await hooks.emit(taskEvent(n))
  for (const { lease } of await store.claim({ now: Date.now() + 1, limit: 10, leaseMs: 60_000, owner: 'fuzz', ordered: false })) {
    await store.settle(lease, { now: Date.now() + 1, state: 'failed', response: 'down', attempt: { at: new Date().toISOString(), status: 500, durationMs: 1 } })
  }
})
afterAll(() => hooks.close())

/** Everything the API could change, as text. */
async function snapshot(): Promise<string> {
  const parts: unknown[] = []
  for (const company of [COMPANY, OTHER_COMPANY]) {
    const { items } = await store.listWebhooks(company, { limit: 10_000, offset: 0 })
    for (const webhook of items) {
      parts.push(await store.getWebhook(company, webhook._id))
      parts.push(await store.listDeliveries(company, webhook._id, { limit: 10_000, offset: 0 }))
    }
  }
  return JSON.stringify(parts)
}

// Ids are drawn when a request is made (the known ones exist only after setup).
const id = fc.oneof(
  { arbitrary: fc.constantFrom(() => ids.own, () => ids.other, () => ids.log, () => ids.otherLog).map((f) => ({ toString: f })), weight: 6 },
  { arbitrary: fc.constant({ toString: () => objectId() }), weight: 1 },
  { arbitrary: fc.stringMatching(/^[0-9a-f]{24}$/), weight: 1 },
  { arbitrary: fc.string({ maxLength: 40 }), weight: 1 },
  { arbitrary: fc.constantFrom('..', '%2e%2e', '%00', 'null', 'undefined', '0', '-1', 'a'.repeat(300), '%E2%82%AC', '$ne', '{"$gt":""}'), weight: 1 },
)

// The API's routes, as method and path template; `:id` is filled from `id`.
const ROUTES: Array<[string, string]> = [
  ['GET', '/webhook/subscription'],
  ['POST', '/webhook/subscription'],
  ['GET', '/webhook/subscription/:id'],
  ['PATCH', '/webhook/subscription/:id'],
  ['GET', '/webhook/subscription/:id/secret'],
  ['POST', '/webhook/subscription/:id/secret/rotate'],
  ['GET', '/webhook/subscription/:id/health'],
  ['POST', '/webhook/subscription/:id/recover'],
  ['POST', '/webhook/subscription/:id/test'],
  ['GET', '/webhook/subscription/logs/:id'],
  ['POST', '/webhook/subscription/logs/:id/resend'],
  ['GET', '/webhook/stats'],
]
const METHODS = ['GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']
const route = fc.oneof(
  { arbitrary: fc.constantFrom(...ROUTES), weight: 4 },
  { arbitrary: fc.tuple(fc.constantFrom(...METHODS), fc.constantFrom(...ROUTES.map(([, p]) => p))), weight: 1 },
  {
    arbitrary: fc.tuple(
      fc.constantFrom(...METHODS),
      fc.array(fc.string({ maxLength: 12 }), { maxLength: 5 }).map((segments) => `/webhook/subscription/${segments.map(encodeURIComponent).join('/')}`),
    ),
    weight: 1,
  },
)

const queryValue = fc.oneof(fc.string({ maxLength: 12 }), fc.integer().map(String), fc.constantFrom('true', 'false', 'all', '0', '101', '1e3', '-1', '', '10'))
const query = fc
  .dictionary(fc.constantFrom('limit', 'page', 'isActive', 'count', 'x', 'since', '__proto__'), queryValue, { maxKeys: 4 })
  .map((q) => {
    const text = Object.entries(q).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')
    return text ? `?${text}` : ''
  })

// Mostly valid tokens, so most requests get past the door and reach the routes.
const token = fc.oneof(
  { arbitrary: fc.constantFrom('Bearer token-a', 'Bearer token-b'), weight: 8 },
  { arbitrary: fc.constantFrom('token-a', 'Bearer ', 'Basic dG9rZW4tYQ==', 'Bearer token-z', 'bearer token-a'), weight: 1 },
  { arbitrary: fc.string({ maxLength: 30 }), weight: 1 },
  { arbitrary: fc.constant(undefined), weight: 1 },
)

const webhookLike = fc.record(
  {
    name: fc.oneof(fc.string({ maxLength: 60 }), fc.integer()),
    code: fc.oneof(fc.stringMatching(/^[a-z_]{1,12}$/), fc.string({ maxLength: 20 })),
    trigger: fc.oneof(fc.constantFrom('create-edit-delete-task', 'logout-user', 'create-edit-delete-survey'), fc.string({ maxLength: 20 })),
    url: fc.oneof(fc.constantFrom('https://example.com/h', 'http://127.0.0.1:9/x', 'http://169.254.169.254/', 'file:///etc/passwd', 'http://[::1]/'), fc.webUrl(), fc.string()),
    context: fc.oneof(fc.record({ taskGroup: fc.constantFrom(TASK_GROUP, '', 'x') }, { requiredKeys: [] }), fc.jsonValue()),
    isActive: fc.oneof(fc.boolean(), fc.string({ maxLength: 4 })),
    __v: fc.oneof(fc.integer({ min: -1, max: 5 }), fc.string({ maxLength: 3 })),
    description: fc.string({ maxLength: 30 }),
    since: fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.integer(), fc.string({ maxLength: 10 })),
    limit: fc.oneof(fc.integer({ min: -5, max: 2000 }), fc.string({ maxLength: 3 })),
    overlapMs: fc.oneof(fc.integer({ min: -10, max: 3_000_000_000 }), fc.string({ maxLength: 4 })),
    secret: fc.oneof(fc.constant('whsec_' + Buffer.alloc(32, 3).toString('base64')), fc.string({ maxLength: 20 })),
    data: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant({ blob: 'x'.repeat(5_000) })),
  },
  { requiredKeys: [] },
)

// Valid creates and patches (a fresh code each), some with one field spoiled.
const nearlyValid = fc
  .record({
    // A few codes over and over: duplicates (409) happen.
    code: fc.oneof(fc.constantFrom('a', 'b', 'dup', 'again'), fc.stringMatching(/^[a-z][a-z0-9_]{0,14}$/)),
    spoil: fc.option(fc.record({ key: fc.constantFrom('name', 'trigger', 'url', 'context', 'isActive', 'extra'), value: fc.jsonValue({ maxDepth: 1 }) }), { nil: undefined }),
  })
  .map(({ code, spoil }) => {
    const b: Record<string, unknown> = { name: `n ${code}`, code, trigger: 'create-edit-delete-task', url: `https://example.com/${code}`, context: { taskGroup: TASK_GROUP } }
    if (spoil) b[spoil.key] = spoil.value
    return JSON.stringify(b)
  })

const body = fc.oneof(
  fc.constant(undefined),
  nearlyValid,
  nearlyValid,
  webhookLike.map((b) => JSON.stringify(b)),
  fc.jsonValue({ maxDepth: 3 }).map((b) => JSON.stringify(b)),
  fc.string({ maxLength: 60 }),
  fc.constantFrom('{', '[]', 'null', '"x"', '{"__proto__":{"isActive":false}}', '{"constructor":{"prototype":{}}}', 'x'.repeat(9_000)),
)

const request = fc.record({
  route,
  id,
  query,
  authorization: token,
  contentType: fc.constantFrom('application/json', 'text/plain', '', 'application/json; charset=utf-8', 'multipart/form-data'),
  body,
})

describe(`REST API fuzz (${RUNS} requests)`, () => {
  it('never answers 5xx, and a rejected request changes nothing', async () => {
    let runs = 0
    const statuses = new Map<number, number>()
    let state = await snapshot()
    await fc.assert(
      fc.asyncProperty(request, async ({ route: [method, template], id: drawn, ...r }) => {
        runs++
        const path = template.replace(':id', encodeURIComponent(String(drawn)))
        const headers: Record<string, string> = {}
        if (r.authorization !== undefined) headers.authorization = r.authorization
        if (r.contentType) headers['content-type'] = r.contentType
        const hasBody = r.body !== undefined && method !== 'GET' && method !== 'HEAD'
        const res = await app.request(`/api/v3${path}${r.query}`, { method, headers, ...(hasBody ? { body: r.body } : {}) })
        const text = await res.text()
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        expect(res.status, `${method} ${path}${r.query} -> ${text.slice(0, 200)}`).toBeLessThan(500)
        if (res.status >= 400 && method !== 'HEAD' && !(res.status === 404 && text === '404 Not Found')) {
          // Every error but Hono's own 404 for a path or method no route has carries the error body.
          const error = JSON.parse(text) as { error?: { code?: string; message?: string } }
          expect(error.error?.code, text).toEqual(expect.any(String))
          expect(error.error?.message, text).toEqual(expect.any(String))
        }
        const now = await snapshot()
        if (res.status >= 400) expect(now, `${method} ${path} answered ${res.status} but changed the store`).toBe(state)
        state = now
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 20261128), endOnFailure: true },
    )
    console.log('fuzz statuses:', Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))
    expect(runs).toBe(RUNS)
    expect(internal).toEqual([])
    // The run reached the routes, not only the 401 and 404 doors.
    for (const status of [200, 201, 202, 400, 401, 404, 409, 413]) expect(statuses.get(status) ?? 0, `status ${status}`).toBeGreaterThan(0)
  }, 300_000)
})
