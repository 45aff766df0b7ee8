import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { webhooks, type WebhooksVariables } from 'cotwebhook/hono'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { startReceiver, type Receiver } from './helpers/receiver.js'

let receiver: Receiver
afterEach(async () => {
  await closeAll()
  await receiver?.close()
})

const hostApp = (hooks: ReturnType<typeof engine>) => {
  const app = new Hono<{ Variables: WebhooksVariables }>()
  app.use(webhooks(hooks))
  app.post('/tasks', async (c) => {
    const result = await c.var.webhooks.emit(taskEvent(1))
    return c.json(result, 201)
  })
  app.get('/quiet', (c) => c.text('nothing emitted'))
  return app
}

describe('the webhooks() middleware', () => {
  it('puts the engine on c.var.webhooks and emits from a handler (Node: no execution context)', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const res = await hostApp(hooks).request('/tasks', { method: 'POST' })
    expect(res.status).toBe(201)
    const body = await res.json()
    expect(body.deliveries).toHaveLength(1)
    await hooks.drain()
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([body.deliveries[0].id])
  })

  it('hands the delivery work to executionCtx.waitUntil where there is one (Workers)', async () => {
    receiver = await startReceiver(() => ({ status: 200, delayMs: 50 }))
    const hooks = engine()
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const waited: Promise<unknown>[] = []
    const executionCtx = { waitUntil: (p: Promise<unknown>) => void waited.push(p), passThroughOnException: () => {}, props: {} }
    const app = hostApp(hooks)
    const res = await app.fetch(new Request('http://host/tasks', { method: 'POST' }), {}, executionCtx)
    expect(res.status).toBe(201)
    expect(waited).toHaveLength(1)
    await waited[0]
    // waitUntil's promise ends only once the delivery is final.
    expect(receiver.requests).toHaveLength(1)
    expect(await hooks.store.openCount()).toBe(0)
    await app.fetch(new Request('http://host/quiet'), {}, executionCtx)
    expect(waited).toHaveLength(1)
  })
})
