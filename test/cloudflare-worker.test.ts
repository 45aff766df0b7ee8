import { Miniflare } from 'miniflare'
import { Webhook } from 'standardwebhooks'
import { afterEach, describe, expect, it } from 'vitest'
import * as ed from '@noble/ed25519'
import { objectId, verifyWebhook } from 'cotwebhook'
import { d1Store, type D1Like } from 'cotwebhook/cloudflare'
import { workerScript } from '../scripts/edge-bundle.js'
import { startReceiver, until, type Receiver } from './helpers/receiver.js'

const COMPANY = '625be93a286ef83c1c0e845f'
const script = await workerScript(new URL('../examples/cloudflare-worker/src/index.ts', import.meta.url).pathname)

let mf: Miniflare | undefined
let receiver: Receiver | undefined
afterEach(async () => {
  await mf?.dispose()
  await receiver?.close()
  mf = undefined
})

function start(workerScriptText = script) {
  mf = new Miniflare({
    modules: true,
    script: workerScriptText,
    compatibilityDate: '2025-01-01',
    d1Databases: ['DB'],
    queueProducers: { WEBHOOK_QUEUE: 'cotwebhook-deliveries' },
    // Miniflare's defaults differ from production's: say what this test relies on.
    queueConsumers: { 'cotwebhook-deliveries': { maxBatchSize: 10, maxBatchTimeout: 0.1, maxRetries: 3 } },
    bindings: { TOKENS: `tok=${COMPANY}`, RETRY_SCHEDULE: '300,300', ALLOW_PRIVATE_NETWORKS: '1' },
  })
  return mf
}

const api = (worker: Miniflare, method: string, path: string, body?: unknown) =>
  worker
    .dispatchFetch(`http://worker${path}`, {
      method,
      headers: { authorization: 'Bearer tok', 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    .then(async (res) => ({ status: res.status, body: (await res.json()) as any }))

describe('the example Worker in workerd (miniflare: D1, Queue, Cron)', () => {
  it('emits on a request, delivers from the queue consumer with a valid signature, retries a failing receiver, and logs every attempt', async () => {
    receiver = await startReceiver((_, i) => ({ status: i < 2 ? 500 : 200, body: i < 2 ? 'not yet' : 'ok' }))
    const worker = start()
    const created = await api(worker, 'POST', '/api/v3/webhook/subscription', {
      name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url: `${receiver.url}/hook`,
    })
    expect(created.status).toBe(201)
    const emitted = await api(worker, 'POST', '/tasks', { name: 'Fix the pump', taskGroup: '6261612a8f1e99002e5c8cce' })
    expect(emitted.status).toBe(201)
    expect(emitted.body.deliveries).toHaveLength(1)

    await until(() => receiver!.requests.length >= 3, 20_000, 'three attempts at the receiver')
    const ids = new Set(receiver.requests.map((r) => r.headers['webhook-id']))
    expect([...ids]).toEqual([emitted.body.deliveries[0].id])
    for (const r of receiver.requests) {
      expect(new Webhook(created.body.secret).verify(r.body, r.headers)).toMatchObject({ company: COMPANY, type: 'COTTask', event: 'create' })
    }
    // The retries followed the schedule (300 ms apart), not the queue's own retry timing.
    expect(receiver.requests[1]!.at - receiver.requests[0]!.at).toBeGreaterThanOrEqual(290)

    let log: any
    await until(async () => {
      log = (await api(worker, 'GET', `/api/v3/webhook/subscription/logs/${created.body.data._id}`)).body.data.logs[0]
      return log?.state === 'succeeded'
    }, 10_000, 'the log to show success')
    expect(log).toMatchObject({ _id: emitted.body.deliveries[0].id, status: 200, retry: 2, response: 'ok' })
    expect(log.attempts.map((a: { status: number }) => a.status)).toEqual([500, 500, 200])
    expect(receiver.requests).toHaveLength(3)
  }, 60_000)

  it('signs with Ed25519 (v1a) in workerd for a webhook created with signature ed25519: the whpk_ key verifies it, independently too', async () => {
    receiver = await startReceiver()
    const worker = start()
    const created = await api(worker, 'POST', '/api/v3/webhook/subscription', {
      name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url: `${receiver.url}/hook`, signature: 'ed25519',
    })
    expect(created.status).toBe(201)
    const publicKey = created.body.secret as string
    expect(publicKey).toMatch(/^whpk_/)
    await api(worker, 'POST', '/tasks', { name: 'Fix the pump', taskGroup: '6261612a8f1e99002e5c8cce' })
    await until(() => receiver!.requests.length === 1, 20_000, 'the signed delivery')
    const request = receiver.requests[0]!
    expect(request.headers['webhook-signature']).toMatch(/^v1a,\S+$/)
    expect((await verifyWebhook(publicKey, request.headers, request.body)).type).toBe('COTTask')
    const bytesOf = (base64: string) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
    const content = new TextEncoder().encode(`${request.headers['webhook-id']}.${request.headers['webhook-timestamp']}.${request.body}`)
    expect(await ed.verifyAsync(bytesOf(request.headers['webhook-signature']!.slice(4)), content, bytesOf(publicKey.slice(5)))).toBe(true)
  }, 60_000)

  it('works when its first request touches nothing (a 404 or a health check)', async () => {
    receiver = await startReceiver()
    const worker = start()
    expect((await worker.dispatchFetch('http://worker/health')).status).toBe(404)
    const created = await api(worker, 'POST', '/api/v3/webhook/subscription', {
      name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url: `${receiver.url}/hook`,
    })
    expect(created.status).toBe(201)
    const emitted = await api(worker, 'POST', '/tasks', { taskGroup: '6261612a8f1e99002e5c8cce' })
    expect(emitted.status).toBe(201)
    await until(() => receiver!.requests.length === 1, 10_000, 'the delivery')
    const fetcher = await worker.getWorker()
    await fetcher.scheduled({ cron: '* * * * *' }) // the sweep answers too
  }, 60_000)

  it('delivers a backlog for one webhook in order, promptly', async () => {
    receiver = await startReceiver()
    const worker = start()
    await api(worker, 'POST', '/api/v3/webhook/subscription', { name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url: `${receiver.url}/hook` })
    for (let n = 0; n < 10; n++) await api(worker, 'POST', '/tasks', { n, taskGroup: '6261612a8f1e99002e5c8cce' })
    await until(() => receiver!.requests.length === 10, 15_000, 'all ten deliveries')
    expect(receiver.requests.map((r) => (JSON.parse(r.body) as { data: { n: number } }).data.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  }, 60_000)

  it('delivers from the Cron sweep what never reached the queue', async () => {
    receiver = await startReceiver()
    const worker = start()
    // A webhook and a delivery written straight to D1, as if the hand-off message had been lost.
    const store = d1Store((await worker.getD1Database('DB')) as unknown as D1Like)
    await store.migrate()
    const webhookId = objectId()
    await store.insertWebhook({
      webhook: { _id: webhookId, company: COMPANY, isActive: true, trigger: 'create-edit-delete-user', url: `${receiver.url}/swept`, name: 's', code: 's', context: { survey: '', group: '', taskGroup: '' }, __v: 0, description: '' },
      secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo='],
    })
    const deliveryId = objectId()
    await store.enqueue({
      eventId: objectId(),
      event: { company: COMPANY, type: 'COTUser', event: 'create', data: { _id: COMPANY }, diff: {}, extraData: null, createdAt: new Date().toISOString() },
      deliveries: [{ id: deliveryId, webhookId }],
      now: Date.now(),
    })
    expect(receiver.requests).toHaveLength(0)
    const fetcher = await worker.getWorker()
    await fetcher.scheduled({ cron: '* * * * *' })
    await until(() => receiver!.requests.length === 1, 10_000, 'the swept delivery')
    expect(receiver.requests[0]!.headers['webhook-id']).toBe(deliveryId)
    expect((await store.getDelivery(COMPANY, deliveryId))?.state).toBe('succeeded')
  }, 60_000)

  it('prunes from the Cron sweep when the engine options set retention', async () => {
    receiver = await startReceiver()
    const worker = start(await workerScript(new URL('./fixtures/retention-worker.ts', import.meta.url).pathname))
    const store = d1Store((await worker.getD1Database('DB')) as unknown as D1Like)
    await store.migrate()
    const webhookId = objectId()
    await store.insertWebhook({
      webhook: { _id: webhookId, company: COMPANY, isActive: true, trigger: 'create-edit-delete-user', url: `${receiver.url}/r`, name: 'r', code: 'r', context: { survey: '', group: '', taskGroup: '' }, __v: 0, description: '' },
      secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo='],
    })
    const deliveryId = objectId()
    await store.enqueue({
      eventId: objectId(),
      event: { company: COMPANY, type: 'COTUser', event: 'create', data: { _id: COMPANY }, diff: {}, extraData: null, createdAt: new Date().toISOString() },
      deliveries: [{ id: deliveryId, webhookId }],
      now: Date.now(),
    })
    const fetcher = await worker.getWorker()
    // One sweep delivers it, then prunes it: with maxAgeMs 1 the finished delivery is already old enough.
    await fetcher.scheduled({ cron: '* * * * *' })
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([deliveryId])
    expect(await store.getDelivery(COMPANY, deliveryId)).toBeUndefined()
    expect((await store.listDeliveries(COMPANY, webhookId, { limit: 10, offset: 0 })).count).toBe(0)
  }, 60_000)
})
