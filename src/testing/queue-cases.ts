import { expect } from 'vitest'
import { LeaseLostError } from '../errors.js'
import type { ClaimedDelivery, EndpointPolicy, Settlement, Store } from '../store.js'
import { taskEvent } from './fixtures.js'
import type { SuiteTools } from './outbox-cases.js'

/**
 * The per-webhook queue half of the storage contract's suite: the endpoint state every engine on a
 * store shares (circuit, health, rate) applied at claim time, the queue passed from a settled head to
 * the next delivery, settles racing with a lost lease among them, and state kept across a reopen.
 */
export function queueCases({ test, claim, enqueue, hook, store, reopen, B }: SuiteTools & { reopen: () => Promise<Store> }): void {
  const policy: EndpointPolicy = { failureThreshold: 2, cooldownMs: 1_000, maxCooldownMs: 3_000, disableAfterFailures: 3, disableAfterMs: 0 }
  const failure = (now: number, extra: Partial<Settlement> = {}): Settlement => ({
    now,
    state: 'pending',
    response: 'down',
    nextAttemptAt: now,
    attempt: { at: new Date(now).toISOString(), status: 500, durationMs: 1 },
    endpoint: { outcome: 'failure', policy },
    ...extra,
  })
  const ids = (claimed: ClaimedDelivery[]) => claimed.map((c) => c.delivery.id)

  test('skips a webhook whose circuit is open and lets one probe through when its cool-down ends', async () => {
    const w = await hook()
    const other = await hook()
    await enqueue([w, other], 0)
    await enqueue([w], 0)
    const first = await claim(0)
    const done = first.find((c) => c.delivery.webhookId === other)!
    await store().settle(done.lease, { now: 1, state: 'succeeded', response: 'ok' })
    let head = first.find((c) => c.delivery.webhookId === w)
    expect(await store().settle(head!.lease, failure(10))).toMatchObject({ endpoint: { consecutiveFailures: 0 } })
    ;[head] = (await claim(10)).filter((c) => c.delivery.webhookId === w)
    const opened = await store().settle(head!.lease, failure(20))
    expect(opened).toMatchObject({ endpoint: { circuit: { state: 'open', until: 1_020 }, openUntil: 1_020 } })
    // Open: neither ordered nor unordered claims hand out anything of it; the other webhook is untouched.
    expect(await claim(500)).toEqual([])
    expect(await claim(500, { ordered: false })).toEqual([])
    expect(await store().nextWakeAt(500, true)).toBeGreaterThanOrEqual(1_020)
    expect((await store().endpoint(w)).openUntil).toBe(1_020)
    // Half-open: one probe, to one claimer.
    const probes = await claim(1_020, { ordered: false })
    expect(probes.map((c) => [c.delivery.webhookId, c.probe])).toEqual([[w, true]])
    expect(await claim(1_021, { ordered: false, owner: 'other' })).toEqual([])
    // The probe fails: open again, twice as long.
    expect(await store().settle(probes[0]!.lease, failure(1_030))).toMatchObject({ endpoint: { circuit: { state: 'open', until: 3_030 } } })
    expect(await claim(3_000, { ordered: false })).toEqual([])
    const [probe] = await claim(3_030)
    expect(probe?.probe).toBe(true)
    const closed = await store().settle(probe!.lease, { now: 3_040, state: 'succeeded', response: 'ok', attempt: { at: new Date(3_040).toISOString(), status: 200, durationMs: 1 }, endpoint: { outcome: 'success', policy } })
    expect(closed).toMatchObject({ endpoint: { circuit: { state: 'closed' } } })
    expect((await store().endpoint(w)).openUntil).toBeNull()
    expect((await claim(3_041)).map((c) => c.probe ?? false)).toEqual([false])
  })

  test('lets the next probe through when one ends without an attempt', async () => {
    const w = await hook()
    await enqueue([w], 0)
    for (const now of [1, 2]) {
      const [c] = await claim(now)
      await store().settle(c!.lease, failure(now))
    }
    const [probe] = await claim(1_002, { ordered: false })
    expect(probe?.probe).toBe(true)
    await store().release(probe!.lease, 1_003)
    const [again] = await claim(1_004, { ordered: false, owner: 'other' })
    expect(again?.probe).toBe(true)
    // Handed back without an attempt (a full host, say): the same.
    await store().settle(again!.lease, { now: 1_005, state: 'pending', response: '', nextAttemptAt: 1_005 })
    expect((await claim(1_006, { ordered: false })).map((c) => c.probe)).toEqual([true])
  })

  test('takes the next probe from the other due deliveries when a failed probe retries much later', async () => {
    const w = await hook()
    for (let i = 0; i < 4; i++) await enqueue([w], 0)
    // Two failures open the circuit; their deliveries retry only in an hour.
    const later = (now: number) => failure(now, { nextAttemptAt: 3_600_000 })
    const two = await claim(1, { ordered: false, limit: 2 })
    for (const c of two) await store().settle(c.lease, later(2))
    // A probe's lease longer than its cool-down, as an engine's is (60 s against 10 s).
    const [probe] = await claim(1_002, { ordered: false, leaseMs: 60_000 })
    expect(probe?.probe).toBe(true)
    // The probe fails too and retries in an hour: the next cool-down still gets a probe, from the others.
    expect(await store().settle(probe!.lease, later(1_010))).toMatchObject({ endpoint: { circuit: { state: 'open', until: 3_010 } } })
    expect(await claim(3_000, { ordered: false })).toEqual([])
    const [next] = await claim(3_010, { ordered: false })
    expect(next?.probe).toBe(true)
    expect(ids(two)).not.toContain(next!.delivery.id)
    expect(next!.delivery.id).not.toBe(probe!.delivery.id)
  })

  test('counts deliveries exhausted in a row and says when the rule turns the webhook off', async () => {
    const w = await hook()
    for (let i = 0; i < 4; i++) await enqueue([w], i)
    const exhaust = async (now: number) => {
      const [c] = await claim(now)
      return store().settle(c!.lease, failure(now, { state: 'failed', nextAttemptAt: undefined, endpoint: { outcome: 'failure', exhausted: true, policy: { ...policy, failureThreshold: 0 } } }))
    }
    expect(await exhaust(10)).toMatchObject({ endpoint: { consecutiveFailures: 1, failingSince: 10 } })
    expect((await exhaust(20))?.endpoint).not.toHaveProperty('disable')
    expect(await exhaust(30)).toMatchObject({ endpoint: { disable: 'failures', consecutiveFailures: 3, failingSince: 10 } })
    expect(await store().endpoint(w)).toMatchObject({ consecutiveFailures: 3, failingSince: 10, lastFailureAt: 30, open: 1 })
    await store().resetEndpoint(w)
    expect(await store().endpoint(w)).toMatchObject({ consecutiveFailures: 0, failingSince: null, failedAttempts: 0, openUntil: null })
  })

  test('hands out no more of a webhook than its stored rate allows, and none while its bucket is empty', async () => {
    const w = await hook()
    const other = await hook()
    await store().setRate(w, { perSecond: 10, burst: 2 })
    for (let i = 0; i < 5; i++) await enqueue([w], 0)
    await enqueue([other], 0)
    const first = await claim(0, { ordered: false })
    expect(first.filter((c) => c.delivery.webhookId === w)).toHaveLength(2)
    expect(first.filter((c) => c.delivery.webhookId === other)).toHaveLength(1)
    expect(first.find((c) => c.delivery.webhookId === w)?.rate).toEqual({ perSecond: 10, burst: 2 })
    expect(await claim(50, { ordered: false })).toEqual([])
    expect(await store().nextWakeAt(50, false)).toBe(100)
    expect(await claim(100, { ordered: false })).toHaveLength(1)
    expect((await store().endpoint(w)).rate).toEqual({ perSecond: 10, burst: 2 })
    await store().setRate(w, null)
    expect(await claim(101, { ordered: false })).toHaveLength(2)
  })

  test('passes an ordered webhook’s queue to its next delivery in the settle that ends the head', async () => {
    const w = await hook()
    const a = await enqueue([w], 0)
    const b = await enqueue([w], 1)
    await enqueue([w], 2)
    const [head] = await claim(5)
    expect(head?.delivery.id).toBe(a.deliveries[0]!.id)
    const result = await store().settle(head!.lease, { now: 6, state: 'succeeded', response: 'ok', next: { owner: 'me', leaseMs: 1_000, ordered: true } })
    expect(result?.next?.delivery.id).toBe(b.deliveries[0]!.id)
    expect(result?.next?.delivery.event.type).toBe('COTTask')
    // It is out, leased to the settler: no other claimer gets this webhook meanwhile.
    expect(await claim(7, { owner: 'other' })).toEqual([])
    await store().settle(result!.next!.lease, { now: 8, state: 'failed', response: 'gave up' })
    // A head handed back (not final) passes nothing on, and keeps its place.
    const [third] = await claim(9)
    const back = await store().settle(third!.lease, { now: 11, state: 'pending', response: '', nextAttemptAt: 50, next: { owner: 'me', leaseMs: 1_000, ordered: true } })
    expect(back?.next).toBeUndefined()
    expect(await claim(20)).toEqual([])
    expect(ids(await claim(50))).toEqual([third!.delivery.id])
  })

  test('hands an unordered settler a due delivery of any webhook in the same step', async () => {
    const [w1, w2] = [await hook(), await hook()]
    const first = await enqueue([w1], 0)
    const second = await enqueue([w2], 1)
    const [claimed] = await claim(5, { ordered: false, limit: 1 })
    expect(claimed?.delivery.id).toBe(first.deliveries[0]!.id)
    const result = await store().settle(claimed!.lease, { now: 6, state: 'succeeded', response: 'ok', next: { owner: 'me', leaseMs: 1_000, ordered: false } })
    let last = result?.next
    if (last) {
      expect(last.delivery.id).toBe(second.deliveries[0]!.id)
      expect(await claim(7, { ordered: false, owner: 'other' })).toEqual([]) // it is out
    } else {
      // A store may answer none: the next claim finds it.
      ;[last] = await claim(7, { ordered: false })
      expect(last?.delivery.id).toBe(second.deliveries[0]!.id)
    }
    // Nothing due: nothing handed on.
    expect((await store().settle(last!.lease, { now: 9, state: 'succeeded', response: '', next: { owner: 'me', leaseMs: 1_000, ordered: false } }))?.next).toBeUndefined()
  })

  for (const ordered of [true, false]) {
    test(ordered ? 'gives another company a turn in the first claim, whatever one company’s backlog (ordered)' : 'gives another company a turn in the first claim, whatever one company’s backlog (unordered)', async () => {
      // Company A: 24 webhooks with 3 deliveries each, due from t=0; company B: one delivery, due at t=100.
      const flood = await Promise.all(Array.from({ length: 24 }, () => hook()))
      for (let n = 0; n < 3; n++) await enqueue(flood, n)
      const other = await hook(B)
      const { deliveries: [theirs] } = await enqueue([other], 100, { event: taskEvent(B) })
      // Due order alone would hand out A's 72 first: 18 claims of 4 before B's.
      const claimed = await claim(1_000, { limit: 4, ordered })
      expect(claimed).toHaveLength(4)
      expect(ids(claimed)).toContain(theirs!.id)
    })
  }

  test('hands a settler another company’s due delivery once its own company has had its turn', async () => {
    const mine = await hook()
    const a = await enqueue([mine], 0)
    const a2 = await enqueue([mine], 1)
    const [head] = await claim(2, { limit: 1 })
    expect(head?.delivery.id).toBe(a.deliveries[0]!.id)
    // Company B's delivery falls due while A's queue is out; A's next is due too.
    const other = await hook(B)
    const { deliveries: [theirs] } = await enqueue([other], 3, { event: taskEvent(B) })
    const passed = await store().settle(head!.lease, { now: 4, state: 'succeeded', response: 'ok', next: { owner: 'me', leaseMs: 1_000, ordered: true } })
    // A store may answer none: then the next claim must give B its turn.
    const got = passed?.next ?? (await claim(5, { limit: 1 }))[0]
    expect(got?.delivery.id).toBe(theirs!.id)
    // B has had its turn; A's next comes after it, not held back.
    const back = await store().settle(got!.lease, { now: 6, state: 'succeeded', response: 'ok', next: { owner: 'me', leaseMs: 1_000, ordered: true } })
    const again = back?.next ?? (await claim(7, { limit: 1 }))[0]
    expect(again?.delivery.id).toBe(a2.deliveries[0]!.id)
  })

  test('hands an unordered settler another company’s due delivery before its own company’s next', async () => {
    const mine = await hook()
    await enqueue([mine], 0)
    await enqueue([mine], 1)
    const [first] = await claim(2, { limit: 1, ordered: false })
    const other = await hook(B)
    const { deliveries: [theirs] } = await enqueue([other], 3, { event: taskEvent(B) })
    const passed = await store().settle(first!.lease, { now: 4, state: 'succeeded', response: 'ok', next: { owner: 'me', leaseMs: 1_000, ordered: false } })
    const got = passed?.next ?? (await claim(5, { limit: 1, ordered: false }))[0]
    expect(got?.delivery.id).toBe(theirs!.id)
  })

  test('settles that race each answer on their own, a lost lease among them', async () => {
    const webhooks = await Promise.all(Array.from({ length: 6 }, () => hook()))
    for (let i = 0; i < 2; i++) await enqueue(webhooks, i)
    const claimed = await claim(10, { ordered: false, leaseMs: 1_000 })
    expect(claimed).toHaveLength(12)
    // One lease runs out early and another claimer takes that delivery.
    const lost = claimed[3]!
    await store().settle(lost.lease, { now: 11, state: 'pending', response: '', nextAttemptAt: 11, holdUntil: 20 })
    expect(ids(await claim(30, { ordered: false, owner: 'late' }))).toEqual([lost.delivery.id])
    const outcomes = await Promise.allSettled(claimed.map((c, i) => store().settle(c.lease, { now: 40, state: 'succeeded', response: `ok ${i}` })))
    expect(outcomes.map((o) => o.status)).toEqual(claimed.map((_, i) => (i === 3 ? 'rejected' : 'fulfilled')))
    expect((outcomes[3] as PromiseRejectedResult).reason).toBeInstanceOf(LeaseLostError)
    expect(await store().openCount()).toBe(1)
    expect((await store().getDelivery(claimed[0]!.delivery.company, lost.delivery.id))?.state).toBe('pending')
  })

  test('keeps endpoint state, queues and leases when the store is opened again', async () => {
    const w = await hook()
    await enqueue([w], 0)
    await enqueue([w], 1)
    for (const now of [1, 2]) {
      const [c] = await claim(now)
      await store().settle(c!.lease, failure(now))
    }
    const [probe] = await claim(1_002)
    const again = await reopen()
    expect(await again.endpoint(w)).toMatchObject({ failedAttempts: 2, openUntil: 1_002, open: 2 })
    expect(await again.claim({ now: 1_003, limit: 10, leaseMs: 1_000, owner: 'restarted', ordered: true })).toEqual([]) // the probe is still out
    await again.settle(probe!.lease, { now: 1_004, state: 'succeeded', response: 'ok', endpoint: { outcome: 'success', policy } })
    expect((await again.claim({ now: 1_005, limit: 10, leaseMs: 1_000, owner: 'restarted', ordered: true })).map((c) => c.delivery.webhookId)).toEqual([w])
    expect(await again.openCount()).toBe(1)
  })

  test('never hands two deliveries of one webhook to concurrent ordered claimers', async () => {
    const webhooks = await Promise.all(Array.from({ length: 8 }, () => hook()))
    for (let i = 0; i < 5; i++) await enqueue(webhooks, i)
    const seen = new Set<string>()
    for (let round = 0; round < 40 && seen.size < 40; round++) {
      const batches = await Promise.all(Array.from({ length: 4 }, (_, i) => claim(100 + round, { owner: `c${i}`, limit: 3 })))
      const out = batches.flat()
      const perWebhook = new Set(out.map((c) => c.delivery.webhookId))
      expect(perWebhook.size).toBe(out.length)
      await Promise.all(out.map((c) => store().settle(c.lease, { now: 100 + round, state: 'succeeded', response: '' })))
      for (const c of out) seen.add(c.delivery.id)
    }
    expect(seen.size).toBe(40)
    expect(await store().openCount()).toBe(0)
  })
}
