import { expect } from 'vitest'
import { LeaseLostError } from '../errors.js'
import { objectId } from '../object-id.js'
import type { ClaimOptions, ClaimedDelivery, EnqueueInput, EnqueueResult, Store } from '../store.js'
import { taskEvent } from './fixtures.js'
import type { ConformanceCase } from './cases.js'

/** What the outbox cases use from the suite that registers them. */
export interface SuiteTools {
  /** Registers a case (or skips it, with the reason given to the suite). */
  test: (name: ConformanceCase, body: () => Promise<void>) => void
  /** Claims at `now`: limit 100, lease 1 s, ordered, unless overridden. */
  claim: (now: number, extra?: Partial<ClaimOptions>) => Promise<ClaimedDelivery[]>
  /** Enqueues one task event of company A to the webhooks at `now`. */
  enqueue: (webhookIds: string[], now: number, extra?: Partial<EnqueueInput>) => Promise<EnqueueResult>
  /** Inserts a webhook (company A by default) and returns its id. */
  hook: (company?: string) => Promise<string>
  /** Two companies. */
  A: string
  B: string
  /** The store of the running case. */
  store: () => Store
  /** The same data opened again as a new store object (a restart). */
  reopen: () => Promise<Store>
}

/**
 * The outbox half of the storage contract's suite: enqueue, claims and leases, per-webhook order,
 * settle and release, wake times, logs and pruning.
 */
export function outboxCases({ test, claim, enqueue, hook, A, B, store, reopen }: SuiteTools): void {
  test('answers stats that agree with the deliveries and the endpoint state, per company', async () => {
    expect(await store().stats()).toEqual([])
    const w1 = await hook()
    const w2 = await hook()
    const w3 = await hook(B)
    await enqueue([w1], 1_000)
    await enqueue([w1, w2], 2_000)
    await enqueue([w1], 3_000)
    await enqueue([w3], 4_000, { event: taskEvent(B) })
    // w1's head fails (the endpoint learns of it), then ends; w2's only delivery succeeds.
    const [head] = await claim(1_000)
    await store().settle(head!.lease, {
      now: 1_500, state: 'failed', response: 'no', attempt: { at: new Date(1_500).toISOString(), status: 500, durationMs: 1 },
      endpoint: { outcome: 'failure', exhausted: true, policy: { failureThreshold: 5, cooldownMs: 1_000, maxCooldownMs: 2_000, disableAfterFailures: 0, disableAfterMs: 0 } },
    })
    const two = (await claim(2_000, { ordered: false })).find((c) => c.delivery.webhookId === w2)!
    await store().settle(two.lease, { now: 2_500, state: 'succeeded', response: 'ok' })
    const all = await store().stats()
    const of = (id: string) => all.find((s) => s.webhookId === id)!
    expect(all.map((s) => s.webhookId).sort()).toEqual([w1, w2, w3].sort())
    expect(of(w1)).toMatchObject({ company: A, open: 2, oldestOpenAt: 2_000, consecutiveFailures: 1, lastFailureAt: 1_500 })
    expect(of(w2)).toMatchObject({ company: A, open: 0, oldestOpenAt: null })
    expect(of(w3)).toMatchObject({ company: B, open: 1, oldestOpenAt: 4_000 })
    // What each says of its endpoint is what endpoint() says, and the open counts add up.
    for (const s of all) {
      const { open: _open, ...endpoint } = await store().endpoint(s.webhookId)
      const { webhookId: _id, company: _company, oldestOpenAt: _oldest, open: _counted, ...stated } = s
      expect(stated).toEqual(endpoint)
    }
    expect(all.reduce((n, s) => n + s.open, 0)).toBe(await store().openCount())
    expect((await store().stats(B)).map((s) => s.webhookId)).toEqual([w3])
    expect((await store().stats(A)).map((s) => s.webhookId).sort()).toEqual([w1, w2].sort())
  })

  test('keeps an emit’s trace context with each of its deliveries, through claims, reads and a reopen', async () => {
    const w1 = await hook()
    const w2 = await hook()
    const trace = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 vendor=a:1,other=b'
    const traced = await enqueue([w1, w2], 1_000, { trace })
    const plain = await enqueue([w1], 1_000)
    const claimed = await claim(1_000, { ordered: false })
    expect(claimed).toHaveLength(3)
    for (const c of claimed) {
      if (c.delivery.eventId === traced.eventId) expect(c.delivery.trace).toBe(trace)
      else expect(c.delivery.trace).toBeUndefined()
    }
    const again = await reopen()
    expect((await again.getDelivery(A, traced.deliveries[1]!.id))?.trace).toBe(trace)
    expect((await again.getDelivery(A, plain.deliveries[0]!.id))?.trace).toBeUndefined()
    const page = await again.listDeliveries(A, w1, { limit: 10, offset: 0 })
    expect(page.items.map((d) => d.trace)).toEqual([undefined, trace])
  })

  test('enqueues atomically and hands out due deliveries only', async () => {
    const w1 = await hook()
    const w2 = await hook()
    const result = await enqueue([w1, w2], 1_000)
    expect(result.duplicate).toBe(false)
    expect(result.deliveries.map((d) => d.webhookId)).toEqual([w1, w2])
    expect(await store().openCount()).toBe(2)
    expect(await claim(999)).toEqual([])
    const claimed = await claim(1_000)
    expect(claimed.map((c) => c.delivery.id).sort()).toEqual(result.deliveries.map((d) => d.id).sort())
    const first = claimed.find((c) => c.delivery.webhookId === w1)!.delivery
    expect(first).toMatchObject({ company: A, eventId: result.eventId, state: 'pending', attempts: [], status: null, nextAttemptAt: 1_000 })
    expect(first.event.type).toBe('COTTask')
    expect(await claim(1_001)).toEqual([]) // leased
  })

  test('makes a repeated idempotency key a no-op, per company', async () => {
    const w = await hook()
    const first = await enqueue([w], 0, { idempotencyKey: 'k1' })
    const again = await enqueue([w], 0, { idempotencyKey: 'k1', eventId: objectId() })
    expect(again).toEqual({ ...first, duplicate: true })
    expect(await store().openCount()).toBe(1)
    const other = await enqueue([w], 0, { idempotencyKey: 'k1', event: taskEvent(B) })
    expect(other.duplicate).toBe(false)
    expect(await store().openCount()).toBe(2)
  })

  test('never hands one delivery to two concurrent claimers', async () => {
    const webhooks = await Promise.all(Array.from({ length: 10 }, () => hook()))
    for (let i = 0; i < 3; i++) await enqueue(webhooks, 0)
    // Rounds of six claimers at once until everything is out (a claimer may find the others holding
    // what it wanted: it gets less, never the same delivery).
    const ids: string[] = []
    for (let round = 0; round < 10 && ids.length < 30; round++) {
      const batches = await Promise.all(Array.from({ length: 6 }, (_, i) => claim(0, { limit: 4, ordered: false, owner: `c${round}.${i}` })))
      ids.push(...batches.flat().map((c) => c.delivery.id))
    }
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids).toHaveLength(30)
    const ordered = await Promise.all(Array.from({ length: 4 }, () => claim(0)))
    expect(ordered.flat()).toHaveLength(0) // every webhook has a delivery leased already
  })

  test('hands out one delivery per webhook at a time, oldest first, when ordered', async () => {
    const w1 = await hook()
    const w2 = await hook()
    const e1 = await enqueue([w1, w2], 0)
    const e2 = await enqueue([w1], 1)
    const e3 = await enqueue([w1], 2)
    let claimed = await claim(10)
    expect(claimed.map((c) => c.delivery.id).sort()).toEqual(e1.deliveries.map((d) => d.id).sort())
    expect(await claim(10)).toEqual([])
    const head = claimed.find((c) => c.delivery.webhookId === w1)!
    // A scheduled retry of the head blocks the rest of its webhook.
    await store().settle(head.lease, { now: 10, state: 'pending', response: 'boom', nextAttemptAt: 50, attempt: { at: new Date(10).toISOString(), status: 500, durationMs: 1 } })
    expect(await claim(20)).toEqual([])
    claimed = await claim(50)
    expect(claimed.map((c) => c.delivery.id)).toEqual([head.delivery.id])
    await store().settle(claimed[0]!.lease, { now: 51, state: 'succeeded', response: 'ok' })
    claimed = await claim(52)
    expect(claimed.map((c) => c.delivery.id)).toEqual([e2.deliveries[0]!.id])
    await store().settle(claimed[0]!.lease, { now: 53, state: 'failed', response: 'gave up' })
    expect((await claim(54)).map((c) => c.delivery.id)).toEqual([e3.deliveries[0]!.id])
  })

  test('hands out every due delivery when not ordered', async () => {
    const w1 = await hook()
    await enqueue([w1], 0)
    await enqueue([w1], 1)
    await enqueue([w1], 100)
    expect(await claim(10, { ordered: false })).toHaveLength(2)
    expect(await claim(10, { ordered: false })).toHaveLength(0)
    expect(await claim(100, { ordered: false })).toHaveLength(1)
  })

  test('lets a lease expire: the delivery is claimable again and the old holder can no longer settle', async () => {
    const w = await hook()
    await enqueue([w], 0)
    const [old] = await claim(0, { leaseMs: 1_000, owner: 'old' })
    expect(await claim(1_000, { owner: 'new' })).toEqual([])
    // Expired but not yet claimed by anyone: still lost to the old holder.
    await expect(store().settle(old!.lease, { now: 1_001, state: 'succeeded', response: 'late' })).rejects.toBeInstanceOf(LeaseLostError)
    const [next] = await claim(1_001, { owner: 'new' })
    expect(next?.delivery.id).toBe(old!.delivery.id)
    expect(next?.lease.token).not.toBe(old!.lease.token)
    await expect(store().settle(old!.lease, { now: 1_002, state: 'succeeded', response: 'late' })).rejects.toBeInstanceOf(LeaseLostError)
    await expect(store().release(old!.lease, 1_002)).rejects.toBeInstanceOf(LeaseLostError)
    await store().settle(next!.lease, { now: 1_002, state: 'succeeded', response: 'ok' })
    expect((await store().getDelivery(A, old!.delivery.id))?.state).toBe('succeeded')
    await expect(store().settle(next!.lease, { now: 1_003, state: 'failed', response: 'twice' })).rejects.toBeInstanceOf(LeaseLostError)
  })

  test('records attempts, schedules retries and finishes deliveries', async () => {
    const w = await hook()
    const { deliveries } = await enqueue([w], 0)
    const id = deliveries[0]!.id
    let [c] = await claim(0)
    const failed = { at: new Date(5).toISOString(), status: 503, durationMs: 4 }
    await store().settle(c!.lease, { now: 5, state: 'pending', response: 'busy', nextAttemptAt: 30_005, attempt: failed })
    expect(await store().getDelivery(A, id)).toMatchObject({ state: 'pending', status: 503, response: 'busy', attempts: [failed], nextAttemptAt: 30_005, updatedAt: 5 })
    expect(await claim(30_004)).toEqual([])
    ;[c] = await claim(30_005)
    expect(c?.delivery.attempts).toEqual([failed])
    const ok = { at: new Date(30_006).toISOString(), status: 200, durationMs: 2 }
    await store().settle(c!.lease, { now: 30_008, state: 'succeeded', response: 'ok', attempt: ok })
    expect(await store().getDelivery(A, id)).toMatchObject({ state: 'succeeded', status: 200, attempts: [failed, ok], nextAttemptAt: null })
    expect(await store().openCount()).toBe(0)
    expect(await claim(99_999)).toEqual([])
    expect(await store().getDelivery(B, id)).toBeUndefined()
  })

  test('keeps a held lease through the retry wait', async () => {
    const w = await hook()
    await enqueue([w], 0)
    const [c] = await claim(0, { leaseMs: 100 })
    await store().settle(c!.lease, { now: 10, state: 'pending', response: 'x', nextAttemptAt: 500, holdUntil: 600 })
    expect(await claim(550, { owner: 'other' })).toEqual([])
    await store().settle(c!.lease, { now: 590, state: 'succeeded', response: 'ok' })
    expect(await store().openCount()).toBe(0)
  })

  test('releases a lease without an attempt', async () => {
    const w = await hook()
    await enqueue([w], 0)
    const [c] = await claim(0)
    await store().release(c!.lease, 1)
    await expect(store().settle(c!.lease, { now: 2, state: 'succeeded', response: '' })).rejects.toBeInstanceOf(LeaseLostError)
    const [again] = await claim(2)
    expect(again?.delivery.id).toBe(c!.delivery.id)
    expect(again?.delivery.attempts).toEqual([])
  })

  test('tells when the next delivery becomes claimable', async () => {
    expect(await store().nextWakeAt(0, true)).toBeUndefined()
    const w = await hook()
    await enqueue([w], 100)
    expect(await store().nextWakeAt(0, true)).toBe(100)
    const [c] = await claim(100, { leaseMs: 1_000 })
    const leased = await store().nextWakeAt(200, true)
    expect(leased).toBeGreaterThanOrEqual(1_100)
    expect(leased).toBeLessThanOrEqual(1_101)
    await store().settle(c!.lease, { now: 200, state: 'pending', response: '', nextAttemptAt: 5_000 })
    expect(await store().nextWakeAt(300, true)).toBe(5_000)
    const [again] = await claim(5_000)
    await store().settle(again!.lease, { now: 5_001, state: 'succeeded', response: '' })
    expect(await store().nextWakeAt(5_002, true)).toBeUndefined()
  })

  test('lists a webhook’s deliveries newest first with pages', async () => {
    const w = await hook()
    const other = await hook()
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await enqueue([w, other], i)).deliveries[0]!.id)
    const first = await store().listDeliveries(A, w, { limit: 2, offset: 0 })
    expect(first.items.map((d) => d.id)).toEqual([ids[4], ids[3]])
    expect(first.count).toBe(5)
    const last = await store().listDeliveries(A, w, { limit: 2, offset: 4 })
    expect(last.items.map((d) => d.id)).toEqual([ids[0]])
    expect((await store().listDeliveries(B, w, { limit: 10, offset: 0 })).items).toEqual([])
  })

  test('hands out the earliest due first, then in enqueue order, when the limit cuts', async () => {
    const [w1, w2, w3, w4, w5] = await Promise.all([hook(), hook(), hook(), hook(), hook()])
    const due5 = await enqueue([w1!], 5)
    const due1 = await enqueue([w2!], 1)
    const due3 = await enqueue([w3!], 3)
    const first = await enqueue([w4!, w5!], 0)
    const ids = (claimed: { delivery: { id: string } }[]) => claimed.map((c) => c.delivery.id)
    expect(ids(await claim(10, { limit: 1 }))).toEqual([first.deliveries[0]!.id])
    expect(ids(await claim(10, { limit: 2 }))).toEqual([first.deliveries[1]!.id, due1.deliveries[0]!.id])
    expect(ids(await claim(10, { limit: 1, ordered: false }))).toEqual([due3.deliveries[0]!.id])
    expect(ids(await claim(10, { limit: 5 }))).toEqual([due5.deliveries[0]!.id])
  })

  test('writes once for concurrent enqueues with one idempotency key', async () => {
    const w = await hook()
    const results = await Promise.all(
      Array.from({ length: 4 }, () => enqueue([w], 0, { idempotencyKey: 'same', eventId: objectId() })),
    )
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1)
    const original = results.find((r) => !r.duplicate)!
    for (const r of results) expect(r.deliveries).toEqual(original.deliveries)
    expect(await store().openCount()).toBe(1)
  })

  test('tells the next wake time of any delivery when not ordered', async () => {
    const w = await hook()
    await enqueue([w], 100)
    await enqueue([w], 50) // enqueued later, due earlier
    expect(await store().nextWakeAt(0, false)).toBe(50)
    // Ordered, only the head counts. A store may answer early (never late); once a claim has looked
    // and found the head not due, it answers the head's time.
    const early = await store().nextWakeAt(0, true)
    expect(early).toBeGreaterThanOrEqual(50)
    expect(early).toBeLessThanOrEqual(100)
    if (early! < 100) {
      expect(await claim(early!)).toEqual([])
      expect(await store().nextWakeAt(early!, true)).toBe(100)
    }
  })

  test('refuses a settle after the held lease ran out', async () => {
    const w = await hook()
    await enqueue([w], 0)
    const [c] = await claim(0)
    await store().settle(c!.lease, { now: 1, state: 'pending', response: '', nextAttemptAt: 10, holdUntil: 20 })
    await expect(store().settle(c!.lease, { now: 21, state: 'succeeded', response: 'late' })).rejects.toBeInstanceOf(LeaseLostError)
    const [again] = await claim(21, { owner: 'other' })
    expect(again?.delivery.id).toBe(c!.delivery.id)
  })

  test('keeps the idempotency key of an event with an open delivery', async () => {
    const w = await hook()
    await enqueue([w], 0, { idempotencyKey: 'open' })
    expect((await store().prune(10_000, 100)).idempotencyKeys).toBe(0)
    expect((await enqueue([w], 20_000, { idempotencyKey: 'open' })).duplicate).toBe(true)
    expect(await store().openCount()).toBe(1)
  })

  test('holds back an older delivery while a younger one of its webhook is out', async () => {
    // As when a host transaction commits an older delivery after a younger one was claimed.
    const w = await hook()
    const older = await enqueue([w], 0)
    const [head] = await claim(0)
    expect(head?.delivery.id).toBe(older.deliveries[0]!.id)
    await store().release(head!.lease, 1)
    const younger = await enqueue([w], 2)
    // Out of order on purpose: the younger one is leased first (an unordered claim stands in for the race).
    const out = await claim(3, { ordered: false, limit: 10 })
    const youngerClaim = out.find((c) => c.delivery.id === younger.deliveries[0]!.id)!
    const olderClaim = out.find((c) => c.delivery.id === older.deliveries[0]!.id)!
    await store().release(olderClaim.lease, 4)
    expect(await claim(5)).toEqual([]) // the older one is the head, but its webhook has one out
    await store().settle(youngerClaim.lease, { now: 6, state: 'succeeded', response: '' })
    expect((await claim(7)).map((c) => c.delivery.id)).toEqual([older.deliveries[0]!.id])
  })

  test('prunes old final deliveries and keys, never open ones', async () => {
    const w = await hook()
    const ids: string[] = []
    for (let i = 0; i < 4; i++) ids.push((await enqueue([w], i, { idempotencyKey: `k${i}` })).deliveries[0]!.id)
    // Finish the first three at t=10, 20, 30 (ordered claims hand them out one by one); the fourth stays open.
    for (const at of [10, 20, 30]) {
      const [c] = await claim(at, { ordered: true })
      await store().settle(c!.lease, { now: at, state: at === 20 ? 'failed' : 'succeeded', response: '' })
    }
    const first = await store().prune(25, 1)
    expect(first.deliveries).toBe(1)
    const second = await store().prune(25, 100)
    expect(second.deliveries).toBe(1)
    // Keys made before 25 go, but for the one whose event's delivery is still open.
    expect(second.idempotencyKeys + first.idempotencyKeys).toBe(3)
    const left = await store().listDeliveries(A, w, { limit: 10, offset: 0 })
    expect(left.items.map((d) => d.id)).toEqual([ids[3], ids[2]])
    expect(await store().openCount()).toBe(1)
    expect((await store().prune(1_000, 100)).deliveries).toBe(1) // the one finished at 30; the open one stays
    expect((await store().listDeliveries(A, w, { limit: 10, offset: 0 })).items.map((d) => d.id)).toEqual([ids[3]])
    // A pruned idempotency key no longer deduplicates.
    expect((await enqueue([w], 2_000, { idempotencyKey: 'k0' })).duplicate).toBe(false)
  })

  test('leases at enqueue only what may go now, within each enqueue’s own limit', async () => {
    // A store may lease none at enqueue; what it leases must be of that enqueue, within its limit, and
    // never what a claim could not hand out now.
    const ordered = { owner: 'me', leaseMs: 1_000, limit: 5, ordered: true }
    const w1 = await hook()
    const w2 = await hook()
    const first = await enqueue([w1, w2], 10, { claim: { ...ordered, limit: 1 } })
    const leased = first.claimed ?? []
    expect(leased.length).toBeLessThanOrEqual(1)
    for (const c of leased) {
      expect(first.deliveries.map((d) => d.id)).toContain(c.delivery.id)
      expect(c.delivery).toMatchObject({ company: A, state: 'pending', attempts: [] })
    }
    // Held: a claim hands out the rest only.
    const rest = await claim(10)
    expect([...leased, ...rest].map((c) => c.delivery.id).sort()).toEqual(first.deliveries.map((d) => d.id).sort())
    // Ordered, a webhook with a delivery out gets none leased at enqueue.
    const second = await enqueue([w1], 11, { claim: ordered })
    expect(second.claimed ?? []).toEqual([])
    // Emits grouped by a store into one write keep their own limits: none leased for an enqueue that asked for none.
    const w3 = await hook()
    const w4 = await hook()
    const [none, one] = await Promise.all([
      enqueue([w3], 12, { claim: { ...ordered, limit: 0 } }),
      enqueue([w4], 12, { claim: { ...ordered, limit: 1 } }),
    ])
    expect(none.claimed ?? []).toEqual([])
    for (const c of one.claimed ?? []) expect(c.delivery.id).toBe(one.deliveries[0]!.id)
    // A lease taken at enqueue settles like a claimed one.
    for (const c of [...leased, ...(one.claimed ?? [])]) {
      await store().settle(c.lease, { now: 13, state: 'succeeded', response: 'ok' })
      expect((await store().getDelivery(A, c.delivery.id))?.state).toBe('succeeded')
    }
  })
}
