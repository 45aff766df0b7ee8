import { afterEach, describe, expect, it } from 'vitest'
import { memoryStore, objectId } from 'cotwebhook'
import { taskEvent as fixtureEvent, webhookRecord } from 'cotwebhook/testing'
import { COMPANY, OTHER_COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from './helpers/receiver.js'

/**
 * Noisy neighbours in the send slots: endpoints that never answer (receivers holding every answer
 * until the test lets go) beside a healthy one. Counted in requests in flight and requests arrived,
 * never in elapsed time.
 */

const receivers: Receiver[] = []
const releases: Array<() => void> = []
afterEach(async () => {
  for (const release of releases.splice(0)) release()
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
})

/** A receiver that holds every answer until the test is over (or `release()` is called). */
async function hanging() {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  releases.push(release)
  const receiver = await startReceiver(async () => {
    await gate
    return { status: 200 }
  })
  receivers.push(receiver)
  return Object.assign(receiver, { release })
}

async function healthy() {
  const receiver = await startReceiver()
  receivers.push(receiver)
  return receiver
}

describe('send slots shared with endpoints that hang', () => {
  it('holds one unordered webhook to a quarter of the slots, so the others keep delivering', async () => {
    const dead = await hanging()
    const alive = await healthy()
    const hooks = engine({ concurrency: 8, ordering: 'none', slowLane: false, timeoutMs: 60_000, leaseMs: 120_000 })
    await hooks.registry.create(OTHER_COMPANY, taskWebhook(dead.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    for (let i = 0; i < 20; i++) await hooks.emit(taskEvent(i, OTHER_COMPANY))
    await until(() => dead.inFlight === 2, 15_000, 'the dead webhook to take its share')
    for (let i = 0; i < 10; i++) await hooks.emit(taskEvent(i))
    await until(() => alive.requests.length === 10, 15_000, 'the healthy webhook’s deliveries')
    // Two of eight slots (a quarter), however many of its deliveries are due.
    expect(dead.maxInFlight).toBe(2)
    dead.release()
    await hooks.drain()
    expect(dead.requests).toHaveLength(20)
    expect(dead.maxInFlight).toBe(2)
  })

  it('takes an explicit share when given one', async () => {
    const dead = await hanging()
    const hooks = engine({ concurrency: 8, ordering: 'none', slowLane: false, rateLimit: { webhookConcurrency: 5 }, timeoutMs: 60_000, leaseMs: 120_000 })
    await hooks.registry.create(COMPANY, taskWebhook(dead.url))
    for (let i = 0; i < 12; i++) await hooks.emit(taskEvent(i))
    await until(() => dead.inFlight === 5, 15_000, 'five requests in flight')
    dead.release()
    await hooks.drain()
    expect(dead.maxInFlight).toBe(5)
    expect(() => engine({ rateLimit: { webhookConcurrency: 0 } })).toThrow('rateLimit.webhookConcurrency must be a positive integer, not 0')
    expect(() => engine({ slowLane: { afterMs: 0.5 } })).toThrow('slowLane.afterMs must be a positive integer, not 0.5')
    expect(() => engine({ slowLane: { slots: -1 } })).toThrow('slowLane.slots must be a positive integer, not -1')
  })

  it('moves attempts that hang to the slow lane, freeing every send slot for the healthy webhook', async () => {
    const dead = await Promise.all([hanging(), hanging(), hanging()])
    const alive = await healthy()
    const hooks = engine({ concurrency: 2, slowLane: { afterMs: 20, slots: 4 }, timeoutMs: 60_000, leaseMs: 120_000 })
    for (const receiver of dead) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    // Three hanging attempts (one per ordered webhook) on two send slots: the third gets a slot only
    // once the first two have moved on to the slow lane.
    await until(() => dead.every((r) => r.inFlight === 1), 15_000, 'an attempt at each dead endpoint')
    for (let i = 0; i < 10; i++) await hooks.emit(taskEvent(i))
    await until(() => alive.requests.length === 10, 15_000, 'the healthy webhook’s deliveries')
    expect(dead.map((r) => r.inFlight)).toEqual([1, 1, 1])
  })

  it('moves hanging attempts early while every send slot is taken and work waits for one', async () => {
    const dead = await Promise.all([hanging(), hanging()])
    const alive = await healthy()
    // A minute before an attempt counts as slow: only the early move (every slot taken) frees a slot.
    const hooks = engine({ concurrency: 2, slowLane: { afterMs: 60_000, fullAfterMs: 20, slots: 4 }, timeoutMs: 60_000, leaseMs: 120_000 })
    for (const receiver of dead) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead.every((r) => r.inFlight === 1), 15_000, 'an attempt at each dead endpoint')
    for (let i = 0; i < 5; i++) await hooks.emit(taskEvent(i))
    await until(() => alive.requests.length === 5, 15_000, 'the healthy webhook’s deliveries')
    expect(dead.map((r) => r.inFlight)).toEqual([1, 1])
    expect(() => engine({ slowLane: { fullAfterMs: 0 } })).toThrow('slowLane.fullAfterMs must be a positive integer, not 0')
  })

  it('sends the first delivery of a company with nothing in flight at once, in a guest slot, while hanging attempts hold every slot', async () => {
    const dead = await Promise.all([hanging(), hanging()])
    const alive = await healthy()
    const hooks = engine({ concurrency: 2, slowLane: false, timeoutMs: 60_000, leaseMs: 120_000 })
    for (const receiver of dead) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead.every((r) => r.inFlight === 1), 15_000, 'an attempt at each dead endpoint')
    // Each one goes while both slots still hang: the company has nothing in flight when it emits (its
    // last delivery is final, and the run that made it, all microtasks after the settle, has ended).
    for (let i = 1; i <= 3; i++) {
      const { deliveries } = await hooks.emit(taskEvent(i))
      await until(async () => (await hooks.store.getDelivery(COMPANY, deliveries[0]!.id))?.state === 'succeeded', 15_000, `the healthy webhook’s delivery ${i}`)
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(alive.requests).toHaveLength(3)
    expect(dead.map((r) => r.inFlight)).toEqual([1, 1])
    expect(alive.maxInFlight).toBe(1)
  })

  it('gives out no more guest places than there are guest slots to emits made at once', async () => {
    const dead = await Promise.all([hanging(), hanging(), hanging()])
    // Two send slots, one guest slot: four quiet companies emit at once to an endpoint that hangs, on a
    // store whose enqueue waits for I/O as a database's does (so the four are under way together).
    const inner = memoryStore()
    const store = { ...inner, enqueue: async (input: Parameters<typeof inner.enqueue>[0]) => (await new Promise((resolve) => setTimeout(resolve, 5)), inner.enqueue(input)) }
    const hooks = engine({ store, concurrency: 2, slowLane: false, timeoutMs: 60_000, leaseMs: 120_000 })
    for (const receiver of dead.slice(0, 2)) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    const quiet = Array.from({ length: 4 }, () => objectId())
    for (const company of quiet) await hooks.registry.create(company, taskWebhook(`${dead[2]!.url}/${company}`))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead[0]!.inFlight === 1 && dead[1]!.inFlight === 1, 15_000, 'both send slots hanging')
    await Promise.all(quiet.map((company, i) => hooks.emit(taskEvent(i, company))))
    await until(() => dead[2]!.inFlight === 1, 15_000, 'the guest')
    // One was leased as the guest; the other three were left in the store for claims to hand out by
    // company turns (leased as guests too, they would wait in the send lanes, holding their leases).
    const left = await inner.claim({ now: Date.now(), limit: 10, leaseMs: 60_000, owner: 'probe', ordered: true })
    expect(left).toHaveLength(3)
    for (const c of left) await inner.release(c.lease, Date.now())
    expect(dead[2]!.maxInFlight).toBe(1)
  })

  it('sends a webhook’s next delivery as soon as its guest delivery ends (ordered, no poll)', async () => {
    const dead = await Promise.all([hanging(), hanging()])
    const held = await hanging()
    const hooks = engine({ concurrency: 2, slowLane: false, timeoutMs: 60_000, leaseMs: 120_000, pollIntervalMs: 0 })
    for (const receiver of dead) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(COMPANY, taskWebhook(held.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead.every((r) => r.inFlight === 1), 15_000, 'both send slots hanging')
    await hooks.emit(taskEvent(1))
    await until(() => held.inFlight === 1, 15_000, 'the guest delivery')
    for (const receiver of dead) receiver.release()
    await until(async () => (await hooks.store.openCount()) === 1, 15_000, 'the send slots free again')
    // Behind the guest in its webhook's order: not leased at its emit, found by no claim while the
    // guest is out, and no settle of the guest's hands it on.
    await hooks.emit(taskEvent(2))
    held.release()
    await until(() => held.requests.length === 2, 15_000, 'the webhook’s next delivery')
  })

  it('hands a guest’s retry back to the store, so its guest place goes to the next quiet company', async () => {
    const dead = await Promise.all([hanging(), hanging()])
    const failing = await startReceiver(async () => ({ status: 500 }))
    receivers.push(failing)
    const alive = await healthy()
    // One guest slot; retries 30 s apart (Cotalker's schedule), which an engine would wait out in process.
    const hooks = engine({ concurrency: 2, slowLane: false, timeoutMs: 60_000, leaseMs: 120_000 })
    const [first, second] = [objectId(), objectId()]
    for (const receiver of dead) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(first, taskWebhook(failing.url))
    await hooks.registry.create(second, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead.every((r) => r.inFlight === 1), 15_000, 'both send slots hanging')
    const { deliveries } = await hooks.emit(taskEvent(1, first))
    await until(async () => (await hooks.store.getDelivery(first, deliveries[0]!.id))?.attempts.length === 1, 15_000, 'the failed guest attempt')
    await new Promise((resolve) => setImmediate(resolve))
    await hooks.emit(taskEvent(2, second))
    await until(() => alive.requests.length === 1, 15_000, 'the second company’s guest delivery')
    expect((await hooks.store.getDelivery(first, deliveries[0]!.id))?.state).toBe('pending')
  })

  it('claims into a main slot that frees while a guest is out: a guest sends beyond the main slots', async () => {
    const gate = heldAnswers()
    releases.push(() => gate.open())
    // The first answer is a failure: its run then waits for the retry (30 s) without a send slot, and
    // the slot goes to whatever a claim finds (a settle that ends a run may hand on the next delivery itself).
    const busy = await startReceiver((_, index) => gate.hold({ status: index === 0 ? 500 : 200 }))
    receivers.push(busy)
    const guestEnd = await hanging()
    const hooks = engine({ concurrency: 4, slowLane: false, timeoutMs: 60_000, leaseMs: 120_000 })
    // Five ordered webhooks, one delivery each: four take the main slots, the fifth waits in the store.
    for (let i = 0; i < 5; i++) await hooks.registry.create(OTHER_COMPANY, taskWebhook(`${busy.url}/${i}`))
    await hooks.registry.create(COMPANY, taskWebhook(guestEnd.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => gate.held === 4, 15_000, 'the four main slots busy')
    await hooks.emit(taskEvent(0))
    await until(() => guestEnd.inFlight === 1, 15_000, 'the guest')
    // The failed attempt's slot is a main one and the guest is beyond them: the claim is made while the
    // guest is still out (counted against the main slots, it would wait for the guest).
    gate.release(1)
    await until(() => busy.requests.length === 5, 15_000, 'the fifth webhook’s delivery in the freed slot')
    expect(gate.held).toBe(4)
    expect(busy.maxInFlight).toBe(4)
    expect(busy.requests.map((r) => r.path).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `/${i}`))
    expect(guestEnd.inFlight).toBe(1)
  })

  it('claims nothing more while a guest waits for its host’s slots: the wait frees no main slot', async () => {
    const busyHost = await hanging()
    const other = await hanging()
    // Two send slots, both held by attempts to one host (its limit, two); a third webhook's delivery
    // waits in the store for a slot.
    const store = memoryStore()
    const hooks = engine({ store, concurrency: 2, slowLane: false, rateLimit: { hostConcurrency: 2 }, timeoutMs: 60_000, leaseMs: 120_000 })
    for (let i = 0; i < 2; i++) await hooks.registry.create(OTHER_COMPANY, taskWebhook(`${busyHost.url}/${i}`))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => busyHost.inFlight === 2, 15_000, 'both send slots busy at one host')
    const third = await hooks.registry.create(OTHER_COMPANY, taskWebhook(`${other.url}/k`))
    await hooks.emit(taskEvent(1, OTHER_COMPANY))
    // A quiet company's guest to the same host: it waits for the host's slots.
    await hooks.registry.create(COMPANY, taskWebhook(`${busyHost.url}/guest`))
    await hooks.emit(taskEvent(2))
    // Counted as a run waiting without a send slot, the guest would let the dispatcher claim the third
    // webhook's delivery for a main slot that is not free: leased, and waiting in line for the slot.
    await new Promise((resolve) => setTimeout(resolve, 300))
    const left = await store.claim({ now: Date.now(), limit: 10, leaseMs: 60_000, owner: 'probe', ordered: true })
    expect(left.map((c) => c.delivery.webhookId)).toEqual([third.webhook._id])
    for (const c of left) await store.release(c.lease, Date.now())
    expect(busyHost.inFlight).toBe(2)
    busyHost.release()
    // Then the third webhook's delivery, the guest's, and the second event's two to the busy host.
    await until(() => other.inFlight === 1 && busyHost.requests.length === 5, 15_000, 'the guest and the third webhook once the host answers')
    expect(busyHost.requests.filter((r) => r.path === '/guest')).toHaveLength(1)
  })

  it('gives a guest place back when its attempt moves to the slow lane, so a hanging guest does not hold up the next quiet company', async () => {
    const dead = await hanging()
    const quietDead = await hanging()
    const alive = await healthy()
    // Two send slots, one guest slot; a slow lane of four (two per host), moved to after 20 ms when crowded.
    const hooks = engine({ concurrency: 2, slowLane: { afterMs: 60_000, fullAfterMs: 20, slots: 4 }, timeoutMs: 60_000, leaseMs: 120_000 })
    const first = objectId()
    // Four ordered webhooks on one dead host: two move to the slow lane (the host's half), two keep the
    // main slots for good.
    for (let i = 0; i < 4; i++) await hooks.registry.create(OTHER_COMPANY, taskWebhook(`${dead.url}/${i}`))
    await hooks.registry.create(first, taskWebhook(quietDead.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead.inFlight === 4, 15_000, 'both main slots and the host’s half of the slow lane hanging')
    // The first quiet company's guest hangs too, and moves on to the slow lane (its host has room there).
    await hooks.emit(taskEvent(1, first))
    await until(() => quietDead.inFlight === 1, 15_000, 'the first guest')
    // Other quiet companies go as guests while the first still hangs: each emits until one arrives (the
    // move comes within the sweep's tick; an emit before it finds no guest place, its delivery waits in
    // the store for a main slot, and none frees here).
    const quiet: string[] = []
    await until(async () => {
      if (alive.requests.length) return true
      const company = objectId()
      quiet.push(company)
      await hooks.registry.create(company, taskWebhook(alive.url))
      await hooks.emit(taskEvent(quiet.length, company))
      return false
    }, 15_000, 'a quiet company’s delivery beside the hanging guest')
    // The first guest still hangs, beside the flood's four: the place it gave back is what let one in.
    expect(quietDead.inFlight).toBe(1)
    expect(dead.inFlight).toBe(4)
  })

  it('without the slow lane, hanging attempts hold every slot and the guest slots (the control)', async () => {
    const dead = await Promise.all([hanging(), hanging(), hanging()])
    const alive = await healthy()
    // Two send slots, so one guest slot (an eighth of them, at least one).
    const hooks = engine({ concurrency: 2, slowLane: false, timeoutMs: 60_000, leaseMs: 120_000 })
    const third = objectId()
    for (const receiver of dead.slice(0, 2)) await hooks.registry.create(OTHER_COMPANY, taskWebhook(receiver.url))
    await hooks.registry.create(third, taskWebhook(dead[2]!.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => dead[0]!.inFlight === 1 && dead[1]!.inFlight === 1, 15_000, 'both send slots hanging')
    // A third company with nothing in flight takes the guest slot, and hangs in it too.
    await hooks.emit(taskEvent(0, third))
    await until(() => dead[2]!.inFlight === 1, 15_000, 'the guest slot hanging')
    await hooks.emit(taskEvent(1))
    // Nothing can reach the healthy receiver while every slot hangs; once they answer, it does.
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(alive.requests).toHaveLength(0)
    for (const receiver of dead) receiver.release()
    await until(() => alive.requests.length === 1, 15_000, 'the healthy delivery after the release')
  })

  it('lets one host hold at most half of the slow lane', async () => {
    const dead = await hanging()
    // Six ordered webhooks on one dead host, two send slots, a slow lane of four: two attempts move to
    // the slow lane (half of it) and two keep their send slots; the other two wait for a slot.
    const hooks = engine({ concurrency: 2, slowLane: { afterMs: 20, slots: 4 }, timeoutMs: 60_000, leaseMs: 120_000 })
    for (let i = 0; i < 6; i++) await hooks.registry.create(COMPANY, taskWebhook(`${dead.url}/w${i}`))
    await hooks.emit(taskEvent(0))
    await until(() => dead.inFlight === 4, 15_000, 'four attempts at the dead host')
    // Were the host not held to half, the slow lane would take all four and six would hang.
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(dead.inFlight).toBe(4)
    dead.release()
    await hooks.drain()
    expect(dead.requests).toHaveLength(6)
    expect(dead.maxInFlight).toBe(4)
  })
})

describe('claims across companies (memory store)', () => {
  /** Company A: `webhooks` webhooks with `each` deliveries due from t=0; company B: one delivery due at t=100. */
  async function flood(webhooks: number, each: number) {
    const store = memoryStore()
    const a: string[] = []
    for (let i = 0; i < webhooks; i++) {
      const record = webhookRecord(OTHER_COMPANY)
      await store.insertWebhook(record)
      a.push(record.webhook._id)
    }
    for (let n = 0; n < each; n++) {
      await store.enqueue({ eventId: objectId(), event: fixtureEvent(OTHER_COMPANY), deliveries: a.map((webhookId) => ({ id: objectId(), webhookId })), now: n })
    }
    const b = webhookRecord(COMPANY)
    await store.insertWebhook(b)
    const { deliveries } = await store.enqueue({ eventId: objectId(), event: fixtureEvent(COMPANY), deliveries: [{ id: objectId(), webhookId: b.webhook._id }], now: 100 })
    return { store, other: deliveries[0]!.id }
  }

  it.each([true, false])('hands out the other company’s delivery in the first claim after it is due, behind one of the flood’s (ordered: %s)', async (ordered) => {
    const { store, other } = await flood(40, 50)
    // Claims of 4, each settled before the next, as an engine with 4 free slots would make them.
    for (let claims = 1; claims <= 3; claims++) {
      const claimed = await store.claim({ now: 1_000 + claims, limit: 4, leaseMs: 60_000, owner: 'e', ordered })
      const ids = claimed.map((c) => c.delivery.id)
      if (ids.includes(other)) {
        // A's earliest went first (it was due first and A had not been served); then B's turn.
        expect(claims).toBe(1)
        expect(ids.indexOf(other)).toBe(1)
        return
      }
      for (const c of claimed) await store.settle(c.lease, { now: 1_000 + claims, state: 'succeeded', response: 'ok' })
    }
    throw new Error('the other company’s delivery was not claimed in three claims')
  })

  it('keeps one company’s own deliveries in due order', async () => {
    const store = memoryStore()
    const hooks = [webhookRecord(COMPANY), webhookRecord(COMPANY), webhookRecord(COMPANY)]
    for (const record of hooks) await store.insertWebhook(record)
    const due = [30, 10, 20]
    const ids: string[] = []
    for (const [i, record] of hooks.entries()) {
      const { deliveries } = await store.enqueue({ eventId: objectId(), event: fixtureEvent(COMPANY), deliveries: [{ id: objectId(), webhookId: record.webhook._id }], now: due[i]! })
      ids.push(deliveries[0]!.id)
    }
    const first = await store.claim({ now: 100, limit: 1, leaseMs: 60_000, owner: 'e', ordered: true })
    const rest = await store.claim({ now: 100, limit: 2, leaseMs: 60_000, owner: 'e', ordered: true })
    expect([...first, ...rest].map((c) => c.delivery.id)).toEqual([ids[1], ids[2], ids[0]])
  })
})
