import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { NotFoundError, VERSION, ValidationError, memoryStore, objectId, type EmitInput, type Store } from 'cotwebhook'
import { COMPANY, OTHER_COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { taskEvent as fixtureEvent, webhookRecord } from 'cotwebhook/testing'
import { startReceiver, until, type Receiver } from './helpers/receiver.js'

let receiver: Receiver
afterEach(async () => {
  await closeAll()
  await receiver?.close()
})

describe('emit()', () => {
  it('stores the deliveries before it resolves', async () => {
    receiver = await startReceiver()
    const store = memoryStore()
    const hooks = engine({ store })
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const { deliveries } = await hooks.emit(taskEvent())
    for (const d of deliveries) expect(await store.getDelivery(COMPANY, d.id)).toMatchObject({ webhookId: d.webhookId })
    await hooks.drain()
  })

  it('returns the first result for a repeated idempotency key and sends once', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const first = await hooks.emit(taskEvent(1), { idempotencyKey: 'task-1-created' })
    const again = await hooks.emit(taskEvent(1), { idempotencyKey: 'task-1-created' })
    expect(again).toEqual(first)
    await hooks.drain()
    expect(receiver.requests).toHaveLength(1)
    await expect(hooks.emit(taskEvent(1), { idempotencyKey: '' })).rejects.toThrow('idempotencyKey: must not be empty')
  })

  it('scopes idempotency keys to the company', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    const a = await hooks.emit(taskEvent(1, COMPANY), { idempotencyKey: 'k' })
    const b = await hooks.emit(taskEvent(1, OTHER_COMPANY), { idempotencyKey: 'k' })
    expect(b.eventId).not.toBe(a.eventId)
    await hooks.drain()
    expect(receiver.requests).toHaveLength(2)
  })

  it('stores nothing when no webhook matches', async () => {
    const store = memoryStore()
    const hooks = engine({ store })
    const result = await hooks.emit(taskEvent())
    expect(result.deliveries).toEqual([])
    expect(await store.openCount()).toBe(0)
  })

  it('refuses an invalid event with a ValidationError and stores nothing', async () => {
    receiver = await startReceiver()
    const store = memoryStore()
    const hooks = engine({ store })
    await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    // Without taskGroup: the types refuse it too; this is what a host that bypasses them gets.
    const error = await hooks.emit({ ...taskEvent(), data: { _id: objectId() } } as unknown as EmitInput).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as ValidationError).fields).toEqual({
      'data.taskGroup': ['data.taskGroup: must be an ObjectId (create-edit-delete-task webhooks filter on context.taskGroup)'],
    })
    expect(await store.openCount()).toBe(0)
  })
})

describe('logs()', () => {
  it('pages newest first and refuses another company’s webhook', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    const ids = []
    for (let n = 0; n < 12; n++) ids.push((await hooks.emit(taskEvent(n))).deliveries[0]!.id)
    await hooks.drain()
    expect((await hooks.logs(COMPANY, webhook._id)).map((l) => l._id)).toEqual(ids.slice(2).reverse())
    expect((await hooks.logs(COMPANY, webhook._id, { limit: 5, page: 3 })).map((l) => l._id)).toEqual([ids[1], ids[0]])
    expect((await hooks.listLogs(COMPANY, webhook._id, { limit: 1 })).count).toBe(12)
    await expect(hooks.logs(OTHER_COMPANY, webhook._id)).rejects.toBeInstanceOf(NotFoundError)
    await expect(hooks.logs(COMPANY, webhook._id, { limit: 0 })).rejects.toThrow('limit: must be at least 1')
  })
})

describe('prune()', () => {
  it('removes final deliveries older than the bound, with their logs, and keeps the rest', async () => {
    receiver = await startReceiver()
    let clock = Date.now()
    const hooks = engine({ now: () => clock, retention: { maxAgeMs: 60_000 } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent(0), { idempotencyKey: 'old' })
    await hooks.drain()
    clock += 120_000
    await hooks.emit(taskEvent(1))
    await hooks.drain()
    expect(await hooks.prune()).toEqual({ deliveries: 1, events: 0, idempotencyKeys: 1 })
    expect((await hooks.logs(COMPANY, webhook._id)).map((l) => l.event.data?.n)).toEqual([1])
    clock += 1
    expect(await hooks.prune({ olderThanMs: 0 })).toMatchObject({ deliveries: 1 })
    expect(await hooks.logs(COMPANY, webhook._id)).toEqual([])
    await expect(engine().prune()).rejects.toThrow('prune() needs olderThanMs, or the retention option')
    expect(() => engine({ retention: { maxAgeMs: -1 } })).toThrow('retention.maxAgeMs must be an integer ≥ 0')
  })

  it('lets the event loop run between batches, even on a store that answers without I/O', async () => {
    // 100,000 final deliveries of one webhook, made through the store directly (quicker than sending).
    const store = memoryStore()
    const record = webhookRecord(COMPANY)
    await store.insertWebhook(record)
    const webhookId = record.webhook._id
    for (let n = 0; n < 100_000; n += 1_000) {
      await Promise.all(Array.from({ length: 1_000 }, (_, i) =>
        store.enqueue({ eventId: objectId(), event: fixtureEvent(COMPANY), deliveries: [{ id: objectId(), webhookId }], now: n + i })))
      const claimed = await store.claim({ now: 200_000, limit: 1_000, leaseMs: 1_000, owner: 'x', ordered: false })
      await Promise.all(claimed.map((c) => store.settle(c.lease, { now: 200_000, state: 'succeeded', response: 'ok' })))
    }
    const hooks = engine({ store, now: () => 300_000, dispatch: false, retention: { maxAgeMs: 1, batchSize: 500 } })
    let turns = 0
    let ticking = true
    const tick = () => {
      turns++
      if (ticking) setTimeout(tick, 0)
    }
    setTimeout(tick, 0)
    expect(await hooks.prune()).toMatchObject({ deliveries: 100_000 })
    ticking = false
    // 200 batches: a timer got to run between (nearly) every two of them.
    expect(turns).toBeGreaterThanOrEqual(100)
    expect(await store.listDeliveries(COMPANY, webhookId, { limit: 10, offset: 0 })).toEqual({ items: [], count: 0 })
  })
})

describe('drain()', () => {
  it('resolves at once when nothing is open', async () => {
    const hooks = engine()
    await expect(hooks.drain()).resolves.toBeUndefined()
  })

  /**
   * A memory store that counts the calls made to it. Past 100 calls of a kind each call also yields to
   * the event loop, so a drain that spins fails this test with its count instead of freezing the process
   * (a spin on microtasks starves every timer, vitest's own included).
   */
  const countingStore = () => {
    const inner = memoryStore()
    const calls = { claim: 0, nextWakeAt: 0, openCount: 0 }
    const counted = async <T>(kind: keyof typeof calls, call: () => Promise<T>): Promise<T> => {
      if (++calls[kind] > 100) await new Promise((r) => setTimeout(r, 0))
      return call()
    }
    const store: Store = {
      ...inner,
      claim: (o) => counted('claim', () => inner.claim(o)),
      nextWakeAt: (n, o) => counted('nextWakeAt', () => inner.nextWakeAt(n, o)),
      openCount: () => counted('openCount', () => inner.openCount()),
    }
    return { store, calls }
  }

  it('waits for a retry handed back to the store without spinning', async () => {
    receiver = await startReceiver((_, i) => ({ status: i === 0 ? 500 : 200 }))
    const { store, calls } = countingStore()
    // The retry is due 300 ms later and waits in the store, not in process.
    const hooks = engine({ store, pollIntervalMs: 100, retry: { schedule: [300], maxInProcessDelayMs: 0 } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect(receiver.requests).toHaveLength(2)
    expect((await hooks.logs(COMPANY, webhook._id))[0]).toMatchObject({ state: 'succeeded', retry: 1 })
    // A look per poll (100 ms) and one per run, not one per turn of the loop (which was ~600 a millisecond).
    expect(calls.openCount).toBeLessThan(50)
    expect(calls.claim).toBeLessThan(50)
    expect(calls.nextWakeAt).toBeLessThan(50)
  })

  it('in an engine that only emits, looks at the store once per poll', async () => {
    receiver = await startReceiver()
    const { store, calls } = countingStore()
    const emitter = engine({ store, dispatch: false, pollIntervalMs: 100 })
    await emitter.registry.create(COMPANY, taskWebhook(receiver.url))
    await emitter.emit(taskEvent())
    const draining = emitter.drain()
    await until(() => calls.openCount >= 3, 15_000, 'three looks at the store')
    const worker = engine({ store: emitter.store })
    await draining
    await worker.drain()
    expect(receiver.requests).toHaveLength(1)
    // Three looks took at least two poll intervals; a spinning drain made thousands meanwhile.
    expect(calls.openCount).toBeLessThan(10)
  })
})

describe('close()', () => {
  it('resolves only once a claim under way has given its deliveries back', async () => {
    receiver = await startReceiver()
    const inner = memoryStore()
    // A slow database: the claim answers only when the test says, after close() has been called.
    let started!: () => void
    const claimStarted = new Promise<void>((resolve) => (started = resolve))
    let answer!: () => void
    const answered = new Promise<void>((resolve) => (answer = resolve))
    let holding = true
    const store: Store = {
      ...inner,
      claim: async (options) => {
        const claimed = await inner.claim(options)
        if (holding && claimed.length) {
          holding = false
          started()
          await answered
        }
        return claimed
      },
    }
    const setup = engine({ store, dispatch: false })
    await setup.registry.create(COMPANY, taskWebhook(receiver.url))
    await setup.emit(taskEvent())
    const hooks = engine({ store })
    await claimStarted
    let closed = false
    const closing = hooks.close().then(() => (closed = true))
    await new Promise((r) => setTimeout(r, 0))
    expect(closed).toBe(false) // still waiting for the claim under way
    answer()
    await closing
    const next = await inner.claim({ now: Date.now(), limit: 10, leaseMs: 1_000, owner: 'next', ordered: true })
    expect(next).toHaveLength(1) // not left leased by the closed engine
    expect(receiver.requests).toHaveLength(0)
  })
})

describe('a failing store', () => {
  it('is reported, and the delivery is picked up again once its lease expires', async () => {
    receiver = await startReceiver()
    const inner = memoryStore()
    let failures = 1
    const store: Store = {
      ...inner,
      settle: async (lease, settlement) => {
        if (failures-- > 0) throw new Error('store unavailable')
        return inner.settle(lease, settlement)
      },
    }
    const errors: unknown[] = []
    // The lease runs out when the test moves the engine's clock, not after a race with a short timeout.
    let offset = 0
    const hooks = engine({ store, now: () => Date.now() + offset, pollIntervalMs: 10, onError: (e) => errors.push(e) })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    await hooks.emit(taskEvent())
    await until(() => errors.length === 1, 15_000, 'the failed settle to be reported')
    expect(String(errors[0])).toContain('store unavailable')
    expect(receiver.requests).toHaveLength(1)
    offset += 60_001 // past the default lease
    await hooks.drain()
    // Sent twice: the first attempt's outcome could not be recorded. At-least-once, never lost.
    expect(receiver.requests).toHaveLength(2)
    expect((await hooks.logs(COMPANY, webhook._id))[0]).toMatchObject({ state: 'succeeded', retry: 0 })
  })
})

describe('the package', () => {
  it('sends the version of package.json in its user-agent', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
    expect(VERSION).toBe(pkg.version)
  })
})

describe('an emit-only engine', () => {
  it('stays idle between emits and leaves delivery to an engine that dispatches', async () => {
    receiver = await startReceiver()
    const store = memoryStore()
    const emitter = engine({ store, dispatch: false, pollIntervalMs: 0 })
    await emitter.registry.create(COMPANY, taskWebhook(receiver.url))
    // Emits in a burst: each kicks the loop while the previous kick is still being answered.
    await Promise.all(Array.from({ length: 50 }, (_, n) => emitter.emit(taskEvent(n))))
    // The event loop is free (a spinning loop would starve this timer), and nothing was sent.
    await new Promise((r) => setTimeout(r, 50))
    expect(receiver.requests).toHaveLength(0)
    expect(await store.openCount()).toBe(50)
    const worker = engine({ store })
    await worker.drain()
    await emitter.drain()
    expect(receiver.requests).toHaveLength(50)
  })
})

describe('flush()', () => {
  it('delivers a whole backlog on a SQL store before it resolves, then says nothing is due', async () => {
    const { sqliteStore } = await import('cotwebhook/sqlite')
    receiver = await startReceiver()
    const store = sqliteStore(':memory:')
    await store.migrate()
    const setup = engine({ store, dispatch: false })
    await setup.registry.create(COMPANY, taskWebhook(receiver.url))
    for (let n = 0; n < 10; n++) await setup.emit(taskEvent(n))
    const worker = engine({ store, pollIntervalMs: 0 })
    expect(await worker.flush()).toEqual({})
    expect(receiver.requests).toHaveLength(10)
    expect(await store.openCount()).toBe(0)
  })

  it('gives up with the store’s error when claims keep failing, without spinning', async () => {
    const inner = memoryStore()
    let claims = 0
    const store: Store = {
      ...inner,
      claim: async () => {
        claims++
        throw new Error('claims are down')
      },
    }
    const setup = engine({ store: inner, dispatch: false })
    await setup.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
    await setup.emit(taskEvent())
    const errors: unknown[] = []
    const worker = engine({ store, pollIntervalMs: 0, onError: (e) => errors.push(e) })
    await expect(worker.flush()).rejects.toThrow('claims are down')
    expect(claims).toBeGreaterThanOrEqual(3)
    expect(claims).toBeLessThan(10) // a backoff between tries, not a tight loop
    expect(errors.length).toBe(claims)
  })
})
