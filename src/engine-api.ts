import type { CircuitBreakerOptions } from './circuit-breaker.js'
import type { EngineStats } from './engine-stats.js'
import type { HealthReport } from './endpoint-guard.js'
import type { HealthOptions } from './health.js'
import type { memoryStore } from './memory-store.js'
import type { COTWebhookLog, EmitInput } from './model.js'
import type { OperatorHooks } from './operator-hooks.js'
import type { RateLimitOptions } from './rate-limit.js'
import type { Registry } from './registry.js'
import type { RecoverOptions, RecoverResult, ReplayResult, TestEventOptions } from './replay.js'
import type { RetryOptions } from './retry-policy.js'
import type { Signer } from './signer.js'
import type { NewDelivery, PruneResult, Store } from './store.js'
import type { Telemetry } from './telemetry.js'
import type { FetchLike, Transport } from './transport.js'
import type { UrlPolicy } from './url-guard.js'

// The engine's public shape: what `createWebhooks` takes and what it answers (engine.ts builds it).

/** Options of {@link createWebhooks}. Every one has a default. */
export interface WebhooksOptions extends UrlPolicy {
  /** Where webhooks, deliveries and logs live. Default: a new {@link memoryStore}. */
  store?: Store
  /**
   * Deliveries in flight at once, across all webhooks. Default 32. Beyond them, a few guest slots (an
   * eighth of them, at least one) take the first delivery of a company with nothing in flight, so a
   * quiet company never waits behind a busy one's sends.
   */
  concurrency?: number
  /** `'webhook'`: one delivery at a time per webhook, in emit order (Cotalker's rule). `'none'`: no order. Default `'webhook'`. */
  ordering?: 'webhook' | 'none'
  /** When to retry. Default: Cotalker's three attempts, 30 s apart. */
  retry?: RetryOptions
  /** Per-attempt timeout in ms, response body included. Default 15 000. */
  timeoutMs?: number
  /** The HTTP client as a `fetch` function. Default: the runtime's `fetch`. */
  fetch?: FetchLike
  /** The HTTP client as a {@link Transport} (e.g. `nodeTransport()` from `cotwebhook/node`); wins over `fetch`. */
  transport?: Transport
  /** Makes the signatures. Default: WebCrypto ({@link webCryptoSigner}); `nodeSigner()` from `cotwebhook/node` is synchronous and faster on Node. */
  signer?: Signer
  /** How long a claimed delivery is held before another claimer may take it. Default 60 000; must exceed `timeoutMs`. */
  leaseMs?: number
  /** Bytes of a response body kept in the log. Default 20 480. */
  maxResponseBytes?: number
  /** Where unexpected errors (a failing store) are reported. Default `console.error`. */
  onError?: (error: unknown) => void
  /** The clock, in epoch ms. Default `Date.now`. */
  now?: () => number
  /**
   * Look at the store this often for deliveries other processes enqueued (or a host transaction
   * committed). Stores with `watch` (PostgreSQL's LISTEN/NOTIFY) wake the engine sooner. 0: never. Default 1 000.
   */
  pollIntervalMs?: number
  /** How long matched webhook lists and delivery targets are cached: 5 000 by default, 60 000 with a store that announces other processes' writes (PostgreSQL); 0: until a known write. */
  cacheTtlMs?: number
  /** `false`: this engine only emits and manages webhooks; other instances on the same store deliver. Default `true`. */
  dispatch?: boolean
  /** Keep final deliveries, their logs and idempotency keys this long, pruning in the background. Default: forever. */
  retention?: RetentionOptions
  /** Events larger than this as JSON are refused by `emit()` ({@link EventTooLargeError}, 413 over HTTP). Default 262 144 (256 KiB). */
  maxEventBytes?: number
  /** Holds attempts back from an endpoint after failures in a row (half-open probes to recover); `false` turns it off. Default: 5 failures, 10 s cool-down doubling to 5 min. */
  circuitBreaker?: CircuitBreakerOptions | false
  /** Per-webhook attempts per second and requests in flight, per-host requests in flight. Default: no per-second or per-host limit; a webhook holds at most a quarter of `concurrency`. */
  rateLimit?: RateLimitOptions
  /**
   * An attempt still waiting for its answer after `afterMs` (1 000) — or after `fullAfterMs` (50) while
   * every send slot is taken and work waits for one — gives its send slot back and waits in a lane of
   * `slots` (`concurrency`) of its own, where one host may hold half: endpoints that hang do not hold
   * the slots healthy ones are answered in. `false`: every attempt keeps its slot.
   */
  slowLane?: { afterMs?: number; fullAfterMs?: number; slots?: number } | false
  /** When a failing webhook is turned off. Default: after 50 deliveries exhausted in a row, or 5 days failing. */
  health?: HealthOptions
  /** How long an old secret stays valid after `rotateSecret`. Default 86 400 000 (24 h). */
  secretOverlapMs?: number
  /** Operator hooks: attempt failed, delivery exhausted or recovered, webhook disabled, circuit opened or closed. */
  on?: OperatorHooks
  /**
   * Traces and metrics: `openTelemetry()` from `cotwebhook/otel` (on `@opentelemetry/api`), or any
   * {@link Telemetry}. Default: none, and nothing is recorded.
   */
  telemetry?: Telemetry
}

/** Retention of final deliveries and logs. */
export interface RetentionOptions {
  /** Remove succeeded and failed deliveries (and their logs) last updated longer ago than this. */
  maxAgeMs: number
  /** How often to prune. Default 3 600 000 (hourly). */
  intervalMs?: number
  /** Rows per prune batch; batches are small so claims never wait long. Default 500. */
  batchSize?: number
}

/** Options of `emit()`. */
export interface EmitOptions {
  /** A key seen before (per company) makes this emit a no-op that returns the first emit's result. */
  idempotencyKey?: string
  /**
   * The host's open transaction, with a SQL store (a `pg` client inside `BEGIN`, or the SQLite
   * connection inside `BEGIN`): the deliveries commit if and only if the host's own write does.
   */
  tx?: unknown
}

/** What `emit()` returns: the event's id and one delivery per matched webhook. */
export interface EmitResult {
  /** The event's id. */
  eventId: string
  /** One per matched webhook; `id` is the `webhook-id` header and the COTWebhookLog `_id`. */
  deliveries: NewDelivery[]
}

/** A page of logs. */
export interface LogPageOptions {
  /** Page size, 1–100. Default 10. */
  limit?: number
  /** Page number from 1. Default 1. */
  page?: number
}

/** The engine: registry, emit, logs, and the delivery loop behind them. */
export interface Webhooks {
  /** Create, read, list and update COTWebhooks. */
  readonly registry: Registry
  /** The store the engine runs on. */
  readonly store: Store
  /** Matches the event to the company's active webhooks and stores one delivery per match before resolving. */
  emit(event: EmitInput, options?: EmitOptions): Promise<EmitResult>
  /** A webhook's COTWebhookLogs, newest first. */
  logs(company: string, webhookId: string, options?: LogPageOptions): Promise<COTWebhookLog[]>
  /** A page of a webhook's COTWebhookLogs, newest first, and how many there are in all. */
  listLogs(company: string, webhookId: string, options?: LogPageOptions): Promise<{ logs: COTWebhookLog[]; count: number }>
  /** Resolves once every delivery is final: none pending, scheduled for a retry or in flight. */
  drain(): Promise<void>
  /**
   * Delivers what is due now (short retries included, waited in process) and resolves with when the
   * next delivery falls due, if any: for workers that run briefly, such as a queue consumer.
   */
  flush(): Promise<{ nextWakeAt?: number }>
  /** Sends a delivery's event again to its webhook, as a new delivery (`replayOf` names the original). */
  resend(company: string, deliveryId: string): Promise<ReplayResult>
  /** Sends again every failed delivery of a webhook created since a time, oldest first, up to `limit` per call. */
  recover(company: string, webhookId: string, options: RecoverOptions): Promise<RecoverResult>
  /** Sends a test event (`extraData.test: true`) to one webhook. */
  sendTest(company: string, webhookId: string, options?: TestEventOptions): Promise<ReplayResult>
  /** A webhook's health and circuit, as the store holds them for every engine on it. */
  health(company: string, webhookId: string): Promise<HealthReport>
  /**
   * The backlog and circuits across webhooks (of `company`, or of every company), read from the store
   * (shared by every engine on it), and this engine's outcomes since it started.
   */
  stats(company?: string, options?: { limit?: number }): Promise<EngineStats>
  /** Removes final deliveries, logs and idempotency keys older than `olderThanMs` (default: `retention.maxAgeMs`). */
  prune(options?: { olderThanMs?: number }): Promise<PruneResult>
  /** Stops delivering: waits for attempts in flight, gives waiting retries back to the store. */
  close(): Promise<void>
}
