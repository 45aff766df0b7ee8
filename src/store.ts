import type { Attempt, COTEvent, COTWebhook, DeliveryState } from './model.js'
import type { Trigger } from './triggers.js'
import type { EndpointChange, EndpointReport, EndpointState, RateLimit, WebhookStats } from './endpoint-types.js'

export type { EndpointChange, EndpointPolicy, EndpointReport, EndpointState, RateLimit, WebhookStats } from './endpoint-types.js'

/**
 * The storage contract: every store (memory, SQLite, PostgreSQL, D1, yours) implements it, and
 * `runStoreConformance` from `cotwebhook/testing` proves an implementation against it.
 *
 * Times are epoch milliseconds passed in by the caller: a store never reads its own clock, so
 * leases and schedules behave the same under fake timers and across machines.
 */

/** A secret replaced by a rotation, still signed with until `expiresAt` so receivers can switch over. */
export interface RetiringSecret {
  /** The `whsec_…` secret. */
  secret: string
  /** Epoch ms after which it is no longer used. */
  expiresAt: number
}

/**
 * A webhook with its signing secrets. Secrets never leave through the API's JSON. A store keeps
 * `secrets` exactly as given (the SQL stores as JSON): the first entry is the current secret (a
 * string), the others are retiring secrets from rotations.
 */
export interface StoredWebhook {
  /** The COTWebhook as the API returns it. */
  webhook: COTWebhook
  /** The current `whsec_…` secret first, then retiring ones (older stores may hold plain strings there). */
  secrets: Array<string | RetiringSecret>
}

/** Filters and page of `listWebhooks`. */
export interface WebhookListQuery {
  /** Only active (`true`) or inactive (`false`) webhooks; all when absent. */
  isActive?: boolean
  /** Page size. */
  limit: number
  /** Rows to skip. */
  offset: number
}

/** A delivery to create: one per matched webhook. */
export interface NewDelivery {
  /** The delivery's id: the `webhook-id` header and the COTWebhookLog `_id`. */
  id: string
  /** The matched webhook's `_id`. */
  webhookId: string
}

/** What `enqueue` writes in one atomic step. */
export interface EnqueueInput {
  /** Id of the event (shared by its deliveries). */
  eventId: string
  /** The COTEvent; its `company` scopes the deliveries and the idempotency key. */
  event: COTEvent
  /** One per matched webhook, in the order they should be delivered. */
  deliveries: NewDelivery[]
  /** A repeated key (per company) makes the enqueue a no-op that returns the first result. */
  idempotencyKey?: string
  /** Now: the deliveries' `createdAt`, and when their first attempt is due. */
  now: number
  /**
   * The host's open transaction (a store-specific handle, such as a `pg` client inside `BEGIN`):
   * the deliveries are written through it, so they commit if and only if the host's write commits.
   * A store that cannot take part in the host's transaction rejects a `tx` it does not understand.
   */
  tx?: unknown
  /** The emit's trace context, kept with every delivery as {@link Delivery.trace}. */
  trace?: string
  /**
   * The emitting engine delivers too: lease it, in the same step, up to `limit` of these deliveries
   * that may go now (as a claim by `owner` would), answered as `claimed`. A store may lease none (and
   * never does inside a host transaction); the rest are claimed as usual.
   */
  claim?: { owner: string; leaseMs: number; limit: number; ordered: boolean }
}

/** What `enqueue` returns. */
export interface EnqueueResult {
  /** The event's id (the first one's, on a repeated idempotency key). */
  eventId: string
  /** The deliveries (the first enqueue's, on a repeated key). */
  deliveries: NewDelivery[]
  /** `true` when the idempotency key had been seen and nothing was written. */
  duplicate: boolean
  /** Deliveries of this enqueue leased to the claiming engine (when the input asked with `claim`). */
  claimed?: ClaimedDelivery[]
  /**
   * Of the deliveries not `claimed`, how many wait behind a delivery of their webhook that is out
   * (ordered claims only): the settle of that one passes the queue on, so the emitting engine need not
   * look for them. A store may leave it out; the engine then looks as usual.
   */
  waiting?: number
}

/** A delivery of one event to one webhook; it is also that webhook's COTWebhookLog. */
export interface Delivery {
  /** Delivery id = COTWebhookLog `_id` = `webhook-id` header. */
  id: string
  /** The event's company. */
  company: string
  /** The webhook's `_id`. */
  webhookId: string
  /** The event's id. */
  eventId: string
  /** The COTEvent delivered. */
  event: COTEvent
  /** `pending` until it succeeds or gives up. A leased delivery is still `pending`. */
  state: DeliveryState
  /** Every attempt made, oldest first. */
  attempts: Attempt[]
  /** Status of the last attempt, `null` before the first. */
  status: number | null
  /** The last response (truncated) or what went wrong. */
  response: string
  /** When it was enqueued. */
  createdAt: number
  /** When it last changed. */
  updatedAt: number
  /** When the next attempt is due; `null` once final. */
  nextAttemptAt: number | null
  /**
   * The trace context of the emit that made it (W3C `traceparent`, then `tracestate` after a space if
   * any), as the engine's telemetry recorded it; kept as given, so an attempt made by any engine, after
   * any restart, continues the emit's trace.
   */
  trace?: string
}

/** Proof of holding a claimed delivery; the store keeps its expiry. */
export interface Lease {
  /** The delivery held. */
  deliveryId: string
  /** Unique per claim: an old holder's token no longer matches once someone else claims it. */
  token: string
}

/** One delivery handed out by `claim`. */
export interface ClaimedDelivery {
  /** The delivery as stored at the claim. */
  delivery: Delivery
  /** The lease to settle it with. */
  lease: Lease
  /**
   * `true` when this is the one attempt a half-open circuit lets through (its webhook's circuit was
   * open and its cool-down is over): its outcome closes the circuit or opens it again.
   */
  probe?: boolean
  /** The attempts-per-second limit the store holds for its webhook (`null`: none), so the engine can correct it. */
  rate?: RateLimit | null
}

/** What `settle` answers. */
export interface SettleResult {
  /** What the reported attempt changed in the endpoint's state (when the settlement had `endpoint`). */
  endpoint?: EndpointChange
  /** The settling engine's next delivery, already leased to it (when the settlement asked with `next`). */
  next?: ClaimedDelivery
}

/** Options of `claim`. */
export interface ClaimOptions {
  /** Now. Deliveries due at or before it, and leases expired before it, are claimable. */
  now: number
  /** At most this many deliveries. */
  limit: number
  /** How long the lease lasts from `now`. */
  leaseMs: number
  /** Who claims (an engine instance id), for diagnostics. */
  owner: string
  /**
   * Per-webhook first-in-first-out: hand out a webhook's oldest open delivery only, and only while it
   * is not leased, so a webhook never has two deliveries out at once. `false` hands out any due
   * delivery. Engines sharing a store use one ordering: a delivery leased by an unordered claim does
   * not hold back an ordered one.
   */
  ordered: boolean
}

/** What `settle` records. */
export interface Settlement {
  /** Now. A lease that expired before it is lost. */
  now: number
  /** The attempt just made; absent when the delivery ends without a request (webhook gone or inactive). */
  attempt?: Attempt
  /** The response body (truncated) or the failure's description. */
  response: string
  /** `succeeded` and `failed` are final; `pending` schedules another attempt at `nextAttemptAt`. */
  state: DeliveryState
  /** When `pending`: when the next attempt is due. */
  nextAttemptAt?: number
  /**
   * When `pending`: keep the lease until then (the holder will retry in process); otherwise the
   * lease is released and any claimer may take the delivery once it is due.
   */
  holdUntil?: number
  /** The attempt's outcome for the shared endpoint state (health, circuit); the answer says what it changed. */
  endpoint?: EndpointReport
  /**
   * Hand the settling engine its next delivery in the same step, answered as `next`, when one may go
   * now: with `ordered`, when this settle makes the delivery final, the webhook's next delivery (its
   * queue passes straight on); without, when this settle ends the lease (final, or handed back), any
   * due delivery a claim would pick. A store may answer none; the engine then claims as usual. It
   * saves a claim round trip per delivery under load. Company turns hold here too: while another
   * company has due work, `next` is what a claim by turns would pick (ordered: a queue head by turns,
   * not this webhook's next by right). Whether the settling company counts as just served is the
   * store's rule: the memory store counts it, so another company goes next; the SQL stores that answer
   * `next` go on with the rotation of their claims (moved along by claims and by queues passed straight
   * on), so a quiet company's settle gets its own next when the rotation comes round to it.
   */
  next?: { owner: string; leaseMs: number; ordered: boolean }
}

/** What changed in a shared store, as told to `watch` listeners. */
export type StoreChange =
  /** Deliveries were enqueued or handed back: there may be work to claim. */
  | { kind: 'deliveries' }
  /** A webhook was written: caches over it are stale. */
  | { kind: 'webhook'; company: string; id: string }
  /** Changes may have been missed (the listening connection was lost): everything cached is suspect. */
  | { kind: 'reset' }

/** How many rows one `prune` call removed. */
export interface PruneResult {
  /** Final (succeeded or failed) deliveries, with their logs. */
  deliveries: number
  /** Events no delivery refers to any more. */
  events: number
  /** Idempotency keys. */
  idempotencyKeys: number
}

/** A page of rows and the total they were cut from. */
export interface Page<T> {
  /** The rows of the page. */
  items: T[]
  /** Rows matching the query across all pages. */
  count: number
}

/**
 * What every store implements. All methods are async; each must be atomic on its own.
 *
 * @example
 * ```ts
 * import { createWebhooks } from 'cotwebhook'
 * const myStore: Store = { ... } // then prove it: runStoreConformance({ name: 'mine', create: () => myStore })
 * const hooks = createWebhooks({ store: myStore })
 * ```
 */
export interface Store {
  /** Inserts a webhook; resolves `false` (writing nothing) when its `code` is taken in its company. */
  insertWebhook(record: StoredWebhook): Promise<boolean>
  /** A webhook of the company, or `undefined` (also for another company's id). */
  getWebhook(company: string, id: string): Promise<StoredWebhook | undefined>
  /** A company's webhooks in creation order, filtered and paged. */
  listWebhooks(company: string, query: WebhookListQuery): Promise<Page<COTWebhook>>
  /** The company's active webhooks of one trigger: what the matcher indexes. */
  activeWebhooks(company: string, trigger: Trigger): Promise<COTWebhook[]>
  /**
   * Replaces a webhook (and its secrets when given) if its stored `__v` equals `expectedVersion`;
   * resolves `false` when no webhook of the company has that id and version.
   */
  updateWebhook(record: StoredWebhook, expectedVersion: number): Promise<boolean>

  /** Writes the deliveries in one atomic step, or nothing on a repeated idempotency key. */
  enqueue(input: EnqueueInput): Promise<EnqueueResult>
  /**
   * Hands out due deliveries under a lease, earliest due first and then in enqueue order; a delivery
   * is never held by two claimers at once. When several companies have due work they take turns:
   * each company's earliest due delivery before a second one of any company, so another company's
   * flood delays a delivery by one claim (the SQL stores: while at most `limit` companies have due
   * work; beyond that, in rotation). Works from per-webhook queues, so its cost does not grow
   * with a webhook's backlog. Skips webhooks whose circuit is open; lets one probe through a
   * half-open circuit (`probe: true`); hands out no more than a webhook's stored rate allows.
   */
  claim(options: ClaimOptions): Promise<ClaimedDelivery[]>
  /**
   * Records an attempt and the delivery's next state (and, with `endpoint`, the attempt's outcome in
   * the endpoint's shared state). Rejects with `LeaseLostError` for a stale lease. Stores may group
   * concurrent settles into one round trip; each caller is still answered (or rejected) on its own.
   */
  settle(lease: Lease, settlement: Settlement): Promise<SettleResult | void>
  /** Gives a delivery back without an attempt (shutdown). Rejects with `LeaseLostError` for a stale lease. */
  release(lease: Lease, now: number): Promise<void>
  /**
   * The earliest time after which `claim` could hand out something not claimable at `now`: a due time
   * or a lease expiry (of webhook heads only, when `ordered`). `undefined` when nothing is open. A
   * store may answer earlier than that (never later): a claim at that time then finds nothing, and
   * afterwards the answer is exact for what it looked at.
   */
  nextWakeAt(now: number, ordered: boolean): Promise<number | undefined>
  /** How many deliveries are not final (pending, scheduled or leased). */
  openCount(): Promise<number>
  /** A company's delivery by id, or `undefined`. */
  getDelivery(company: string, id: string): Promise<Delivery | undefined>
  /** A webhook's deliveries, newest first, paged. */
  listDeliveries(company: string, webhookId: string, page: { limit: number; offset: number }): Promise<Page<Delivery>>
  /**
   * Removes at most `limit` final deliveries last updated before `before` (and the events and
   * idempotency keys older than it that nothing refers to). Pending deliveries are never removed.
   * Small batches keep it from blocking claims.
   */
  prune(before: number, limit: number): Promise<PruneResult>
  /**
   * Optional, for stores shared by several processes: calls `listener` when another writer (or this
   * one) enqueued deliveries or wrote a webhook. Resolves to a function that stops listening.
   */
  watch?(listener: (change: StoreChange) => void): Promise<() => Promise<void>>

  /** A webhook's shared endpoint state (zeros for one never seen). */
  endpoint(webhookId: string): Promise<EndpointState>

  /**
   * Every webhook that has had a delivery (of `company`, or of all companies): its endpoint state,
   * its open deliveries counted, and when the oldest of them was enqueued. From the queue records and
   * the index of open deliveries: its cost follows the webhooks and their open deliveries, never the
   * deliveries kept in the log.
   */
  stats(company?: string): Promise<WebhookStats[]>
  /** Starts a webhook's health and circuit afresh (it got a new URL, or was turned on again). */
  resetEndpoint(webhookId: string): Promise<void>
  /** Sets (or, with `null`, lifts) the attempts-per-second limit that claims apply to a webhook. */
  setRate(webhookId: string, rate: RateLimit | null): Promise<void>
}
