import { DueHeap } from './due-heap.js'
import { LeaseLostError } from './errors.js'
import type { COTWebhook } from './model.js'
import type {
  ClaimOptions,
  ClaimedDelivery,
  Delivery,
  EnqueueInput,
  EnqueueResult,
  Lease,
  Page,
  PruneResult,
  Settlement,
  Store,
  StoredWebhook,
  WebhookListQuery,
} from './store.js'
import type { Trigger } from './triggers.js'

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

  const webhooks = new Map<string, StoredWebhook>()
  const companyWebhooks = new Map<string, string[]>() // creation order
  const codes = new Set<string>()

  const deliveries = new Map<string, Held>()
  // Open deliveries of a webhook, oldest first: a Set keeps insertion order and removes in O(1).
  const openByWebhook = new Map<string, Set<string>>()
  const headOf = (webhookId: string) => openByWebhook.get(webhookId)?.values().next().value
  const allByWebhook = new Map<string, string[]>() // every delivery of a webhook, oldest first
  const idempotency = new Map<string, { result: EnqueueResult; at: number }>()
  let openTotal = 0
  let tokenSeq = 0
  let enqueueSeq = 0
  // When each open delivery becomes claimable: one heap over all of them (unordered claims) and one
  // over webhook heads (ordered claims), each built on its first use. An entry is current while its
  // stamp equals the delivery's; every change pushes a new entry rather than searching the heap.
  let anyDue: DueHeap<Stamped> | undefined
  let headsDue: DueHeap<Stamped> | undefined

  const owned = (company: string, id: string) => {
    const record = webhooks.get(id)
    return record && record.webhook.company === company ? record : undefined
  }

  const holdOf = (lease: Lease, now: number): Held => {
    const held = deliveries.get(lease.deliveryId)
    if (!held || held.token !== lease.token || held.leaseUntil < now || held.delivery.state !== 'pending') {
      throw new LeaseLostError(lease.deliveryId)
    }
    return held
  }

  const isHead = (held: Held) => headOf(held.delivery.webhookId) === held.delivery.id
  // Deliveries of a webhook that hold a lease token (live or not yet taken over).
  const outByWebhook = new Map<string, number>()
  const out = (held: Held, delta: 1 | -1) => {
    const n = (outByWebhook.get(held.delivery.webhookId) ?? 0) + delta
    if (n > 0) outByWebhook.set(held.delivery.webhookId, n)
    else outByWebhook.delete(held.delivery.webhookId)
  }
  // Whether another delivery of the webhook is under a live lease (an older one committed late must
  // not go out beside it).
  const otherOut = (held: Held, now: number) => {
    if (!outByWebhook.get(held.delivery.webhookId)) return false
    for (const id of openByWebhook.get(held.delivery.webhookId) ?? []) {
      const other = deliveries.get(id)!
      if (other !== held && other.leaseUntil >= now) return true
    }
    return false
  }
  // After a delivery stops being out, its webhook's head may have become claimable.
  const reindexHead = (webhookId: string) => {
    const head = headOf(webhookId)
    if (head) index(deliveries.get(head)!, headsDue)
  }

  const index = (held: Held, heap: DueHeap<Stamped> | undefined) =>
    heap?.push(availableAt(held), held.seq, { held, stamp: held.stamp })

  // Called after every change of a delivery's due time or lease.
  const touch = (held: Held) => {
    held.stamp++
    index(held, anyDue)
    if (isHead(held)) index(held, headsDue)
  }

  const close = (held: Held) => {
    const { webhookId, id } = held.delivery
    const queue = openByWebhook.get(webhookId)!
    const wasHead = headOf(webhookId) === id
    queue.delete(id)
    if (!queue.size) openByWebhook.delete(webhookId)
    else if (wasHead) index(deliveries.get(headOf(webhookId)!)!, headsDue) // the next one is the head now
    openTotal--
    held.stamp++
  }

  const current = (entry: { value: Stamped }, ordered: boolean) => {
    const { held, stamp } = entry.value
    return held.stamp === stamp && held.delivery.state === 'pending' && (!ordered || isHead(held))
  }

  const heapFor = (ordered: boolean): DueHeap<Stamped> => {
    if (ordered && headsDue) return headsDue
    if (!ordered && anyDue) return anyDue
    const heap = new DueHeap<Stamped>()
    for (const queue of openByWebhook.values()) {
      for (const id of queue) {
        index(deliveries.get(id)!, heap)
        if (ordered) break // the head only
      }
    }
    if (ordered) headsDue = heap
    else anyDue = heap
    return heap
  }

  return {
    async insertWebhook(record) {
      const { webhook } = record
      const codeKey = `${webhook.company}\0${webhook.code}`
      if (codes.has(codeKey) || webhooks.has(webhook._id)) return false
      codes.add(codeKey)
      webhooks.set(webhook._id, clone(record))
      const list = companyWebhooks.get(webhook.company) ?? []
      list.push(webhook._id)
      companyWebhooks.set(webhook.company, list)
      return true
    },

    async getWebhook(company, id) {
      const record = owned(company, id)
      return record && clone(record)
    },

    async listWebhooks(company, query: WebhookListQuery): Promise<Page<COTWebhook>> {
      const ids = companyWebhooks.get(company) ?? []
      const matching: COTWebhook[] = []
      for (const id of ids) {
        const webhook = webhooks.get(id)!.webhook
        if (query.isActive === undefined || webhook.isActive === query.isActive) matching.push(webhook)
      }
      return { items: clone(matching.slice(query.offset, query.offset + query.limit)), count: matching.length }
    },

    async activeWebhooks(company, trigger: Trigger) {
      const out: COTWebhook[] = []
      for (const id of companyWebhooks.get(company) ?? []) {
        const webhook = webhooks.get(id)!.webhook
        if (webhook.isActive && webhook.trigger === trigger) out.push(webhook)
      }
      return clone(out)
    },

    async updateWebhook(record, expectedVersion) {
      const current = owned(record.webhook.company, record.webhook._id)
      if (!current || current.webhook.__v !== expectedVersion) return false
      // code is immutable; a store still refuses to break its uniqueness if a caller tries.
      if (current.webhook.code !== record.webhook.code) return false
      webhooks.set(record.webhook._id, clone(record))
      return true
    },

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      const key = input.idempotencyKey === undefined ? undefined : `${input.event.company}\0${input.idempotencyKey}`
      const seen = key === undefined ? undefined : idempotency.get(key)
      if (seen) return { ...clone(seen.result), duplicate: true }
      if (input.tx !== undefined) throw new TypeError('memoryStore: emit(…, { tx }) needs a SQL store; the memory store has no transactions')
      const event = copying ? deepFreeze(structuredClone(input.event)) : input.event
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
        }
        const held: Held = { delivery, token: '', leaseUntil: -Infinity, seq: ++enqueueSeq, stamp: 0 }
        deliveries.set(id, held)
        const open = openByWebhook.get(webhookId)
        if (open) open.add(id)
        else openByWebhook.set(webhookId, new Set([id]))
        append(allByWebhook, webhookId, id)
        openTotal++
        index(held, anyDue)
        if (isHead(held)) index(held, headsDue)
      }
      const result: EnqueueResult = { eventId: input.eventId, deliveries: clone(input.deliveries), duplicate: false }
      if (key !== undefined) idempotency.set(key, { result: clone(result), at: input.now })
      return result
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      const { now, limit, leaseMs, ordered } = options
      const heap = heapFor(ordered)
      const claimed: ClaimedDelivery[] = []
      // Earliest due first, then oldest enqueued: retries do not starve behind fresh work.
      while (claimed.length < limit) {
        const top = heap.peek()
        if (!top || top.at > now) break
        heap.pop()
        if (!current(top, ordered)) continue
        const held = top.value.held
        if (ordered && otherOut(held, now)) continue // indexed again when the other one settles
        if (!held.token) out(held, 1)
        held.token = `${options.owner}:${++tokenSeq}`
        held.leaseUntil = now + leaseMs
        touch(held)
        claimed.push({ delivery: copyOut(held.delivery), lease: { deliveryId: held.delivery.id, token: held.token } })
      }
      return claimed
    },

    async settle(lease: Lease, settlement: Settlement) {
      const held = holdOf(lease, settlement.now)
      const { delivery } = held
      if (settlement.attempt) {
        delivery.attempts.push({ ...settlement.attempt })
        delivery.status = settlement.attempt.status
      }
      delivery.response = settlement.response
      delivery.updatedAt = settlement.now
      delivery.state = settlement.state
      if (settlement.state === 'pending') {
        delivery.nextAttemptAt = settlement.nextAttemptAt ?? settlement.now
        if (settlement.holdUntil !== undefined) held.leaseUntil = settlement.holdUntil
        else {
          release(held)
          out(held, -1)
          reindexHead(delivery.webhookId)
        }
        touch(held)
      } else {
        delivery.nextAttemptAt = null
        release(held)
        out(held, -1)
        close(held)
        reindexHead(delivery.webhookId)
      }
    },

    async release(lease: Lease, now: number) {
      const held = holdOf(lease, now)
      release(held)
      out(held, -1)
      touch(held)
      reindexHead(held.delivery.webhookId)
    },

    async nextWakeAt(_now, ordered) {
      const heap = heapFor(ordered)
      // Stale entries at the top are dropped; the first current one is the answer.
      for (let top = heap.peek(); top; top = heap.peek()) {
        if (current(top, ordered)) return top.at
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
      for (const [webhookId, ids] of allByWebhook) {
        if (removed.deliveries >= limit) break
        const kept: string[] = []
        for (const id of ids) {
          const { delivery } = deliveries.get(id)!
          if (removed.deliveries < limit && delivery.state !== 'pending' && delivery.updatedAt < before) {
            deliveries.delete(id)
            removed.deliveries++
          } else kept.push(id)
        }
        if (kept.length) allByWebhook.set(webhookId, kept)
        else allByWebhook.delete(webhookId)
      }
      for (const [key, entry] of idempotency) {
        if (removed.idempotencyKeys >= limit) break
        // A key stays while its event still has an open delivery: a repeated emit must not duplicate it.
        const open = entry.result.deliveries.some(({ id }) => deliveries.get(id)?.delivery.state === 'pending')
        if (entry.at < before && !open) {
          idempotency.delete(key)
          removed.idempotencyKeys++
        }
      }
      // Events live inside their deliveries here: nothing else to remove.
      return removed
    },

    async listDeliveries(company, webhookId, page) {
      const ids = owned(company, webhookId) ? (allByWebhook.get(webhookId) ?? []) : []
      const items: Delivery[] = []
      for (let i = ids.length - 1 - page.offset; i >= 0 && items.length < page.limit; i--) {
        items.push(deliveries.get(ids[i]!)!.delivery)
      }
      return { items: items.map(copyOut), count: ids.length }
    },
  }
}

// ---- internals

interface Held {
  delivery: Delivery
  /** Current lease token; '' when not leased. */
  token: string
  /** Lease expiry; -Infinity when not leased. */
  leaseUntil: number
  /** Enqueue order, the tie-break after the due time. */
  seq: number
  /** Bumped on every change; heap entries with an older stamp are stale. */
  stamp: number
}

interface Stamped {
  held: Held
  stamp: number
}

// When a claimer may take it: once due, and once its lease (if any) has run out.
function availableAt(held: Held): number {
  const due = held.delivery.nextAttemptAt ?? Infinity
  return held.leaseUntil === -Infinity ? due : Math.max(due, held.leaseUntil + 1)
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}

function release(held: Held) {
  held.token = ''
  held.leaseUntil = -Infinity
}

function append(map: Map<string, string[]>, key: string, value: string) {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}
