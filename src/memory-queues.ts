import { DueHeap } from './due-heap.js'
import { emptyEndpoint, endpointGate, refill } from './endpoint-state.js'
import { LeaseLostError } from './errors.js'
import type { ClaimedDelivery, Delivery, EndpointState, Lease } from './store.js'

/**
 * The memory store's queues: one per webhook, holding its open deliveries, and one heap of queues per
 * ordering keyed by when each could next hand something out, so a claim costs the same whether a
 * webhook has ten open deliveries or a million, and a webhook whose circuit is open costs nothing
 * until its cool-down ends. Company turns live here too. What the store keeps besides (logs, finals,
 * idempotency keys) is the store's (memory-store.ts).
 */

// Queues moved back for company turns in one claim, at most (see claimFrom).
const MAX_MOVED_BACK = 1_024

/**
 * Makes the queues; `copyOut` is the store's copy of a delivery handed out.
 *
 * @example
 * ```ts
 * const queues = memoryQueues((delivery) => delivery)
 * queues.add({ delivery, queue: queues.queueOf(delivery.webhookId, delivery.company), token: '', leaseUntil: -Infinity, seq: 1, stamp: 0 })
 * const claimed = queues.claim(Date.now(), 10, 60_000, true, 'engine-a')
 * ```
 */
export function memoryQueues(copyOut: (delivery: Delivery) => Delivery) {
  const deliveries = new Map<string, Held>()
  const queues = new Map<string, Queue>()
  let openTotal = 0
  // Open deliveries per company: with one company open, an ordered queue passes straight on (no turns to keep).
  const openByCompany = new Map<string, number>()
  let tokenSeq = 0
  // When each company last had a delivery claimed: its turn in the next claims (see claimFrom).
  const servedAt = new Map<string, number>()
  // Queues by when they could next hand something out, one heap per ordering, each built on first
  // use. An entry is current while its stamp equals the queue's; a change pushes a new entry.
  let orderedHeap: DueHeap<Queue> | undefined
  let anyHeap: DueHeap<Queue> | undefined

  const holdOf = (lease: Lease, now: number): Held => {
    const held = deliveries.get(lease.deliveryId)
    if (!held || held.token !== lease.token || held.leaseUntil < now || held.delivery.state !== 'pending') {
      throw new LeaseLostError(lease.deliveryId)
    }
    return held
  }

  const queueOf = (webhookId: string, company: string): Queue => {
    let queue = queues.get(webhookId)
    if (!queue) {
      queue = { webhookId, company, pending: new Set(), ready: new DueHeap(), out: new Set(), stamp: 0, endpoint: emptyEndpoint(), probeToken: '', bucket: { tokens: 0, at: null } }
      queues.set(webhookId, queue)
    }
    return queue
  }

  // The earliest a queue's deliveries may go for reasons of the endpoint (circuit, probe, rate).
  const gate = (queue: Queue): number => endpointGate(queue.endpoint, queue.bucket)

  // The first valid entry of a queue's ready heap (stale ones dropped).
  const readyTop = (queue: Queue) => {
    for (let top = queue.ready.peek(); top; top = queue.ready.peek()) {
      const held = top.value
      if (held.stamp === top.stamp && held.delivery.state === 'pending') return top
      queue.ready.pop()
    }
    return undefined
  }

  // When a queue could next hand out a delivery, and the sequence of that delivery (the tie-break).
  const availability = (queue: Queue, ordered: boolean): { at: number; seq: number } | undefined => {
    if (!queue.pending.size) return undefined
    let at: number
    let seq: number
    if (ordered) {
      const head = deliveries.get(first(queue.pending)!)!
      at = availableAt(head)
      seq = head.seq
      // One out at a time: no delivery of the webhook may go while another holds a live lease.
      for (const id of queue.out) {
        const other = deliveries.get(id)!
        if (other !== head) at = Math.max(at, other.leaseUntil + 1)
      }
    } else {
      const top = readyTop(queue)
      if (!top) return undefined
      at = top.at
      seq = top.value.seq
    }
    return { at: Math.max(at, gate(queue)), seq }
  }

  // Called after anything that may change when a queue can next hand out.
  const reindex = (queue: Queue) => {
    queue.stamp++
    for (const [heap, ordered] of [[orderedHeap, true], [anyHeap, false]] as const) {
      if (!heap) continue
      const next = availability(queue, ordered)
      if (next) heap.push(next.at, next.seq, queue, queue.stamp)
    }
  }

  const heapFor = (ordered: boolean): DueHeap<Queue> => {
    const existing = ordered ? orderedHeap : anyHeap
    if (existing) return existing
    const heap = new DueHeap<Queue>()
    for (const queue of queues.values()) {
      const next = availability(queue, ordered)
      if (next) heap.push(next.at, next.seq, queue, queue.stamp)
    }
    if (ordered) orderedHeap = heap
    else anyHeap = heap
    return heap
  }

  // A delivery's place in its queue's ready heap follows its due time and lease.
  const touch = (held: Held) => {
    held.stamp++
    if (held.delivery.state === 'pending') held.queue.ready.push(availableAt(held), held.seq, held, held.stamp)
  }

  const lease = (held: Held, owner: string, now: number, leaseMs: number): ClaimedDelivery => {
    held.token = `${owner}:${++tokenSeq}`
    held.leaseUntil = now + leaseMs
    held.queue.out.add(held.delivery.id)
    touch(held)
    return { delivery: copyOut(held.delivery), lease: { deliveryId: held.delivery.id, token: held.token } }
  }

  const unlease = (held: Held) => {
    held.token = ''
    held.leaseUntil = -Infinity
    held.queue.out.delete(held.delivery.id)
  }

  // Takes what one queue may hand out now: the head (ordered) or the earliest due ones, within the
  // circuit's probe and the rate bucket.
  const take = (queue: Queue, now: number, max: number, ordered: boolean, owner: string, leaseMs: number): ClaimedDelivery[] => {
    const state = queue.endpoint
    const halfOpen = state.openUntil !== null
    if (halfOpen && (state.openUntil! > now || (state.probeUntil !== null && state.probeUntil >= now))) return []
    if (halfOpen) max = 1
    if (state.rate) max = Math.min(max, refill(queue.bucket, state.rate, now).whole)
    const taken: ClaimedDelivery[] = []
    while (taken.length < max) {
      const next = availability(queue, ordered)
      if (!next || next.at > now) break
      const held = ordered ? deliveries.get(first(queue.pending)!)! : readyTop(queue)!.value
      const claimed = lease(held, owner, now, leaseMs)
      if (halfOpen) {
        queue.probeToken = held.token
        state.probeUntil = held.leaseUntil
        claimed.probe = true
      }
      claimed.rate = state.rate ? { ...state.rate } : null
      taken.push(claimed)
      if (ordered) break
    }
    if (state.rate) queue.bucket.tokens -= taken.length
    return taken
  }

  // Earliest due first, then oldest enqueued, across queues: one delivery per turn of a queue, so the
  // heap interleaves them by (due time, enqueue order) — with company turns: a queue counts as due no
  // earlier than its company was last served, so a company served by this claim (or the last) waits
  // behind every other company's due work. A flood of one company delays another's delivery by one
  // claim, not by the flood. Moving back is lazy (when a queue reaches the top), keeps the company's
  // own queues in their order, and is bounded per claim so a company with thousands of due queues
  // cannot make a claim costly.
  const claimFrom = (heap: DueHeap<Queue>, now: number, limit: number, leaseMs: number, ordered: boolean, owner: string) => {
    const claimed: ClaimedDelivery[] = []
    let movedBack = 0
    while (claimed.length < limit) {
      const top = heap.peek()
      if (!top || top.at > now) break
      heap.pop()
      const queue = top.value
      if (top.stamp !== queue.stamp) continue // stale entry
      const turn = Math.min(servedAt.get(queue.company) ?? Number.NEGATIVE_INFINITY, now)
      if (turn > top.at && movedBack < MAX_MOVED_BACK) {
        movedBack++
        heap.push(turn, top.seq, queue, top.stamp, top.after === Number.NEGATIVE_INFINITY ? top.at : top.after)
        continue
      }
      const taken = take(queue, now, 1, ordered, owner, leaseMs)
      if (taken.length) {
        claimed.push(...taken)
        servedAt.set(queue.company, now)
      }
      reindex(queue)
    }
    return claimed
  }

  // A delivery leaves its queue (final, or removed).
  const close = (held: Held) => {
    const queue = held.queue
    queue.pending.delete(held.delivery.id)
    unlease(held)
    held.stamp++
    queue.endpoint.open--
    openTotal--
    const left = (openByCompany.get(queue.company) ?? 1) - 1
    if (left > 0) openByCompany.set(queue.company, left)
    else openByCompany.delete(queue.company)
  }

  // The probe ended without an attempt (handed back, given up, released): the next one may go.
  const endProbe = (held: Held, attempted: boolean) => {
    const queue = held.queue
    if (!queue.probeToken || queue.probeToken !== held.token) return false
    queue.probeToken = ''
    if (!attempted) queue.endpoint.probeUntil = null
    return true
  }

  // A new open delivery joins its queue (the caller reindexes the queue once for all it added).
  const add = (held: Held) => {
    const queue = held.queue
    deliveries.set(held.delivery.id, held)
    queue.pending.add(held.delivery.id)
    queue.endpoint.open++
    touch(held)
    openTotal++
    openByCompany.set(queue.company, (openByCompany.get(queue.company) ?? 0) + 1)
  }

  // A delivery just enqueued, leased at once if it may go without a claim: its queue plain (no circuit
  // opened, no rate: those go by claims) and, ordered, it is the queue's head with nothing out.
  const leaseFresh = (held: Held, now: number, ordered: boolean, owner: string, leaseMs: number): ClaimedDelivery | undefined => {
    const queue = held.queue
    if (queue.endpoint.openUntil !== null || queue.endpoint.rate) return undefined
    if (ordered && (queue.out.size > 0 || first(queue.pending) !== held.delivery.id)) return undefined
    const claimed = lease(held, owner, now, leaseMs)
    claimed.rate = null
    return claimed
  }

  return {
    /** Every delivery held (open and final), by id. */
    deliveries,
    /** The queues, by webhook id. */
    queues,
    holdOf,
    queueOf,
    add,
    leaseFresh,
    touch,
    unlease,
    take,
    reindex,
    close,
    endProbe,
    /** Open deliveries in all. */
    openTotal: () => openTotal,
    /** Whether more than one company has open deliveries (then claims go by company turns). */
    sharedByCompanies: () => openByCompany.size > 1,
    /** Claims up to `limit` due deliveries by company turns. */
    claim: (now: number, limit: number, leaseMs: number, ordered: boolean, owner: string) => claimFrom(heapFor(ordered), now, limit, leaseMs, ordered, owner),
    /** `company` has had its turn; the next delivery a claim would pick, if any may go now. */
    claimAfterTurn(company: string, now: number, leaseMs: number, ordered: boolean, owner: string): ClaimedDelivery | undefined {
      servedAt.set(company, now)
      return claimFrom(heapFor(ordered), now, 1, leaseMs, ordered, owner)[0]
    },
    /** When a claim could next hand something out (stale heap entries at the top dropped). */
    nextWakeAt(ordered: boolean): number | undefined {
      const heap = heapFor(ordered)
      for (let top = heap.peek(); top; top = heap.peek()) {
        if (top.stamp === top.value.stamp) return top.at
        heap.pop()
      }
      return undefined
    },
  }
}

// ---- internals

export interface Held {
  delivery: Delivery
  queue: Queue
  /** Current lease token; '' when not leased. */
  token: string
  /** Lease expiry; -Infinity when not leased. */
  leaseUntil: number
  /** Enqueue order, the tie-break after the due time. */
  seq: number
  /** Bumped on every change; heap entries with an older stamp are stale. */
  stamp: number
}

export interface Queue {
  webhookId: string
  company: string
  /** Open deliveries, oldest first (a Set keeps insertion order and removes in O(1)). */
  pending: Set<string>
  /** Open deliveries by when they become claimable (unordered claims). */
  ready: DueHeap<Held>
  /** Deliveries under a lease. */
  out: Set<string>
  /** Bumped on every change; heap entries of the queue with another stamp are stale. */
  stamp: number
  endpoint: EndpointState
  /** The lease token of the probe out, or ''. */
  probeToken: string
  bucket: { tokens: number; at: number | null }
}

// When a claimer may take it: once due, and once its lease (if any) has run out.
function availableAt(held: Held): number {
  const due = held.delivery.nextAttemptAt ?? Infinity
  return held.leaseUntil === -Infinity ? due : Math.max(due, held.leaseUntil + 1)
}

/** The oldest member of a set (insertion order). */
export function first<T>(set: Set<T>): T | undefined {
  return set.values().next().value
}
