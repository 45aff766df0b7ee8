import { afterEach, describe, expect, it, vi } from 'vitest'
import { COTALKER_SCHEDULE, delayAfter, memoryStore, parseRetryAfter } from 'cotwebhook'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { realSleep, startReceiver, until, type Receiver } from './helpers/receiver.js'

let receiver: Receiver
afterEach(async () => {
  vi.useRealTimers()
  await closeAll()
  await receiver?.close()
})

describe("Cotalker's default schedule", () => {
  it('is three attempts, 30 seconds apart', () => {
    expect(COTALKER_SCHEDULE).toEqual([30_000, 30_000])
  })

  it('retries a failing receiver 30 s and 60 s after the first attempt, then succeeds', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const t0 = Date.now()
    receiver = await startReceiver((_, i) => ({ status: i < 2 ? 500 : 200, body: i < 2 ? 'down' : 'ok' }))
    const hooks = engine() // default schedule
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const { deliveries } = await hooks.emit(taskEvent())
    const log = async () => (await hooks.logs(COMPANY, webhook._id))[0]!

    await until(async () => (await log()).attempts.length === 1, 15_000, 'first attempt recorded')
    expect(await log()).toMatchObject({ state: 'pending', status: 500, retry: 0, response: 'down', nextAttemptAt: new Date(t0 + 30_000).toISOString() })

    await vi.advanceTimersByTimeAsync(29_999)
    await realSleep(50)
    expect(receiver.requests).toHaveLength(1)

    await vi.advanceTimersByTimeAsync(1)
    await until(async () => (await log()).attempts.length === 2, 15_000, 'second attempt recorded')
    expect(await log()).toMatchObject({ state: 'pending', retry: 1, nextAttemptAt: new Date(t0 + 60_000).toISOString() })

    await vi.advanceTimersByTimeAsync(30_000)
    await until(async () => (await log()).state === 'succeeded', 15_000, 'success')
    expect(receiver.requests.map((r) => r.at - t0)).toEqual([0, 30_000, 60_000])
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set([deliveries[0]!.id]))
    expect(await log()).toMatchObject({ status: 200, retry: 2, response: 'ok', nextAttemptAt: null })
    expect((await log()).attempts.map((a) => a.status)).toEqual([500, 500, 200])
  })

  it('gives up after the third failed attempt', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    receiver = await startReceiver(() => ({ status: 503, body: 'maintenance' }))
    const hooks = engine()
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    const log = async () => (await hooks.logs(COMPANY, webhook._id))[0]!
    for (let n = 1; n <= 2; n++) {
      await until(async () => (await log()).attempts.length === n, 15_000, `attempt ${n}`)
      await vi.advanceTimersByTimeAsync(30_000)
    }
    await until(async () => (await log()).state === 'failed', 15_000, 'failure')
    await vi.advanceTimersByTimeAsync(600_000)
    await realSleep(50)
    expect(receiver.requests).toHaveLength(3)
    expect(await log()).toMatchObject({ state: 'failed', status: 503, retry: 2, response: 'maintenance', nextAttemptAt: null })
    await hooks.drain()
  })
})

describe('a custom schedule', () => {
  it('makes attempts = delays + 1, and an empty schedule means one attempt', async () => {
    receiver = await startReceiver(() => ({ status: 500 }))
    const hooks = engine({ retry: { schedule: [] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect(receiver.requests).toHaveLength(1)
    expect((await hooks.logs(COMPANY, webhook._id))[0]).toMatchObject({ state: 'failed', retry: 0 })
  })

  it('is refused when a delay is negative or not a number', () => {
    expect(() => engine({ retry: { schedule: [1_000, -1] } })).toThrow(/retry\.schedule must be a list of delays/)
    expect(() => engine({ retry: { schedule: [Number.NaN] } })).toThrow(/retry\.schedule/)
    expect(() => engine({ retry: { jitter: 2 } })).toThrow(/retry\.jitter must be between 0 and 1/)
  })

  it('spreads delays by the jitter fraction only', () => {
    expect(delayAfter(1, [10_000], 0)).toBe(10_000)
    expect(delayAfter(1, [10_000], 0.2, () => 0)).toBe(8_000)
    expect(delayAfter(1, [10_000], 0.2, () => 1)).toBe(12_000)
    expect(delayAfter(2, [1_000, 5_000])).toBe(5_000)
  })
})

describe('Retry-After', () => {
  it('replaces the scheduled delay on 429 and still uses up an attempt', async () => {
    receiver = await startReceiver((_, i) => (i === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }))
    const hooks = engine({ retry: { schedule: [50_000] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    const [log] = await hooks.logs(COMPANY, webhook._id)
    expect(log).toMatchObject({ state: 'succeeded', retry: 1 })
    // The sender waited the second Retry-After asked for, from the end of the first attempt (as its log
    // records them). The bound above is the schedule's 50 s, which it replaced: no attempt and its
    // settle take that long (each attempt times out at 15 s).
    const [first, second] = log!.attempts
    const waited = Date.parse(second!.at) - (Date.parse(first!.at) + first!.durationMs)
    expect(waited).toBeGreaterThanOrEqual(1_000 - 1)
    expect(waited).toBeLessThan(50_000)
  })

  it('is honoured on 503 as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z')
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now, 3_600_000)).toBe(30_000)
    expect(parseRetryAfter('120', now, 3_600_000)).toBe(120_000)
    expect(parseRetryAfter('999999', now, 3_600_000)).toBe(3_600_000)
    expect(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now, 3_600_000)).toBe(0)
    expect(parseRetryAfter('soon', now, 3_600_000)).toBeUndefined()
    // Not seconds and not an HTTP date: the schedule applies (Date.parse would take these for dates in 2001).
    for (const odd of ['1.5', '-1', 'soon 2', '2026-01-01', '']) expect(parseRetryAfter(odd, now, 3_600_000), odd).toBeUndefined()
    expect(parseRetryAfter(null, now, 3_600_000)).toBeUndefined()
  })

  it('is ignored on other statuses', async () => {
    receiver = await startReceiver((_, i) => (i === 0 ? { status: 500, headers: { 'retry-after': '3600' } } : { status: 200 }))
    const hooks = engine({ retry: { schedule: [20] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect((await hooks.logs(COMPANY, webhook._id))[0]).toMatchObject({ state: 'succeeded', retry: 1 })
  })

  it('is capped, and a long one hands the delivery back to the store with its due time', async () => {
    const store = memoryStore()
    receiver = await startReceiver(() => ({ status: 503, headers: { 'retry-after': '86400' } }))
    const hooks = engine({ store, retry: { schedule: [10], maxRetryAfterMs: 120_000 } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const before = Date.now()
    await hooks.emit(taskEvent())
    const log = async () => (await hooks.logs(COMPANY, webhook._id))[0]!
    await until(async () => (await log()).attempts.length === 1, 15_000, 'first attempt')
    const after = Date.now()
    // Capped at 120 s from the attempt, which happened between `before` and `after`.
    const due = Date.parse((await log()).nextAttemptAt!)
    expect(due).toBeGreaterThanOrEqual(before + 120_000)
    expect(due).toBeLessThanOrEqual(after + 120_000)
    // Handed back: the lease is free, so any claimer takes it once due.
    const claimed = await store.claim({ now: due, limit: 10, leaseMs: 1_000, owner: 'other', ordered: true })
    expect(claimed.map((c) => c.delivery.attempts.length)).toEqual([1])
  })
})

describe('a restart', () => {
  it('resumes a delivery whose long retry was handed back to the store', async () => {
    const store = memoryStore()
    receiver = await startReceiver((_, i) => ({ status: i === 0 ? 500 : 200 }))
    const first = engine({ store, retry: { schedule: [3_600_000] } })
    const { webhook } = await first.registry.create(COMPANY, taskWebhook(receiver.url))
    await first.emit(taskEvent())
    await until(async () => (await first.logs(COMPANY, webhook._id))[0]!.attempts.length === 1)
    await first.close()
    expect(await store.openCount()).toBe(1)
    // The next process, an hour later: it resumes without being asked.
    const later = engine({ store, retry: { schedule: [3_600_000] }, now: () => Date.now() + 3_600_001 })
    await later.drain()
    expect(receiver.requests).toHaveLength(2)
    expect((await later.logs(COMPANY, webhook._id))[0]).toMatchObject({ state: 'succeeded', retry: 1 })
  })

  it('gives back a retry that was waiting in process, and the next engine sends it', async () => {
    const store = memoryStore()
    receiver = await startReceiver((_, i) => ({ status: i === 0 ? 500 : 200 }))
    const first = engine({ store }) // 30 s in-process wait
    const { webhook } = await first.registry.create(COMPANY, taskWebhook(receiver.url))
    await first.emit(taskEvent())
    await until(async () => (await first.logs(COMPANY, webhook._id))[0]!.attempts.length === 1)
    await first.close()
    await expect(first.emit(taskEvent())).rejects.toThrow(/emit\(\) after close\(\)/)
    const later = engine({ store, now: () => Date.now() + 30_001 })
    await later.drain()
    expect(receiver.requests).toHaveLength(2)
    expect((await later.logs(COMPANY, webhook._id))[0]).toMatchObject({ state: 'succeeded', retry: 1 })
  })
})
