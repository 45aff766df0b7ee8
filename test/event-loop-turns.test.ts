import { afterEach, describe, expect, it } from 'vitest'
import { fetchTransport, memoryStore, type Settlement, type Transport } from 'cotwebhook'
import { COMPANY, OTHER_COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from './helpers/receiver.js'

/**
 * A response's follow-up work (its settle, the webhook's next send) and the requests of other
 * companies in the same turn of the event loop. Requests are written in the turn's check phase, after
 * every response that arrived in it has been handled: with another company's work under way, the
 * follow-up waits for that phase too, behind the requests made before it. Told apart by the order of
 * two callbacks in one turn (a `setImmediate` queued as the response comes back, and the settle), never
 * by elapsed time.
 */

const receivers: Receiver[] = []
const gates: Array<ReturnType<typeof heldAnswers>> = []
afterEach(async () => {
  for (const gate of gates.splice(0)) gate.open()
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
})

async function receiver(held = false) {
  const gate = heldAnswers()
  gates.push(gate)
  const started = await startReceiver(() => (held ? gate.hold({ status: 200 }) : { status: 200 }))
  receivers.push(started)
  return Object.assign(started, { gate })
}

/**
 * An engine whose transport (the real one, over loopback) queues a `setImmediate` marker as each
 * response to `watched` comes back, and whose store notes the settle that makes a delivery succeed:
 * `order` says which ran first.
 */
function watchedEngine(watched: string, options: Parameters<typeof engine>[0] = {}) {
  const order: string[] = []
  const real = fetchTransport()
  const transport: Transport = async (request) => {
    const response = await real(request)
    if (request.url.startsWith(watched)) setImmediate(() => order.push('check phase'))
    return response
  }
  const store = memoryStore()
  const settle = store.settle.bind(store)
  store.settle = (lease, settlement: Settlement) => {
    if (settlement.state === 'succeeded') order.push('settle')
    // A failed attempt whose run keeps the delivery to wait for the retry in process.
    else if (settlement.attempt && settlement.holdUntil !== undefined) order.push('retry waits')
    return settle(lease, settlement)
  }
  return { hooks: engine({ store, transport, ...options }), order }
}

describe('follow-up work and the event loop', () => {
  it('settles in the same turn when one company has work here: nothing to wait for', async () => {
    const alive = await receiver()
    const { hooks, order } = watchedEngine(alive.url)
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0))
    await until(() => order.length === 2, 15_000, 'the settle and the marker')
    expect(order).toEqual(['settle', 'check phase'])
  })

  it('waits for the check phase when another company has a delivery under way', async () => {
    const held = await receiver(true)
    const alive = await receiver()
    const { hooks, order } = watchedEngine(alive.url)
    await hooks.registry.create(OTHER_COMPANY, taskWebhook(held.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => held.gate.held === 1, 15_000, 'the other company’s request to be held')
    await hooks.emit(taskEvent(0))
    await until(() => order.length === 2, 15_000, 'the settle and the marker')
    expect(order).toEqual(['check phase', 'settle'])
    held.gate.open()
    await hooks.drain()
    expect(held.requests).toHaveLength(1)
  })

  it('does not wait beside another company whose delivery only waits for its retry', async () => {
    // The other company's endpoint fails: with the default schedule (30 s) its run keeps the delivery
    // and sleeps in process. It has no request out, so nothing is waiting for the check phase.
    const failing = await startReceiver(() => ({ status: 500 }))
    receivers.push(failing)
    const alive = await receiver()
    const { hooks, order } = watchedEngine(alive.url)
    await hooks.registry.create(OTHER_COMPANY, taskWebhook(failing.url))
    await hooks.registry.create(COMPANY, taskWebhook(alive.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => order.includes('retry waits'), 15_000, 'the other company’s retry to be scheduled')
    await hooks.emit(taskEvent(0))
    await until(() => order.length === 3, 15_000, 'the settle and the marker')
    expect(order).toEqual(['retry waits', 'settle', 'check phase'])
    expect(failing.requests).toHaveLength(1)
  })

  it('counts a guest’s company: the busy company’s responses wait while the guest is out', async () => {
    const busy = await receiver(true)
    const guest = await receiver(true)
    // One send slot: the busy company takes it, the other company's first delivery goes as a guest
    // (no slow lane, which would free the slot after 50 ms and let it go as an ordinary run).
    const { hooks, order } = watchedEngine(busy.url, { concurrency: 1, slowLane: false })
    await hooks.registry.create(OTHER_COMPANY, taskWebhook(busy.url))
    await hooks.registry.create(COMPANY, taskWebhook(guest.url))
    await hooks.emit(taskEvent(0, OTHER_COMPANY))
    await until(() => busy.gate.held === 1, 15_000, 'the busy company’s request to be held')
    await hooks.emit(taskEvent(0))
    await until(() => guest.gate.held === 1, 15_000, 'the guest’s request to be held')
    busy.gate.open()
    await until(() => order.length === 2, 15_000, 'the settle and the marker')
    expect(order).toEqual(['check phase', 'settle'])
    guest.gate.open()
    await hooks.drain()
    expect(guest.requests).toHaveLength(1)
  })
})
