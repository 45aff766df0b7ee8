import { applyEndpointReport, emptyEndpoint, resetEndpointState } from './endpoint-state.js'
import { first, memoryQueues, type Queue } from './memory-queues.js'
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

/**
 * The embedded store: everything in this process's memory, gone when it exits. The default of
 * `createWebhooks()`, and the reference implementation of the storage contract.
 *
 * Deliveries wait in one queue per webhook (memory-queues.ts): a claim costs the same whether a
 * webhook has ten open deliveries or a million. This file keeps the rest: logs, finals, idempotency
 * keys, and the steps of the storage contract.
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

  const queues = memoryQueues(copyOut)
  const { deliveries, holdOf, queueOf, touch, unlease, take, reindex, close, endProbe } = queues
  const logs = new Map<string, LogList>() // every delivery of a webhook, oldest first
  // Final deliveries in the order they became final: prune takes from the front.
  const finals: Array<{ id: string; at: number }> = []
  let finalsHead = 0
  const idempotency = new Map<string, { result: EnqueueResult; at: number }>()
  let enqueueSeq = 0

  return {
    ...webhookMethods,

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      const key = input.idempotencyKey === undefined ? undefined : `${input.event.company}\0${input.idempotencyKey}`
      const seen = key === undefined ? undefined : idempotency.get(key)
      if (seen) return { ...clone(seen.result), duplicate: true }
      if (input.tx !== undefined) throw new TypeError('memoryStore: emit(…, { tx }) needs a SQL store; the memory store has no transactions')
      const event = copying ? deepFreeze(structuredClone(input.event)) : input.event
      const touched = new Set<Queue>()
      // The emitting engine delivers too: its share of these goes to it at once (see EnqueueInput.claim).
      const claim = input.claim
      const claimed: ClaimedDelivery[] = []
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
        const held = { delivery, queue, token: '', leaseUntil: -Infinity, seq: ++enqueueSeq, stamp: 0 }
        queues.add(held)
        touched.add(queue)
        if (claim && claimed.length < claim.limit) {
          const taken = queues.leaseFresh(held, input.now, claim.ordered, claim.owner, claim.leaseMs)
          if (taken) claimed.push(taken)
        }
        let list = logs.get(webhookId)
        if (!list) logs.set(webhookId, (list = { ids: [], removed: 0 }))
        list.ids.push(id)
      }
      for (const queue of touched) reindex(queue)
      const result: EnqueueResult = { eventId: input.eventId, deliveries: clone(input.deliveries), duplicate: false }
      if (key !== undefined) idempotency.set(key, { result: clone(result), at: input.now })
      if (claimed.length) result.claimed = claimed
      return result
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      const { now, limit, leaseMs, ordered, owner } = options
      return queues.claim(now, limit, leaseMs, ordered, owner)
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
      const byTurns = next?.ordered && settlement.state !== 'pending' && queues.sharedByCompanies()
      if (next?.ordered && settlement.state !== 'pending' && !byTurns) {
        const [taken] = take(queue, now, 1, true, next.owner, next.leaseMs)
        if (taken) result.next = taken
      }
      reindex(queue)
      // Unordered, a lease that ends is this company's turn had: the next goes by turns too.
      if (byTurns || (next && !next.ordered && ended)) {
        const taken = queues.claimAfterTurn(queue.company, now, next!.leaseMs, next!.ordered, next!.owner)
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
      return queues.nextWakeAt(ordered)
    },

    async openCount() {
      return queues.openTotal()
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
      const queue = queues.queues.get(webhookId)
      if (!queue) return emptyEndpoint()
      return { ...queue.endpoint, rate: queue.endpoint.rate ? { ...queue.endpoint.rate } : null }
    },

    async stats(company) {
      const found: WebhookStats[] = []
      for (const queue of queues.queues.values()) {
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
      const queue = queues.queues.get(webhookId)
      if (!queue) return
      resetEndpointState(queue.endpoint)
      queue.probeToken = ''
      reindex(queue)
    },

    async setRate(webhookId, rate) {
      const queue = queues.queues.get(webhookId) ?? queueOf(webhookId, companyOf(webhookId) ?? '')
      queue.endpoint.rate = rate ? { perSecond: rate.perSecond, burst: rate.burst } : null
      if (rate) queue.bucket.tokens = Math.min(queue.bucket.tokens, rate.burst)
      reindex(queue)
    },
  }
}

// ---- internals

interface LogList {
  ids: string[]
  /** How many of `ids` were pruned (compacted away now and then). */
  removed: number
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}
