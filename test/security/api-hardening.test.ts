import type { Hono } from 'hono'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Webhooks } from 'cotwebhook'
import { COMPANY, OTHER_COMPANY, closeAll, engine, taskEvent, taskWebhook } from '../helpers/fixtures.js'
import { apiApp } from '../helpers/api-app.js'
import { startReceiver, type Receiver } from '../helpers/receiver.js'

let hooks: Webhooks
let app: Hono
let receiver: Receiver
const errors: unknown[] = []

beforeEach(async () => {
  receiver = await startReceiver((_req, i) => ({ status: i === 0 ? 500 : 200 }))
  hooks = engine({ retry: { schedule: [] }, maxEventBytes: 4_096 })
  app = apiApp(hooks, errors, { maxBodyBytes: 8_192 })
})
afterEach(async () => {
  await closeAll()
  await receiver.close()
  expect(errors).toEqual([])
})

const call = async (method: string, path: string, body?: unknown, token = 'token-a') => {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  const res = await app.request(`/api/v3${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) })
  const text = await res.text()
  return { status: res.status, text, body: text ? JSON.parse(text) : null }
}

async function setup() {
  const { webhook, secret } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
  const { deliveries } = await hooks.emit(taskEvent(1))
  await hooks.drain() // the first answer is 500: a failed delivery to resend and recover
  return { webhook, secret, logId: deliveries[0]!.id }
}

describe('REST: rotation, health, replay', () => {
  it('rotates the secret; GET secret shows the new one; list, get and logs never show a secret', async () => {
    const { webhook, secret } = await setup()
    const rotated = await call('POST', `/webhook/subscription/${webhook._id}/secret/rotate`)
    expect(rotated.status).toBe(200)
    expect(rotated.body.data).toEqual({ secret: expect.stringMatching(/^whsec_/), previousExpiresAt: expect.any(String) })
    expect((await call('GET', `/webhook/subscription/${webhook._id}/secret`)).body).toEqual({ data: { secret: rotated.body.data.secret } })
    for (const path of ['/webhook/subscription', `/webhook/subscription/${webhook._id}`, `/webhook/subscription/logs/${webhook._id}`, `/webhook/subscription/${webhook._id}/health`]) {
      const res = await call('GET', path)
      expect(res.status).toBe(200)
      expect(res.text).not.toContain('whsec_')
      expect(res.text).not.toContain(secret.slice(6))
    }
    const bad = await call('POST', `/webhook/subscription/${webhook._id}/secret/rotate`, { overlapMs: 'soon', secret: 'x' })
    expect(bad.status).toBe(400)
    expect(bad.body.error.fields).toEqual({ overlapMs: ['overlapMs: must be a number'], secret: ['secret: must be whsec_ or whsk_ followed by base64'] })
    expect(bad.text).not.toContain(rotated.body.data.secret)
  })

  it('health, resend, recover and test answer with what they did', async () => {
    const { webhook, logId } = await setup()
    const health = await call('GET', `/webhook/subscription/${webhook._id}/health`)
    expect(health.body.data).toMatchObject({ webhookId: webhook._id, isActive: true, circuit: 'closed', consecutiveFailures: 1 })
    const resent = await call('POST', `/webhook/subscription/logs/${logId}/resend`)
    expect(resent.status).toBe(202)
    expect(resent.body.data.deliveries).toEqual([expect.objectContaining({ webhookId: webhook._id, replayOf: logId })])
    const recovered = await call('POST', `/webhook/subscription/${webhook._id}/recover`, { since: new Date(0).toISOString() })
    expect(recovered.status).toBe(202)
    expect(recovered.body.data.deliveries).toHaveLength(1)
    const tested = await call('POST', `/webhook/subscription/${webhook._id}/test`)
    expect(tested.status).toBe(202)
    await hooks.drain()
    expect(receiver.requests).toHaveLength(4)
    expect(JSON.parse(receiver.requests[3]!.body).extraData).toEqual({ test: true })
  })

  it('answers 400, 409 and 413 for what a client got wrong, and changes nothing', async () => {
    const { webhook } = await setup()
    const before = (await hooks.store.listDeliveries(COMPANY, webhook._id, { limit: 100, offset: 0 })).count
    expect((await call('POST', `/webhook/subscription/${webhook._id}/recover`, '{')).body.error.code).toBe('invalid_json')
    expect((await call('POST', `/webhook/subscription/${webhook._id}/recover`, {})).body.error).toMatchObject({ code: 'validation_error', fields: { since: [expect.stringMatching(/^since: /)] } })
    const big = await call('POST', `/webhook/subscription/${webhook._id}/test`, { data: { blob: 'x'.repeat(5_000) } })
    expect(big.status).toBe(413)
    expect(big.body.error).toMatchObject({ code: 'payload_too_large', message: expect.stringMatching(/^event: is \d+ bytes as JSON, over the limit of 4096 bytes/) })
    expect((await call('POST', `/webhook/subscription/${webhook._id}/test`, { data: { blob: 'x'.repeat(9_000) } })).status).toBe(413)
    expect((await call('POST', `/webhook/subscription/${webhook._id}/test`, { data: [1] })).status).toBe(400)
    await hooks.registry.update(COMPANY, webhook._id, { isActive: false })
    const inactive = await call('POST', `/webhook/subscription/${webhook._id}/test`)
    expect(inactive.status).toBe(409)
    expect(inactive.body.error.fields).toEqual({ isActive: [expect.stringMatching(/is inactive/)] })
    expect((await hooks.store.listDeliveries(COMPANY, webhook._id, { limit: 100, offset: 0 })).count).toBe(before)
  })
})

describe('tenant isolation', () => {
  it('every route with another company\'s ids is 404, without a token 401, and nothing of the other company leaks', async () => {
    const { webhook, secret, logId } = await setup()
    const routes: Array<[string, string, unknown?]> = [
      ['GET', `/webhook/subscription/${webhook._id}`],
      ['GET', `/webhook/subscription/${webhook._id}/secret`],
      ['GET', `/webhook/subscription/${webhook._id}/health`],
      ['GET', `/webhook/subscription/logs/${webhook._id}`],
      ['PATCH', `/webhook/subscription/${webhook._id}`, { name: 'taken over' }],
      ['POST', `/webhook/subscription/${webhook._id}/secret/rotate`, {}],
      ['POST', `/webhook/subscription/logs/${logId}/resend`],
      ['POST', `/webhook/subscription/${webhook._id}/recover`, { since: 0 }],
      ['POST', `/webhook/subscription/${webhook._id}/test`, {}],
    ]
    const state = async () => JSON.stringify([await hooks.store.getWebhook(COMPANY, webhook._id), await hooks.store.listDeliveries(COMPANY, webhook._id, { limit: 100, offset: 0 })])
    const before = await state()
    for (const [method, path, body] of routes) {
      const other = await call(method, path, body, 'token-b')
      expect(other.status, `${method} ${path} as another company`).toBe(404)
      const anonymous = await call(method, path, body, '')
      expect(anonymous.status, `${method} ${path} without a token`).toBe(401)
      const forged = await call(method, path, body, 'token-z')
      expect(forged.status, `${method} ${path} with an unknown token`).toBe(401)
      for (const res of [other, anonymous, forged]) {
        expect(res.text).not.toContain(secret.slice(6))
        expect(res.text).not.toContain(receiver.url)
        expect(res.text).not.toContain(COMPANY)
      }
    }
    const list = await call('GET', '/webhook/subscription', undefined, 'token-b')
    expect(list.body).toEqual({ data: { webhooks: [], count: 0 } })
    // The stats route: another company sees none of this one's webhooks; without a token, 401.
    const stats = await call('GET', '/webhook/stats', undefined, 'token-b')
    expect(stats.status).toBe(200)
    expect(stats.text).not.toContain(webhook._id)
    expect(stats.text).not.toContain(COMPANY)
    expect((await call('GET', '/webhook/stats', undefined, '')).status).toBe(401)
    expect(await state()).toBe(before)
  })
})
