import { LRUCache } from 'lru-cache'
import * as v from 'valibot'
import { deliver } from './deliver.js'
import { createDispatcher } from './dispatcher.js'
import { createEndpointGuard } from './endpoint-guard.js'
import { ValidationError } from './errors.js'
import { eventJson } from './event-size.js'
import { toLog } from './log.js'
import { createMatcher } from './matcher.js'
import { memoryStore } from './memory-store.js'
import { nextTurn } from './next-turn.js'
import { PageSchema, toEvent, type COTEvent } from './model.js'
import { objectId } from './object-id.js'
import { hookCaller } from './operator-hooks.js'
import { guardTelemetry } from './telemetry.js'
import { outcomeCounts } from './outcome-counts.js'
import { readStats } from './engine-stats.js'
import { createRateLimiter } from './rate-limit.js'
import { createRegistry, objectIdArgument } from './registry.js'
import { recover, resend, sendTest } from './replay.js'
import { COTALKER_SCHEDULE, checkSchedule } from './retry-policy.js'
import { sendLanes, type GuestPass } from './send-lanes.js'
import { sendingCompanies } from './sending-companies.js'
import { webCryptoSigner } from './signer.js'
import { fetchTransport } from './transport.js'
import type { EnqueueResult, PruneResult } from './store.js'
import { checkUrlPolicy, type UrlPolicy } from './url-guard.js'
import { parse } from './validate.js'

import type { EmitResult, LogPageOptions, Webhooks, WebhooksOptions } from './engine-api.js'

export type { EmitOptions, EmitResult, LogPageOptions, RetentionOptions, Webhooks, WebhooksOptions } from './engine-api.js'

const EmitOptionsSchema = v.object({
  idempotencyKey: v.optional(
    v.pipe(v.string('must be a string'), v.minLength(1, 'must not be empty'), v.maxLength(256, 'must be at most 256 characters')),
  ),
  tx: v.optional(v.unknown()),
})

/**
 * Creates a webhook engine and starts its delivery loop (resuming whatever the store holds pending).
 *
 * @param {Store} [options.store=memoryStore()] - where webhooks, deliveries and logs live
 * @param {number} [options.concurrency=32] - deliveries in flight at once
 * @param {'webhook'|'none'} [options.ordering='webhook'] - per-webhook first-in-first-out, or none
 * @param {RetryOptions} [options.retry={ schedule: [30000, 30000] }] - delays between attempts
 * @param {number} [options.timeoutMs=15000] - per-attempt timeout
 * @param {boolean} [options.allowPrivateNetworks=false] - allow loopback, private and link-local URLs
 * @param {FetchLike} [options.fetch=globalThis.fetch] - the HTTP client
 * @returns {Webhooks} the engine
 * @example
 * ```ts
 * const hooks = createWebhooks({ store: memoryStore() })
 * const { webhook, secret } = await hooks.registry.create(company, {
 *   name: 'Work orders', code: 'wo_update', trigger: 'create-edit-delete-task', url: 'https://example.com/hook',
 * })
 * await hooks.emit({ company, type: 'COTTask', event: 'create', data: task })
 * ```
 */
export function createWebhooks(options: WebhooksOptions = {}): Webhooks {
  const store = options.store ?? memoryStore()
  const concurrency = positiveInteger('concurrency', options.concurrency ?? 32)
  const ordering = options.ordering ?? 'webhook'
  if (ordering !== 'webhook' && ordering !== 'none') throw new RangeError(`ordering must be 'webhook' or 'none', not ${String(ordering)}`)
  const schedule = options.retry?.schedule ?? COTALKER_SCHEDULE
  checkSchedule(schedule)
  const jitter = options.retry?.jitter ?? 0
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError('retry.jitter must be between 0 and 1')
  const timeoutMs = positiveInteger('timeoutMs', options.timeoutMs ?? 15_000)
  const leaseMs = positiveInteger('leaseMs', options.leaseMs ?? Math.max(60_000, timeoutMs * 2))
  if (leaseMs <= timeoutMs) throw new RangeError(`leaseMs (${leaseMs}) must exceed timeoutMs (${timeoutMs}), or a slow attempt would lose its lease`)
  const transport = options.transport ?? fetchTransport(options.fetch)
  const signer = options.signer ?? webCryptoSigner
  const now = options.now ?? Date.now
  const onError = options.onError ?? ((error: unknown) => console.error('cotwebhook:', error))
  const urlPolicy: UrlPolicy = {
    allowPrivateNetworks: options.allowPrivateNetworks ?? false,
    httpsOnly: options.httpsOnly ?? false,
    ...(options.allowCidrs ? { allowCidrs: options.allowCidrs } : {}),
  }
  checkUrlPolicy(urlPolicy)
  const maxEventBytes = positiveInteger('maxEventBytes', options.maxEventBytes ?? 262_144)
  const limiter = createRateLimiter(options.rateLimit, concurrency)
  const telemetry = guardTelemetry(options.telemetry, onError)
  const outcomes = outcomeCounts()
  const hook = hookCaller(options.on ?? {}, onError, telemetry?.hooks)
  const guard = createEndpointGuard({
    store,
    circuitBreaker: options.circuitBreaker,
    health: options.health,
    limiter,
    deactivate: (company, id) => registry.deactivate(company, id),
    hook,
  })

  const pollIntervalMs = nonNegativeInteger('pollIntervalMs', options.pollIntervalMs ?? 1_000)
  // Stores that announce writes need the TTL only as a safety net.
  const cacheTtlMs = nonNegativeInteger('cacheTtlMs', options.cacheTtlMs ?? (store.watch ? 60_000 : 5_000))
  const retention = options.retention
  if (retention) nonNegativeInteger('retention.maxAgeMs', retention.maxAgeMs)

  const matcher = createMatcher({ store, cacheTtlMs })
  const registry = createRegistry({
    store,
    urlPolicy,
    cacheTtlMs,
    signer,
    now,
    ...(options.secretOverlapMs === undefined ? {} : { secretOverlapMs: nonNegativeInteger('secretOverlapMs', options.secretOverlapMs) }),
    onChange: async (company, id, change) => {
      matcher.invalidate(company)
      await guard.written(id, change)
    },
  })
  const shutdown = new AbortController()
  const owner = objectId()
  const ordered = ordering === 'webhook'
  let waiting = 0
  const slowLane = options.slowLane === false ? undefined : options.slowLane ?? {}
  // Beyond `concurrency`: the first delivery of a company with nothing in flight here goes at once.
  const guestSlots = Math.max(1, Math.floor(concurrency / 8))
  // Companies with an attempt in a send slot or queued for one: see `sends` below.
  const sending = sendingCompanies()
  const lanes = sendLanes({
    concurrency,
    slowAfterMs: slowLane ? positiveInteger('slowLane.afterMs', slowLane.afterMs ?? 1_000) : Number.POSITIVE_INFINITY,
    fullAfterMs: slowLane ? positiveInteger('slowLane.fullAfterMs', slowLane.fullAfterMs ?? 50) : Number.POSITIVE_INFINITY,
    slowSlots: slowLane ? positiveInteger('slowLane.slots', slowLane.slots ?? concurrency) : 0,
    // An attempt in the slow lane holds no send slot: like a run waiting between attempts.
    moved: (delta) => context.waiting(delta),
    wanted: () => dispatcher.backlogged(),
    guestSlots,
  })
  // An event goes to many webhooks at once: keep its JSON for the deliveries that follow.
  const bodies = new LRUCache<string, string>({ max: 1_024 })
  const context = {
    store,
    registry,
    schedule,
    jitter,
    maxInProcessDelayMs: options.retry?.maxInProcessDelayMs ?? 60_000,
    maxRetryAfterMs: options.retry?.maxRetryAfterMs ?? 3_600_000,
    timeoutMs,
    maxResponseBytes: options.maxResponseBytes ?? 20_480,
    leaseMs,
    ordered,
    owner,
    urlPolicy,
    transport,
    signer,
    now,
    signal: shutdown.signal,
    // A turn of the event loop hands every response that arrived in it to its run before undici (recent
    // releases, as in cotwebhook/node) writes a request made in the turn to a reused connection, in the
    // check phase. Under a drain that is dozens of settles and next sends: while another company has an
    // attempt under way here, an answer comes back in the check phase, so its follow-up goes behind the
    // requests made before it. Otherwise (alone, or beside runs that only wait for a retry), at once.
    sends: async <T>(url: string, company: string, send: () => Promise<T>, guest?: GuestPass) => {
      sending.enter(company)
      let result: T
      try {
        result = await lanes.run(url, send, guest)
      } finally {
        sending.leave(company)
      }
      if (sending.othersThan(company)) await nextTurn()
      return result
    },
    onError,
    limiter,
    guard,
    hook,
    telemetry,
    outcomes,
    body: (eventId: string, event: COTEvent) => {
      let body = bodies.get(eventId)
      if (body === undefined) bodies.set(eventId, (body = JSON.stringify(event)))
      return body
    },
    backlogged: () => dispatcher.backlogged(),
    saturated: () => lanes.saturated(),
    waiting: (delta: 1 | -1) => {
      waiting += delta
      // A run that starts waiting frees its send slot for other webhooks' deliveries.
      if (delta > 0) dispatcher.freed()
    },
  }
  const claiming = options.dispatch ?? true
  const dispatcher = createDispatcher({
    store,
    concurrency,
    ordered,
    leaseMs,
    owner,
    now,
    run: (claimed, claimedAt, guest) => deliver(context, claimed, claimedAt, guest),
    waiting: () => waiting,
    onError,
    pollIntervalMs,
    claiming,
    guestSlots,
  })

  telemetry?.observe?.({
    openCount: () => store.openCount(),
    backlog: async () => {
      const { open, oldestOpenAgeMs } = await readStats(store, { outcomes: outcomes.read(), recent: [] }, now(), undefined, 0)
      return { open, oldestOpenAgeMs }
    },
  })

  // Other processes' writes: wake up for their deliveries, forget their webhooks' cached versions.
  const watching = store.watch
    ?.call(store, (change) => {
      if (change.kind === 'webhook') {
        matcher.invalidate(change.company)
        registry.forget(change.id)
      } else if (change.kind === 'reset') {
        matcher.invalidate()
        registry.forget()
      }
      dispatcher.kick()
    })
    .catch((error: unknown) => {
      onError(error)
      return undefined
    })

  const prune = async (olderThanMs = retention?.maxAgeMs): Promise<PruneResult> => {
    if (olderThanMs === undefined) throw new RangeError('prune() needs olderThanMs, or the retention option')
    const before = now() - nonNegativeInteger('olderThanMs', olderThanMs)
    const batch = retention?.batchSize ?? 500
    const total: PruneResult = { deliveries: 0, events: 0, idempotencyKeys: 0 }
    for (;;) {
      const removed = await store.prune(before, batch)
      total.deliveries += removed.deliveries
      total.events += removed.events
      total.idempotencyKeys += removed.idempotencyKeys
      if (removed.deliveries < batch && removed.events < batch && removed.idempotencyKeys < batch) return total
      // A store that answers without I/O (memory) would run every batch in one turn of the event loop:
      // let timers, sockets and the host's own requests in between batches.
      await new Promise((resolve) => setTimeout(resolve, 0))
    }
  }
  const pruning = retention ? setInterval(() => void prune().catch(onError), retention.intervalMs ?? 3_600_000) : undefined
  ;(pruning as { unref?: () => void } | undefined)?.unref?.()

  // Matches the event and enqueues its deliveries; outside a host transaction, an engine that delivers
  // takes what may go now in the same step.
  async function enqueueEvent(event: COTEvent, json: string, at: number, idempotencyKey: string | undefined, tx: unknown, trace: string | undefined): Promise<EmitResult> {
    const matched = await matcher.match(event)
    const eventId = objectId(at)
    if (!matched.length && idempotencyKey === undefined) return { eventId, deliveries: [] }
    const deliveries = matched.map((webhook) => ({ id: objectId(at), webhookId: webhook._id }))
    // With no room it still asks (for none), so an ordered store can say which wait behind a delivery out.
    const asking = tx === undefined && claiming
    // A guest place is reserved by roomFor: taken up by the adopt below, or given back.
    const { room: free, guest } = asking ? dispatcher.roomFor(event.company) : { room: 0, guest: false }
    const room = Math.min(free, deliveries.length)
    let result: EnqueueResult
    try {
      result = await store.enqueue({
        eventId,
        event,
        deliveries,
        now: at,
        ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        ...(tx === undefined ? {} : { tx }),
        ...(trace === undefined ? {} : { trace }),
        ...(asking ? { claim: { owner, leaseMs, limit: room, ordered } } : {}),
      })
    } catch (error) {
      if (guest) dispatcher.cancelGuest(event.company)
      throw error
    }
    const fresh = !result.duplicate && result.deliveries.length > 0
    const claimed = fresh ? result.claimed ?? [] : []
    if (guest && !claimed.length) dispatcher.cancelGuest(event.company)
    if (fresh) {
      // The deliveries will sign and send these bytes: serialise once.
      bodies.set(result.eventId, json)
      if (claimed.length) dispatcher.adopt(claimed, at, guest)
      if (claimed.length + (result.waiting ?? 0) < result.deliveries.length) dispatcher.kick()
    }
    return { eventId: result.eventId, deliveries: result.deliveries }
  }

  const replay = {
    store,
    registry,
    now,
    checkSize: (event: COTEvent) => void eventJson(event, maxEventBytes),
    kick: () => dispatcher.kick(),
  }

  const listLogs = async (company: string, webhookId: string, page: LogPageOptions = {}) => {
    await registry.get(company, webhookId) // 404 for another company's webhook, 400 for a bad id
    const { limit, page: number } = parse(PageSchema, page, 'page')
    const result = await store.listDeliveries(company, webhookId, { limit, offset: (number - 1) * limit })
    return { logs: result.items.map(toLog), count: result.count }
  }

  return {
    registry,
    store,

    async emit(input, emitOptions = {}) {
      if (shutdown.signal.aborted) throw new Error('cotwebhook: emit() after close(): this engine no longer delivers')
      const { idempotencyKey } = parse(EmitOptionsSchema, emitOptions, 'emit options')
      const at = now()
      const event = toEvent(input, new Date(at))
      const json = eventJson(event, maxEventBytes)
      const recording = telemetry?.emit({ company: event.company, type: event.type, event: event.event })
      try {
        const result = await enqueueEvent(event, json, at, idempotencyKey, emitOptions.tx, recording?.trace)
        recording?.end({ matched: result.deliveries.length })
        return result
      } catch (error) {
        recording?.end({ error })
        throw error
      }
    },

    async logs(company, webhookId, page) {
      return (await listLogs(company, webhookId, page)).logs
    },

    listLogs,

    resend: (company, deliveryId) => resend(replay, company, deliveryId),
    recover: (company, webhookId, recoverOptions) => recover(replay, company, webhookId, recoverOptions),
    sendTest: (company, webhookId, testOptions) => sendTest(replay, company, webhookId, testOptions),

    health: async (company, webhookId) => guard.report(await registry.get(company, webhookId), now()),

    async stats(company, statsOptions = {}) {
      if (company !== undefined) objectIdArgument(company, 'company')
      const limit = statsOptions.limit ?? 100
      if (!Number.isInteger(limit) || limit < 1 || limit > 1_000) throw ValidationError.field('limit', 'limit: must be an integer from 1 to 1000')
      const at = now()
      return readStats(store, { outcomes: outcomes.read(company), recent: outcomes.recent(company, at) }, at, company, limit)
    },

    drain: () => dispatcher.drain(),

    async flush() {
      await dispatcher.flush()
      const nextWakeAt = await store.nextWakeAt(now(), ordering === 'webhook')
      return nextWakeAt === undefined ? {} : { nextWakeAt }
    },

    prune: (pruneOptions = {}) => prune(pruneOptions.olderThanMs),

    async close() {
      shutdown.abort(new Error('cotwebhook engine closed'))
      clearInterval(pruning)
      await dispatcher.close()
      const stop = await watching
      await stop?.()
    },
  }
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be an integer ≥ 0, not ${String(value)}`)
  return value
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, not ${String(value)}`)
  return value
}
