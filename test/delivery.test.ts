import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { VERSION, verifyWebhook } from 'cotwebhook'
import { nodeSigner, nodeTransport, type NodeTransport } from 'cotwebhook/node'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook, useTransport } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from './helpers/receiver.js'

let receiver: Receiver
afterEach(async () => {
  await closeAll()
  await receiver?.close()
})

// Every behaviour below holds for both: the runtime's fetch with WebCrypto signing, and cotwebhook/node's
// undici pool with node:crypto signing.
for (const transportName of ['fetch', 'node'] as const) {
describe(`a delivery (${transportName} transport)`, () => {
  let node: NodeTransport | undefined
  beforeAll(() => {
    node = transportName === 'node' ? nodeTransport({ connections: 8, allowPrivateNetworks: true }) : undefined
    useTransport(node, node ? nodeSigner() : undefined)
  })
  afterAll(async () => {
    useTransport(undefined)
    await node?.close()
  })

  it('is a signed JSON POST that the standardwebhooks package verifies', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    const { webhook, secret } = await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook?x=1`))
    const { eventId, deliveries } = await hooks.emit(taskEvent(7))
    await hooks.drain()
    expect(receiver.requests).toHaveLength(1)
    const [request] = receiver.requests
    expect(request!.method).toBe('POST')
    expect(request!.path).toBe('/hook?x=1')
    expect(request!.headers['content-type']).toBe('application/json')
    expect(request!.headers['user-agent']).toBe(`cotwebhook/${VERSION}`)
    expect(request!.headers['webhook-id']).toBe(deliveries[0]!.id)
    expect(deliveries[0]!.webhookId).toBe(webhook._id)
    expect(eventId).toMatch(/^[0-9a-f]{24}$/)
    const verified = new Webhook(secret).verify(request!.body, request!.headers) as Record<string, unknown>
    expect(verified).toMatchObject({ company: COMPANY, type: 'COTTask', event: 'create', diff: {}, extraData: null })
    expect(Object.keys(verified)).toEqual(['company', 'type', 'event', 'data', 'diff', 'extraData', 'createdAt'])
    await expect(verifyWebhook(secret, request!.headers, request!.body)).resolves.toEqual(verified)
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ _id: deliveries[0]!.id, subscription: webhook._id, status: 200, retry: 0, response: 'ok', state: 'succeeded', nextAttemptAt: null })
    expect(log!.attempts).toHaveLength(1)
    expect(log!.event).toEqual(verified)
  })

  it('goes to every matching webhook with its own id and signature', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    const a = await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/a`))
    const b = await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/b`))
    const { deliveries } = await hooks.emit(taskEvent())
    await hooks.drain()
    expect(deliveries).toHaveLength(2)
    const byPath = Object.fromEntries(receiver.requests.map((r) => [r.path, r]))
    expect(new Webhook(a.secret).verify(byPath['/a']!.body, byPath['/a']!.headers)).toBeTruthy()
    expect(() => new Webhook(a.secret).verify(byPath['/b']!.body, byPath['/b']!.headers)).toThrow()
    expect(new Webhook(b.secret).verify(byPath['/b']!.body, byPath['/b']!.headers)).toBeTruthy()
    expect(byPath['/a']!.headers['webhook-id']).not.toBe(byPath['/b']!.headers['webhook-id'])
  })

  it('keeps its webhook-id across retries and signs each attempt afresh', async () => {
    receiver = await startReceiver((_, i) => ({ status: i === 0 ? 500 : 200 }))
    const hooks = engine({ retry: { schedule: [1_100] } })
    const { secret } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [first, second] = receiver.requests
    expect(first!.headers['webhook-id']).toBe(second!.headers['webhook-id'])
    expect(Number(second!.headers['webhook-timestamp'])).toBeGreaterThan(Number(first!.headers['webhook-timestamp']))
    for (const r of receiver.requests) expect(new Webhook(secret).verify(r.body, r.headers)).toBeTruthy()
  })

  it('disables its webhook on 410 and stops', async () => {
    receiver = await startReceiver(() => ({ status: 410, body: 'gone for good' }))
    const hooks = engine({ retry: { schedule: [10, 10] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect(receiver.requests).toHaveLength(1)
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'failed', status: 410, retry: 0, response: 'gone for good' })
    expect(await hooks.registry.get(COMPANY, webhook._id)).toMatchObject({ isActive: false, __v: 1 })
    expect((await hooks.emit(taskEvent())).deliveries).toEqual([])
  })

  it('does not follow redirects: a 3xx fails the attempt', async () => {
    const target = await startReceiver()
    receiver = await startReceiver(() => ({ status: 307, headers: { location: `${target.url}/elsewhere` } }))
    const hooks = engine({ retry: { schedule: [10] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    await target.close()
    expect(target.requests).toHaveLength(0)
    expect(receiver.requests).toHaveLength(2)
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'failed', status: 307, retry: 1 })
    expect(log!.response).toContain(`redirect to ${target.url}/elsewhere not followed`)
  })

  it('keeps a redirect’s note within maxResponseBytes, a 15 KB Location and a full body included', async () => {
    const location = `http://example.com/${'l'.repeat(15_000)}`
    receiver = await startReceiver(() => ({ status: 302, headers: { location }, body: 'é'.repeat(15_000) }))
    const hooks = engine({ retry: { schedule: [] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'failed', status: 302 })
    expect(log!.response.startsWith(`redirect to ${location} not followed: éé`)).toBe(true)
    // 20,480 bytes at most, cut between characters (é is two bytes).
    expect(Buffer.byteLength(log!.response)).toBeLessThanOrEqual(20_480)
    expect(Buffer.byteLength(log!.response)).toBeGreaterThan(20_470)
    expect(log!.response.endsWith('é')).toBe(true)
  })

  it('names a response whose headers overflow the client’s limit, not just “fetch failed”', async () => {
    receiver = await startReceiver(() => ({ status: 200, headers: { 'x-big': 'h'.repeat(20_000) } }))
    const hooks = engine({ retry: { schedule: [] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'failed', status: 409 })
    expect(log!.attempts[0]!.error).toMatch(/^protocol: response headers larger than the client accepts \((UND_ERR_HEADERS_OVERFLOW|HPE_HEADER_OVERFLOW)\)$/)
  })

  it('logs a refused connection as status 409 with what happened', async () => {
    receiver = await startReceiver()
    await receiver.close() // nothing listens on its port now
    const hooks = engine({ retry: { schedule: [5, 5] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'failed', status: 409, retry: 2 })
    expect(log!.attempts).toHaveLength(3)
    for (const attempt of log!.attempts) expect(attempt.error).toMatch(/^refused: connection refused \(ECONNREFUSED\)/)
    expect(log!.response).toMatch(/^POST 127\.0\.0\.1:\d+: refused/)
  })

  it('logs a reset connection as a failed attempt and retries it', async () => {
    receiver = await startReceiver((_, i) => (i === 0 ? { reset: true } : { status: 202 }))
    const hooks = engine({ retry: { schedule: [5] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'succeeded', status: 202, retry: 1 })
    expect(log!.attempts[0]).toMatchObject({ status: 409 })
    expect(log!.attempts[0]!.error).toMatch(/^(reset|network): /)
  })

  it('times out a slow receiver and retries', async () => {
    // The first answer never comes (it is held until the test ends): only the timeout can end that attempt.
    const gate = heldAnswers()
    receiver = await startReceiver((_, i) => (i === 0 ? gate.hold() : { status: 200 }))
    try {
      const hooks = engine({ timeoutMs: 300, retry: { schedule: [5] } })
      const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
      const started = performance.now()
      await hooks.emit(taskEvent())
      await hooks.drain()
      const elapsed = performance.now() - started
      const [log] = await hooks.logs(COMPANY, webhook._id)
      expect(log).toMatchObject({ state: 'succeeded', retry: 1 })
      expect(log!.attempts[0]).toMatchObject({ status: 409, error: 'timeout: no complete response within 300 ms' })
      // At least the timeout, and no more than the whole run took (a duration in other units would not fit).
      expect(log!.attempts[0]!.durationMs).toBeGreaterThanOrEqual(300 - 1)
      expect(log!.attempts[0]!.durationMs).toBeLessThanOrEqual(Math.ceil(elapsed))
    } finally {
      gate.open()
    }
  })

  it('times out a receiver that sends headers and then stalls the body', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    receiver = await startReceiver() // closed in afterEach; unused
    const hooks = engine({ timeoutMs: 150, retry: { schedule: [] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    server.closeAllConnections()
    server.close()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'failed', status: 409 })
    expect(log!.attempts[0]!.error).toMatch(/^timeout/)
  })

  it('keeps at most 20 KB of a response in the log', async () => {
    receiver = await startReceiver(() => ({ status: 200, body: 'x'.repeat(100_000) }))
    const hooks = engine()
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log!.response).toHaveLength(20_480)
  })

  it('ends failed without a request when its webhook was deactivated meanwhile', async () => {
    // The first delivery's answer waits for the deactivation: the second is still queued behind it.
    const gate = heldAnswers()
    receiver = await startReceiver((request) => (request.body.includes('"n":0') ? gate.hold() : { status: 200 }))
    const hooks = engine()
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent(0))
    const second = await hooks.emit(taskEvent(1))
    await until(() => gate.held === 1, 15_000, 'the first delivery in flight')
    await hooks.registry.update(COMPANY, webhook._id, { isActive: false })
    gate.open()
    await hooks.drain()
    expect(receiver.requests).toHaveLength(1)
    const log = (await hooks.logs(COMPANY, webhook._id)).find((l) => l._id === second.deliveries[0]!.id)
    expect(log).toMatchObject({ state: 'failed', status: null, attempts: [], response: 'not sent: the webhook is inactive' })
  })

  it('is refused at send when the URL became unsafe', async () => {
    receiver = await startReceiver()
    const permissive = engine()
    const { webhook } = await permissive.registry.create(COMPANY, taskWebhook(receiver.url))
    await permissive.close()
    const strict = engine({ store: permissive.store, allowPrivateNetworks: false })
    await strict.emit(taskEvent())
    await strict.drain()
    expect(receiver.requests).toHaveLength(0)
    const [log] = await strict.logs(COMPANY, webhook._id)
    expect(log!.state).toBe('failed')
    expect(log!.response).toMatch(/^not sent: url: 127\.0\.0\.1 is a loopback address; set allowPrivateNetworks: true/)
  })
})
}
