import { Hono } from 'hono'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { afterEach, describe, expect, it } from 'vitest'
import { ValidationError, type Webhooks } from 'cotwebhook'
import { webhookMetrics } from 'cotwebhook/hono'
import { apiApp } from './helpers/api-app.js'
import { COMPANY, OTHER_COMPANY, TASK_GROUP, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from './helpers/receiver.js'

const DEAD_GROUP = '6261612a8f1e99002e5c8cc2'

let receiver: Receiver | undefined
let openGate: ReturnType<typeof heldAnswers> | undefined
afterEach(async () => {
  openGate?.open()
  openGate = undefined
  await closeAll()
  await receiver?.close()
  receiver = undefined
})

/**
 * Company A: a held webhook with 3 open deliveries (one out), a dead one whose circuit opened after
 * its only delivery failed; company B: one delivered. Resolves once that is where things stand.
 */
async function scene(clock: { now: number }) {
  const gate = (openGate = heldAnswers())
  receiver = await startReceiver((request) => (request.path === '/held' ? gate.hold() : request.path === '/dead' ? { status: 500 } : { status: 200 }))
  const hooks = engine({ now: () => clock.now, retry: { schedule: [] }, circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 } })
  const held = await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/held`, { context: { taskGroup: TASK_GROUP } }))
  const dead = await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/dead`, { code: 'dead', context: { taskGroup: DEAD_GROUP } }))
  await hooks.registry.create(OTHER_COMPANY, taskWebhook(`${receiver.url}/other`))
  await hooks.emit({ ...taskEvent(1), data: { ...taskEvent(1).data, taskGroup: DEAD_GROUP } } as never)
  await until(async () => (await hooks.health(COMPANY, dead.webhook._id)).circuit === 'open', 15_000, 'the dead webhook’s circuit to open')
  for (const n of [2, 3, 4]) {
    await hooks.emit(taskEvent(n))
    clock.now += 1_000
  }
  await hooks.emit(taskEvent(5, OTHER_COMPANY))
  await until(() => gate.held === 1 && receiver!.requests.some((r) => r.path === '/other'))
  await until(async () => (await hooks.stats(OTHER_COMPANY)).outcomes.deliveries.succeeded === 1)
  return { hooks, gate, held: held.webhook._id, dead: dead.webhook._id }
}

describe('hooks.stats()', () => {
  it('lists circuits first, then the largest backlogs, per company, with ages from the oldest open delivery and this engine’s outcomes', async () => {
    const clock = { now: Date.now() }
    const start = clock.now
    const { hooks, gate, held, dead } = await scene(clock)
    const mine = await hooks.stats(COMPANY)
    expect(mine.webhooks.map((w) => [w.webhookId, w.circuit, w.open])).toEqual([
      [dead, 'open', 0],
      [held, 'closed', 3],
    ])
    expect(mine).toMatchObject({ open: 3, circuitsOpen: 1, more: 0, oldestOpenAgeMs: clock.now - start })
    expect(mine.webhooks[1]!.oldestOpenAgeMs).toBe(clock.now - start)
    expect(mine.webhooks[0]).toMatchObject({ consecutiveFailures: 1, circuitOpenUntil: expect.any(Number) })
    expect(mine.outcomes).toEqual({ attempts: { success: 0, failure: 1, gone: 0 }, deliveries: { succeeded: 0, failed: 1 } })
    // Another company sees its own only; the operator's view spans both.
    const theirs = await hooks.stats(OTHER_COMPANY)
    expect(theirs).toMatchObject({ open: 0, circuitsOpen: 0, webhooks: [], outcomes: { attempts: { success: 1 }, deliveries: { succeeded: 1 } } })
    const all = await hooks.stats()
    expect(all).toMatchObject({ open: 3, circuitsOpen: 1, outcomes: { attempts: { success: 1, failure: 1 }, deliveries: { succeeded: 1, failed: 1 } } })
    // A limit keeps the first, and says how many it left out.
    expect(await hooks.stats(COMPANY, { limit: 1 })).toMatchObject({ webhooks: [{ webhookId: dead }], more: 1 })
    gate.open()
    await hooks.drain()
    expect(await hooks.stats(COMPANY)).toMatchObject({ open: 0, oldestOpenAgeMs: null, webhooks: [{ webhookId: dead }] })
  })

  it('refuses a bad limit or company by name', async () => {
    const hooks = engine({ dispatch: false })
    for (const limit of [0, 1.5, 1_001]) {
      const error = await hooks.stats(COMPANY, { limit }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as ValidationError).fields).toEqual({ limit: ['limit: must be an integer from 1 to 1000'] })
    }
    await expect(hooks.stats('not-a-company')).rejects.toThrow('company')
  })
})

describe('the per-minute outcomes of stats().recent', () => {
  it('keep the last hour by minute, per company, and forget a minute when its slot comes round again', async () => {
    const { outcomeCounts } = await import('../src/outcome-counts.js')
    const counts = outcomeCounts()
    const m = 29_000_000 * 60_000 // a whole minute
    counts.delivery(COMPANY, 'succeeded', m + 5)
    counts.delivery(COMPANY, 'failed', m + 59_999)
    counts.delivery(OTHER_COMPANY, 'succeeded', m + 60_000)
    const recent = counts.recent(COMPANY, m + 60_000)
    expect(recent).toHaveLength(60)
    expect(recent.at(-1)).toEqual({ start: m + 60_000, succeeded: 0, failed: 0 })
    expect(recent.at(-2)).toEqual({ start: m, succeeded: 1, failed: 1 })
    expect(counts.recent(undefined, m + 60_000).at(-1)).toEqual({ start: m + 60_000, succeeded: 1, failed: 0 })
    // An hour on, the same slot holds the new minute only; the old one has left the window.
    counts.delivery(COMPANY, 'succeeded', m + 3_600_000)
    const later = counts.recent(COMPANY, m + 3_600_000)
    expect(later.at(-1)).toEqual({ start: m + 3_600_000, succeeded: 1, failed: 0 })
    expect(later.reduce((n, x) => n + x.succeeded + x.failed, 0)).toBe(1)
    expect(counts.recent(OTHER_COMPANY, m + 3_600_000 + 120_000).every((x) => x.succeeded === 0)).toBe(true)
  })
})

describe('the per-company outcome counts', () => {
  it('keep the most recently active companies only, the totals all of them', async () => {
    const { outcomeCounts } = await import('../src/outcome-counts.js')
    const counts = outcomeCounts(2)
    const [a, b, c] = ['625be93a286ef83c1c0e0001', '625be93a286ef83c1c0e0002', '625be93a286ef83c1c0e0003']
    counts.delivery(a, 'succeeded', 0)
    counts.delivery(b, 'failed', 0)
    counts.delivery(a, 'succeeded', 0) // a is the more recent of the two now
    counts.delivery(c, 'succeeded', 0) // b, the least recent, is forgotten
    expect(counts.read(a).deliveries).toEqual({ succeeded: 2, failed: 0 })
    expect(counts.read(b).deliveries).toEqual({ succeeded: 0, failed: 0 })
    expect(counts.recent(b, 0).every((m) => m.failed === 0)).toBe(true)
    expect(counts.read(c).deliveries.succeeded).toBe(1)
    expect(counts.read().deliveries).toEqual({ succeeded: 3, failed: 1 })
  })
})

describe('GET /webhook/stats', () => {
  const call = async (hooks: Webhooks, path: string, token: string) => {
    const errors: unknown[] = []
    const res = await apiApp(hooks, errors).request(`/api/v3${path}`, { headers: { authorization: `Bearer ${token}` } })
    expect(errors).toEqual([])
    return { status: res.status, body: (await res.json()) as any }
  }

  it('answers the caller’s company only, and 400 for a bad limit', async () => {
    const clock = { now: Date.now() }
    const { hooks, dead, held } = await scene(clock)
    const a = await call(hooks, '/webhook/stats', 'token-a')
    expect(a.status).toBe(200)
    expect(a.body.data.webhooks.map((w: { webhookId: string }) => w.webhookId)).toEqual([dead, held])
    const b = await call(hooks, '/webhook/stats', 'token-b')
    expect(b.body.data).toMatchObject({ open: 0, webhooks: [] })
    expect(JSON.stringify(b.body)).not.toContain(dead)
    expect((await call(hooks, '/webhook/stats?limit=1', 'token-a')).body.data.more).toBe(1)
    const bad = await call(hooks, '/webhook/stats?limit=lots', 'token-a')
    expect(bad.status).toBe(400)
    expect(bad.body.error.fields).toEqual({ limit: ['limit: must be a positive integer'] })
    expect((await call(hooks, '/webhook/stats', 'nobody')).status).toBe(401)
  })
})

describe('webhookMetrics (Prometheus)', () => {
  const scrape = (app: Hono, authorization?: string) => app.request('/ops/metrics', authorization ? { headers: { authorization } } : {})

  it('serves the exposition format a real parser reads, to the operator only', async () => {
    const clock = { now: Date.now() }
    const { hooks, dead, held } = await scene(clock)
    const app = new Hono().route('/ops', webhookMetrics(hooks, { token: 'op-secret' }))
    for (const authorization of [undefined, 'Bearer wrong', 'Bearer op-secre', 'op-secret']) {
      const refused = await scrape(app, authorization)
      expect(refused.status, authorization).toBe(401)
      expect(((await refused.json()) as any).error.code).toBe('unauthorized')
    }
    const res = await scrape(app, 'Bearer op-secret')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4')
    const families = new Map(parsePrometheusTextFormat(await res.text()).map((f) => [f.name, f]))
    const value = (name: string, labels: Record<string, string> = {}) =>
      Number((families.get(name)!.metrics as Array<{ value: string; labels?: Record<string, string> }>).find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))!.value)
    expect(families.get('cotwebhook_open_deliveries')!.type).toBe('GAUGE')
    expect(value('cotwebhook_open_deliveries')).toBe(3)
    expect(value('cotwebhook_circuits_open')).toBe(1)
    expect(value('cotwebhook_webhook_open_deliveries', { webhook_id: held, company: COMPANY })).toBe(3)
    expect(value('cotwebhook_webhook_circuit_open', { webhook_id: dead })).toBe(1)
    expect(value('cotwebhook_webhook_circuit_open', { webhook_id: held })).toBe(0)
    expect(value('cotwebhook_webhook_oldest_open_delivery_age_seconds', { webhook_id: held })).toBe(3)
    expect(families.get('cotwebhook_attempts_total')!.type).toBe('COUNTER')
    expect(value('cotwebhook_attempts_total', { outcome: 'success' })).toBe(1)
    expect(value('cotwebhook_attempts_total', { outcome: 'failure' })).toBe(1)
    expect(value('cotwebhook_deliveries_total', { outcome: 'failed' })).toBe(1)
  })

  it('takes an authorize function instead, and refuses to be made without either', async () => {
    const hooks = engine({ dispatch: false })
    const app = new Hono().route('/ops', webhookMetrics(hooks, { authorize: (c) => c.req.header('x-operator') === 'yes' }))
    expect((await scrape(app)).status).toBe(401)
    expect((await app.request('/ops/metrics', { headers: { 'x-operator': 'yes' } })).status).toBe(200)
    expect(() => webhookMetrics(hooks, {})).toThrow('webhookMetrics: give options.token')
  })
})
