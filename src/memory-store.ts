import { DueHeap } from './due-heap.js'
import { applyEndpointReport, emptyEndpoint, endpointGate, refill, resetEndpointState } from './endpoint-state.js'
import { LeaseLostError } from './errors.js'
import { memoryWebhooks } from './memory-webhooks.js'
import type {
  ClaimOptions,
  ClaimedDelivery,
  Delivery,
  EndpointState,
  EnqueueInput,
  EnqueueResult,
  Lease,
  PruneResult,
  SettleResult,
  Settlement,
  Store,
  WebhookStats,
} from './store.js'

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Copy values in and out, so callers can never change stored state by mutating what they passed
   * or got back (as with a real database). Default `true`.
   */
  copy?: boolean
}

// Queues moved back for company turns in one claim, at most (see claimFrom).
const MAX_MOVED_BACK = 1_024

/**
 * The embedded store: everything in this process's memory, gone when it exits. The default of
 * `createWebhooks()`, and the reference implementation of the storage contract.
 *
 * Deliveries wait in one queue per webhook; claims take from the queues whose next delivery is due,
 * through a heap of queues, so a claim costs the same whether a webhook has ten open deliveries or a
 * million, and a webhook whose circuit is open costs nothing until its cool-down ends.
 *
 * @example
 * ```ts
 * const hooks = createWebhooks({ store: memoryStore() })
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  const copying = options.copy !== false
  const clone: <T>(value: T) => T = copying ? (value) => structuredClone(value) : (value) => value
  // A delivery as handed out: its own copy of what changes, and the event, which never changes once
  // enqueued and is frozen then, shared rather than copied on every claim.
  const copyOut = (delivery: Delivery): Delivery =>
    copying ? { ...delivery, attempts: delivery.attempts.map((a) => ({ ...a })) } : delivery

  const { methods: webhookMethods, companyOf } = memoryWebhooks(clone)

  const deliveries = new Map<string, Held>()
  const queues = new Map<string, Queue>()
  const logs = new Map<string, LogList>() // every delivery of a webhook, oldest first
  // Final deliveries in the order they became final: prune takes from the front.
  const finals: Array<{ id: string; at: number }> = []
  let finalsHead = 0
  const idempotency = new Map<string, { result: EnqueueResult; at: number }>()
  let openTotal = 0
  // Open deliveries per company: with one company open, an ordered queue passes straight on (no turns to keep).
  const openByCompany = new Map<string, number>()
  let tokenSeq = 0
  let enqueueSeq = 0
  // Queues by when they could next hand something out, one heap per ordering, each built on first
  // use. An entry is current while its stamp equals the queue's; a change pushes a new entry.
  // When each company last had a delivery claimed: its turn in the next claims (see claimFrom).
  const servedAt = new Map<string, number>()
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

  return {
    ...webhookMethods,

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      const key = input.idempotencyKey === undefined ? undefined : `${input.event.company}\0${input.idempotencyKey}`
      const seen = key === undefined ? undefined : idempotency.get(key)
      if (seen) return { ...clone(seen.result), duplicate: true }
      if (input.tx !== undefined) throw new TypeError('memoryStore: emit(…, { tx }) needs a SQL store; the memory store has no transactions')
      const event = copying ? deepFreeze(structuredClone(input.event)) : input.event
      const touched = new Set<Queue>()
      for (const { id, webhookId } of input.deliveries) {
        const delivery: Delivery = {
          id,
          company: event.company,
          webhookId,
          eventId: input.eventId,
          event,
          state: 'pending',
          attempts: [],
          status: null,
          response: '',
          createdAt: input.now,
          updatedAt: input.now,
          nextAttemptAt: input.now,
          ...(input.trace === undefined ? {} : { trace: input.trace }),
        }
        const queue = queueOf(webhookId, event.company)
        const held: Held = { delivery, queue, token: '', leaseUntil: -Infinity, seq: ++enqueueSeq, stamp: 0 }
        deliveries.set(id, held)
        queue.pending.add(id)
        queue.endpoint.open++
        touch(held)
        touched.add(queue)
        let list = logs.get(webhookId)
        if (!list) logs.set(webhookId, (list = { ids: [], removed: 0 }))
        list.ids.push(id)
        openTotal++
        openByCompany.set(queue.company, (openByCompany.get(queue.company) ?? 0) + 1)
      }
      for (const queue of touched) reindex(queue)
      const result: EnqueueResult = { eventId: input.eventId, deliveries: clone(input.deliveries), duplicate: false }
      if (key !== undefined) idempotency.set(key, { result: clone(result), at: input.now })
      return result
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      const { now, limit, leaseMs, ordered, owner } = options
      return claimFrom(heapFor(ordered), now, limit, leaseMs, ordered, owner)
    },

    async settle(lease: Lease, settlement: Settlement): Promise<SettleResult> {
      const held = holdOf(lease, settlement.now)
      const { delivery, queue } = held
      const now = settlement.now
      if (settlement.attempt) {
        delivery.attempts.push({ ...settlement.attempt })
        delivery.status = settlement.attempt.status
      }
      delivery.response = settlement.response
      delivery.updatedAt = now
      delivery.state = settlement.state
      const probe = endProbe(held, settlement.attempt !== undefined)
      const result: SettleResult = {}
      if (settlement.endpoint) result.endpoint = applyEndpointReport(queue.endpoint, settlement.endpoint, now, probe)
      const ended = settlement.state !== 'pending' || settlement.holdUntil === undefined
      if (settlement.state === 'pending') {
        delivery.nextAttemptAt = settlement.nextAttemptAt ?? now
        if (settlement.holdUntil !== undefined) held.leaseUntil = settlement.holdUntil
        else unlease(held)
        touch(held)
      } else {
        delivery.nextAttemptAt = null
        close(held)
        finals.push({ id: delivery.id, at: now })
      }
      const next = settlement.next
      // Ordered, the webhook's queue passes straight to its next delivery, if that may go now; while
      // other companies have open deliveries this company has had its turn, and the next goes by turns.
      const byTurns = next?.ordered && settlement.state !== 'pending' && openByCompany.size > 1
      if (next?.ordered && settlement.state !== 'pending' && !byTurns) {
        const [taken] = take(queue, now, 1, true, next.owner, next.leaseMs)
        if (taken) result.next = taken
      }
      reindex(queue)
      if (byTurns) {
        servedAt.set(queue.company, now)
        const [taken] = claimFrom(heapFor(true), now, 1, next!.leaseMs, true, next!.owner)
        if (taken) result.next = taken
      }
      if (next && !next.ordered && ended) {
        servedAt.set(queue.company, now) // this company has had its turn
        const [taken] = claimFrom(heapFor(false), now, 1, next.leaseMs, false, next.owner)
        if (taken) result.next = taken
      }
      return result
    },

    async release(lease: Lease, now: number) {
      const held = holdOf(lease, now)
      endProbe(held, false)
      unlease(held)
      touch(held)
      reindex(held.queue)
    },

    async nextWakeAt(_now, ordered) {
      const heap = heapFor(ordered)
      // Stale entries at the top are dropped; the first current one is the answer.
      for (let top = heap.peek(); top; top = heap.peek()) {
        if (top.stamp === top.value.stamp) return top.at
        heap.pop()
      }
      return undefined
    },

    async openCount() {
      return openTotal
    },

    async getDelivery(company, id) {
      const held = deliveries.get(id)
      return held && held.delivery.company === company ? copyOut(held.delivery) : undefined
    },

    async prune(before, limit) {
      const removed: PruneResult = { deliveries: 0, events: 0, idempotencyKeys: 0 }
      // Oldest final first: each batch costs what it removes.
      while (removed.deliveries < limit && finalsHead < finals.length && finals[finalsHead]!.at < before) {
        const { id } = finals[finalsHead++]!
        const held = deliveries.get(id)
        if (!held) continue
        deliveries.delete(id)
        const list = logs.get(held.delivery.webhookId)!
        list.removed++
        // Compact a webhook's log list once half of it is gone: amortised, never a scan per removal.
        if (list.removed * 2 > list.ids.length) {
          list.ids = list.ids.filter((logId) => deliveries.has(logId))
          list.removed = 0
        }
        removed.deliveries++
      }
      if (finalsHead > 1_024 && finalsHead * 2 > finals.length) {
        finals.splice(0, finalsHead)
        finalsHead = 0
      }
      // Keys in the order they were made; a key stays while its event still has an open delivery.
      for (const [key, entry] of idempotency) {
        if (removed.idempotencyKeys >= limit || entry.at >= before) break
        const open = entry.result.deliveries.some(({ id }) => deliveries.get(id)?.delivery.state === 'pending')
        if (!open) {
          idempotency.delete(key)
          removed.idempotencyKeys++
        }
      }
      // Events live inside their deliveries here: nothing else to remove.
      return removed
    },

    async listDeliveries(company, webhookId, page) {
      const list = companyOf(webhookId) === company ? logs.get(webhookId) : undefined
      if (!list) return { items: [], count: 0 }
      const items: Delivery[] = []
      let skip = page.offset
      for (let i = list.ids.length - 1; i >= 0 && items.length < page.limit; i--) {
        const held = deliveries.get(list.ids[i]!)
        if (!held) continue
        if (skip > 0) skip--
        else items.push(held.delivery)
      }
      return { items: items.map(copyOut), count: list.ids.length - list.removed }
    },

    async endpoint(webhookId) {
      const queue = queues.get(webhookId)
      if (!queue) return emptyEndpoint()
      return { ...queue.endpoint, rate: queue.endpoint.rate ? { ...queue.endpoint.rate } : null }
    },

    async stats(company) {
      const found: WebhookStats[] = []
      for (const queue of queues.values()) {
        if (company !== undefined && queue.company !== company) continue
        const oldest = first(queue.pending)
        found.push({
          webhookId: queue.webhookId,
          company: queue.company,
          ...queue.endpoint,
          rate: queue.endpoint.rate ? { ...queue.endpoint.rate } : null,
          open: queue.pending.size,
          oldestOpenAt: oldest === undefined ? null : deliveries.get(oldest)!.delivery.createdAt,
        })
      }
      return found.sort((a, b) => (a.webhookId < b.webhookId ? -1 : 1))
    },

    async resetEndpoint(webhookId) {
      const queue = queues.get(webhookId)
      if (!queue) return
      resetEndpointState(queue.endpoint)
      queue.probeToken = ''
      reindex(queue)
    },

    async setRate(webhookId, rate) {
      const queue = queues.get(webhookId) ?? queueOf(webhookId, companyOf(webhookId) ?? '')
      queue.endpoint.rate = rate ? { perSecond: rate.perSecond, burst: rate.burst } : null
      if (rate) queue.bucket.tokens = Math.min(queue.bucket.tokens, rate.burst)
      reindex(queue)
    },
  }
}

// ---- internals

interface Held {
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

interface Queue {
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

interface LogList {
  ids: string[]
  /** How many of `ids` were pruned (compacted away now and then). */
  removed: number
}

// When a claimer may take it: once due, and once its lease (if any) has run out.
function availableAt(held: Held): number {
  const due = held.delivery.nextAttemptAt ?? Infinity
  return held.leaseUntil === -Infinity ? due : Math.max(due, held.leaseUntil + 1)
}

function first<T>(set: Set<T>): T | undefined {
  return set.values().next().value
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}
