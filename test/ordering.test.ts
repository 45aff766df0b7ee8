import { afterEach, describe, expect, it } from 'vitest'
import { COMPANY, closeAll, engine, nOf, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { startReceiver, type Receiver } from './helpers/receiver.js'

const receivers: Receiver[] = []
afterEach(async () => {
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
})
const receive = async (...args: Parameters<typeof startReceiver>) => {
  const r = await startReceiver(...args)
  receivers.push(r)
  return r
}

describe('per-webhook order (the default)', () => {
  it('delivers 2 and 3 only after 1, even when 1 fails its first attempt', async () => {
    let failedOnce = false
    const receiver = await receive((request) => {
      if (nOf(request.body) === 1 && !failedOnce) {
        failedOnce = true
        return { status: 500 }
      }
      return { status: 200 }
    })
    const hooks = engine({ retry: { schedule: [200] } })
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    for (const n of [1, 2, 3]) await hooks.emit(taskEvent(n))
    await hooks.drain()
    expect(receiver.requests.map((r) => nOf(r.body))).toEqual([1, 1, 2, 3])
    expect(receiver.maxInFlight).toBe(1)
  })

  it('moves on after a delivery gives up', async () => {
    const receiver = await receive((request) => ({ status: nOf(request.body) === 1 ? 500 : 200 }))
    const hooks = engine({ retry: { schedule: [10, 10] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    for (const n of [1, 2]) await hooks.emit(taskEvent(n))
    await hooks.drain()
    expect(receiver.requests.map((r) => nOf(r.body))).toEqual([1, 1, 1, 2])
    expect((await hooks.logs(COMPANY, webhook._id)).map((l) => l.state)).toEqual(['succeeded', 'failed'])
  })

  it('keeps order per webhook while different webhooks proceed concurrently', async () => {
    const slow = await receive(() => ({ status: 200, delayMs: 40 }))
    const fast = await receive(() => ({ status: 200 }))
    const hooks = engine()
    await hooks.registry.create(COMPANY, taskWebhook(`${slow.url}/slow`))
    await hooks.registry.create(COMPANY, taskWebhook(`${fast.url}/fast`))
    for (let n = 0; n < 5; n++) await hooks.emit(taskEvent(n))
    await hooks.drain()
    expect(slow.requests.map((r) => nOf(r.body))).toEqual([0, 1, 2, 3, 4])
    expect(fast.requests.map((r) => nOf(r.body))).toEqual([0, 1, 2, 3, 4])
    expect(slow.maxInFlight).toBe(1)
    // The fast endpoint did not wait for the slow one.
    expect(fast.requests.at(-1)!.at).toBeLessThan(slow.requests.at(-1)!.at)
  })
})

describe("ordering: 'none'", () => {
  it('sends a webhook’s deliveries concurrently', async () => {
    const receiver = await receive(() => ({ status: 200, delayMs: 100 }))
    const hooks = engine({ ordering: 'none' })
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    for (let n = 0; n < 6; n++) await hooks.emit(taskEvent(n))
    await hooks.drain()
    expect(receiver.requests).toHaveLength(6)
    expect(receiver.maxInFlight).toBeGreaterThan(1)
  })

  it('is the only other ordering', () => {
    expect(() => engine({ ordering: 'random' as never })).toThrow("ordering must be 'webhook' or 'none'")
  })
})

describe('the global concurrency limit', () => {
  it('bounds deliveries in flight across webhooks', async () => {
    const receiver = await receive(() => ({ status: 200, delayMs: 60 }))
    const hooks = engine({ concurrency: 3 })
    for (let i = 0; i < 8; i++) await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/${i}`))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect(receiver.requests).toHaveLength(8)
    expect(receiver.maxInFlight).toBe(3)
  })

  it('is not taken by deliveries waiting for a retry: a healthy webhook goes first', async () => {
    const failing = await receive(() => ({ status: 500 }))
    const healthy = await receive(() => ({ status: 200 }))
    const hooks = engine({ concurrency: 2, retry: { schedule: [1_500] } })
    await hooks.registry.create(COMPANY, taskWebhook(`${failing.url}/1`))
    await hooks.registry.create(COMPANY, taskWebhook(`${failing.url}/2`))
    await hooks.emit(taskEvent(0)) // both failing webhooks take the two slots, then wait 1.5 s
    await hooks.registry.create(COMPANY, taskWebhook(healthy.url))
    await hooks.emit(taskEvent(1))
    await hooks.drain()
    expect(failing.requests).toHaveLength(8) // 2 webhooks × 2 events × 2 attempts
    const retries = failing.requests.filter((r, i) => failing.requests.findIndex((q) => q.headers['webhook-id'] === r.headers['webhook-id']) !== i)
    expect(healthy.requests).toHaveLength(1)
    // The healthy delivery did not wait for the failing ones' retries.
    expect(healthy.requests[0]!.at).toBeLessThan(Math.min(...retries.map((r) => r.at)))
  })

  it('does not let a retry queued for a send slot lose its lease and be sent twice', async () => {
    // Six retries wake at once and queue for one slot; each send takes longer than a sixth of the lease.
    const seen = new Map<string, number>()
    const receiver = await receive((request) => {
      const id = request.headers['webhook-id']!
      const n = (seen.get(id) ?? 0) + 1
      seen.set(id, n)
      return n === 1 ? { status: 500 } : { status: 200, delayMs: 150 }
    })
    const errors: unknown[] = []
    const hooks = engine({ concurrency: 1, leaseMs: 400, timeoutMs: 200, retry: { schedule: [50] }, onError: (e) => errors.push(e) })
    for (let i = 0; i < 6; i++) await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/${i}`))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect([...seen.values()]).toEqual([2, 2, 2, 2, 2, 2]) // one failure and one success each, no extra sends
    expect(errors).toEqual([])
  })

  it('is a positive integer', () => {
    expect(() => engine({ concurrency: 0 })).toThrow('concurrency must be a positive integer, not 0')
    expect(() => engine({ timeoutMs: 1.5 })).toThrow('timeoutMs must be a positive integer')
    expect(() => engine({ timeoutMs: 30_000, leaseMs: 20_000 })).toThrow('leaseMs (20000) must exceed timeoutMs (30000)')
  })
})
