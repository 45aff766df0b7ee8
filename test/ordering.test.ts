import { afterEach, describe, expect, it } from 'vitest'
import { memoryStore, type Store } from 'cotwebhook'
import { COMPANY, closeAll, engine, nOf, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from './helpers/receiver.js'

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
    // The slow endpoint holds every answer until the test lets it go: the fast one must finish all five
    // while the slow one has its first still unanswered.
    const gate = heldAnswers()
    const slow = await receive(() => gate.hold())
    const fast = await receive(() => ({ status: 200 }))
    const hooks = engine()
    await hooks.registry.create(COMPANY, taskWebhook(`${slow.url}/slow`))
    await hooks.registry.create(COMPANY, taskWebhook(`${fast.url}/fast`))
    for (let n = 0; n < 5; n++) await hooks.emit(taskEvent(n))
    await until(() => fast.requests.length === 5, 15_000, 'the fast endpoint to get all five')
    expect(slow.requests).toHaveLength(1)
    expect(gate.held).toBe(1)
    gate.open()
    await hooks.drain()
    expect(slow.requests.map((r) => nOf(r.body))).toEqual([0, 1, 2, 3, 4])
    expect(fast.requests.map((r) => nOf(r.body))).toEqual([0, 1, 2, 3, 4])
    expect(slow.maxInFlight).toBe(1)
  })
})

describe("ordering: 'none'", () => {
  it('sends a webhook’s deliveries concurrently', async () => {
    // Every answer is held until all six are in: they can only all arrive if they were sent together.
    const gate = heldAnswers()
    const receiver = await receive(() => gate.hold())
    const hooks = engine({ ordering: 'none' })
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    for (let n = 0; n < 6; n++) await hooks.emit(taskEvent(n))
    await until(() => gate.held === 6, 15_000, 'six requests in flight at once')
    gate.open()
    await hooks.drain()
    expect(receiver.requests).toHaveLength(6)
    expect(receiver.maxInFlight).toBe(6)
  })

  it('is the only other ordering', () => {
    expect(() => engine({ ordering: 'random' as never })).toThrow("ordering must be 'webhook' or 'none'")
  })
})

describe('the global concurrency limit', () => {
  it('bounds deliveries in flight across webhooks', async () => {
    // Answers are held and let go three at a time: the receiver sees the limit itself, not a race.
    const gate = heldAnswers()
    const receiver = await receive(() => gate.hold())
    // Held answers on a busy machine may take longer than the slow lane's second: this counts the slots alone.
    const hooks = engine({ concurrency: 3, slowLane: false })
    for (let i = 0; i < 8; i++) await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/${i}`))
    await hooks.emit(taskEvent())
    const drained = hooks.drain()
    for (let answered = 0; answered < 8; ) {
      const expected = Math.min(3, 8 - answered)
      await until(() => gate.held === expected, 15_000, `${expected} requests held after ${answered} answered`)
      answered += expected
      gate.release(expected)
    }
    await drained
    expect(receiver.requests).toHaveLength(8)
    expect(receiver.maxInFlight).toBe(3)
  })

  it('is not taken by deliveries waiting for a retry: a healthy webhook goes first', async () => {
    const failing = await receive(() => ({ status: 500 }))
    const healthy = await receive(() => ({ status: 200 }))
    // The retries wait 30 s in process: only a slot freed by their waiting lets the healthy one through.
    const hooks = engine({ concurrency: 2, retry: { schedule: [30_000] } })
    const ids = [
      (await hooks.registry.create(COMPANY, taskWebhook(`${failing.url}/1`))).webhook._id,
      (await hooks.registry.create(COMPANY, taskWebhook(`${failing.url}/2`))).webhook._id,
    ]
    await hooks.emit(taskEvent(0)) // both failing webhooks take the two slots, then wait for their retry
    const waiting = async () => (await Promise.all(ids.map((id) => hooks.logs(COMPANY, id)))).every(([log]) => log?.attempts.length === 1 && log.state === 'pending')
    await until(waiting, 15_000, 'both failed attempts recorded')
    await hooks.registry.create(COMPANY, taskWebhook(healthy.url))
    await hooks.emit(taskEvent(1))
    await until(() => healthy.requests.length === 1, 15_000, 'the healthy delivery, while the retries still wait')
    // Nothing more reached the failing endpoint: its retries are still waiting, their next events behind them.
    expect(failing.requests).toHaveLength(2)
  })

  it('renews the lease of a delivery that waited for a slot before sending it, so it is never sent twice', async () => {
    // B waits in line for its host's only slot while A is out. The engine's clock is the test's: while B
    // waits, its lease runs short; once B is out, the clock passes B's first lease. Only a lease renewed
    // before sending keeps the loop (polling every 10 ms, counted) from taking B over and sending it again.
    let offset = 0
    const gate = heldAnswers()
    const receiver = await receive(() => gate.hold())
    const inner = memoryStore()
    let claims = 0
    const store: Store = { ...inner, claim: (options) => (claims++, inner.claim(options)) }
    const errors: unknown[] = []
    const hooks = engine({
      store,
      now: () => Date.now() + offset,
      pollIntervalMs: 10,
      leaseMs: 10_000,
      timeoutMs: 5_000,
      rateLimit: { hostConcurrency: 1 },
      onError: (e) => errors.push(e),
    })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/a`))
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/b`))
    await hooks.emit(taskEvent())
    await until(() => gate.held === 1, 15_000, 'A out, B waiting for the host')
    offset += 6_000 // B's lease now has less left than an attempt may take
    gate.release(1)
    await until(() => gate.held === 1 && receiver.requests.length === 2, 15_000, 'B out')
    offset += 5_000 // past B's first lease
    const seen = claims
    await until(() => claims >= seen + 5, 15_000, 'five more rounds of the loop')
    gate.open()
    await hooks.drain()
    expect(receiver.requests.map((r) => r.path)).toEqual(['/a', '/b'])
    expect(errors).toEqual([])
  })

  it('is a positive integer', () => {
    expect(() => engine({ concurrency: 0 })).toThrow('concurrency must be a positive integer, not 0')
    expect(() => engine({ timeoutMs: 1.5 })).toThrow('timeoutMs must be a positive integer')
    expect(() => engine({ timeoutMs: 30_000, leaseMs: 20_000 })).toThrow('leaseMs (20000) must exceed timeoutMs (30000)')
  })
})
