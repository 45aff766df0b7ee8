import pRetry, { AbortError } from 'p-retry'
import type { CircuitBreaker } from './circuit-breaker.js'
import { whenAborted } from './abort-hub.js'
import { LeaseLostError } from './errors.js'
import type { HealthTracker } from './health.js'
import type { CircuitEvent, DisableReason, HookCaller } from './operator-hooks.js'
import type { RateLimiter } from './rate-limit.js'
import type { COTEvent } from './model.js'
import type { RegistryInternals } from './registry.js'
import { delayAfter } from './retry-policy.js'
import { sendAttempt, type AttemptResult } from './sender.js'
import type { Signer } from './signer.js'
import type { Transport } from './transport.js'
import type { ClaimedDelivery, Settlement, Store } from './store.js'
import type { UrlPolicy } from './url-guard.js'

/**
 * Runs the attempts of one claimed delivery: p-retry drives them, each attempt is settled in the
 * store before the next is scheduled, short delays are waited here under the lease and long ones
 * are handed back to the store with their due time.
 */

/** What {@link deliver} needs from the engine. */
export interface DeliverContext {
  store: Store
  registry: RegistryInternals
  /** Delays between attempts. */
  schedule: readonly number[]
  /** ± fraction applied to each delay. */
  jitter: number
  /** Delays up to this long are waited in process. */
  maxInProcessDelayMs: number
  /** Cap of a Retry-After delay. */
  maxRetryAfterMs: number
  /** Per-attempt timeout. */
  timeoutMs: number
  /** Response bytes kept in the log. */
  maxResponseBytes: number
  /** Lease length; an in-process wait holds the lease this long past the due time. */
  leaseMs: number
  urlPolicy: UrlPolicy
  transport: Transport
  signer: Signer
  now: () => number
  /** Aborted by `close()`: waits end and leases are given back. */
  signal: AbortSignal
  /** The global limit on requests in flight: every send goes through it, waits do not. */
  sends: <T>(send: () => Promise<T>) => Promise<T>
  /** Told when a run starts (+1) and stops (-1) waiting between attempts, so its slot can be used. */
  waiting: (delta: 1 | -1) => void
  /** Whether every send slot is taken (a run would queue for one). */
  saturated: () => boolean
  /** The JSON of an event, made once for all of its deliveries. */
  body: (eventId: string, event: COTEvent) => string
  /** Where a lost lease is reported: another claimer took the delivery, which may mean a double send. */
  onError: (error: unknown) => void
  /** Holds attempts back from endpoints that keep failing. */
  breaker: CircuitBreaker
  /** Per-webhook rate and per-host concurrency. */
  limiter: RateLimiter
  /** Failure runs per webhook, and when to turn a webhook off. */
  health: HealthTracker
  /** The operator hooks, made safe to call. */
  hook: HookCaller
  /** Turns a webhook off and tells the operator why. */
  disable: (company: string, webhookId: string, reason: DisableReason) => Promise<void>
}

// Renew the lease before sending when less than the attempt's timeout and this margin is left
// (or half the slack between lease and timeout, for short leases).
const RENEW_MARGIN_MS = 1_000
// A delivery that waited its lease's worth for a full host is handed back and looked at again this soon.
const HOST_RETRY_MS = 1_000

class FailedAttempt extends Error {
  constructor(readonly result: AttemptResult) {
    super(result.response)
  }
}

// Thrown to end a run that is already settled (final, or handed back to the store).
class Settled extends Error {}

/**
 * Delivers one claimed delivery until it succeeds, fails for good, or is handed back to the store.
 *
 * @example
 * ```ts
 * for (const claimed of await store.claim(...)) await deliver(context, claimed)
 * ```
 */
export async function deliver(ctx: DeliverContext, { delivery, lease }: ClaimedDelivery, claimedAt: number): Promise<void> {
  // Serialised once per event: every delivery and attempt of it signs and sends these same bytes.
  const body = ctx.body(delivery.eventId, delivery.event)
  const maxAttempts = ctx.schedule.length + 1
  let made = delivery.attempts.length
  let leaseUntil = claimedAt + ctx.leaseMs
  let lastResponse = delivery.response
  const settle = (settlement: Omit<Settlement, 'now'>) => ctx.store.settle(lease, { ...settlement, now: ctx.now() })

  // A run may wait for a send slot (behind others' sends) long enough for its lease to run short:
  // renew it before sending, so no other claimer takes the delivery while this one is sending it.
  const keepLease = async () => {
    const now = ctx.now()
    const margin = Math.min(RENEW_MARGIN_MS, (ctx.leaseMs - ctx.timeoutMs) / 2)
    if (now + ctx.timeoutMs + margin <= leaseUntil) return
    await settle({ state: 'pending', response: lastResponse, nextAttemptAt: now, holdUntil: now + ctx.leaseMs })
    leaseUntil = now + ctx.leaseMs
  }

  if (made >= maxAttempts) {
    // Claimed after its last attempt was recorded but before it was marked failed (a crash between the two).
    return settleQuietly(settle({ state: 'failed', response: delivery.response }))
  }

  const ref = { company: delivery.company, webhookId: delivery.webhookId, deliveryId: delivery.id, eventId: delivery.eventId }

  // Ends the delivery without a request (it can never be sent) and tells the operator.
  const giveUp = async (response: string) => {
    await settle({ state: 'failed', response })
    ctx.hook('deliveryExhausted', { ...ref, attempts: made, response })
    throw new Settled()
  }

  // Hands the delivery back, due at `until`, without using an attempt: a limit or an open circuit.
  const defer = async (until: number) => {
    await settle({ state: 'pending', response: lastResponse, nextAttemptAt: until })
    throw new Settled()
  }

  // A circuit opened by the last attempt, told once that attempt is in the store.
  let opened: CircuitEvent | undefined
  const tellOpened = () => {
    if (opened) ctx.hook('circuit', opened)
    opened = undefined
  }

  /** One attempt: settles success and final outcomes itself, throws FailedAttempt for a retryable one. */
  const attempt = async (): Promise<void> => {
    // Read on every attempt: a webhook deactivated or moved meanwhile is honoured (cached until a write).
    const target = await ctx.registry.target(delivery.company, delivery.webhookId)
    if (!target?.webhook.isActive || target.unsafe) {
      const why = !target ? 'the webhook no longer exists' : target.unsafe ?? 'the webhook is inactive'
      return giveUp(`not sent: ${why}`)
    }
    const admission = ctx.breaker.admit(delivery.webhookId, ctx.now())
    if (!admission.ok) return defer(admission.until)
    let reported = false
    try {
      const rate = ctx.limiter.take(target.webhook, ctx.now())
      if (!rate.ok) return await defer(rate.until)
      let release = ctx.limiter.trySlot(target.webhook.url)
      if (!release) {
        // The host is full: wait in line without a send slot, as long as the lease leaves time to send.
        ctx.waiting(1)
        try {
          release = await ctx.limiter.waitSlot(target.webhook.url, leaseUntil - ctx.now() - ctx.timeoutMs - RENEW_MARGIN_MS, ctx.signal)
        } finally {
          ctx.waiting(-1)
        }
        if (!release) return await defer(ctx.now() + HOST_RETRY_MS)
      }
      let result: AttemptResult
      try {
        result = await ctx.sends(async () => {
          await keepLease()
          return sendAttempt({
            url: target.webhook.url,
            id: delivery.id,
            body,
            keys: target.keys,
            signer: ctx.signer,
            timeoutMs: ctx.timeoutMs,
            maxResponseBytes: ctx.maxResponseBytes,
            maxRetryAfterMs: ctx.maxRetryAfterMs,
            transport: ctx.transport,
            now: ctx.now,
          })
        })
      } finally {
        release()
      }
      made++
      lastResponse = result.response
      reported = true
      if (result.outcome === 'success') {
        const closed = ctx.breaker.success(delivery.webhookId)
        ctx.health.succeeded(delivery.webhookId, ctx.now())
        await settle({ state: 'succeeded', attempt: result.attempt, response: result.response })
        if (closed) ctx.hook('circuit', { company: delivery.company, webhookId: delivery.webhookId, state: 'closed' })
        if (made > 1) ctx.hook('deliveryRecovered', { ...ref, attempts: made })
        return
      }
      const openUntil = ctx.breaker.failure(delivery.webhookId, ctx.now(), admission.probe)
      // Told after the attempt is recorded (by `failed` below, or here for a 410).
      if (openUntil !== undefined) opened = { company: delivery.company, webhookId: delivery.webhookId, state: 'open', until: openUntil }
      ctx.health.attemptFailed(delivery.webhookId, ctx.now())
      if (result.outcome === 'gone') {
        // 410: the receiver says the subscription is over. Turn the webhook off, then record and stop:
        // in that order, so the webhook's next delivery (claimable once this one is final) finds it off.
        await ctx.disable(delivery.company, delivery.webhookId, 'gone')
        await settle({ state: 'failed', attempt: result.attempt, response: result.response })
        tellOpened()
        ctx.hook('attemptFailed', { ...ref, attempt: result.attempt, attemptNumber: made, willRetry: false })
        ctx.hook('deliveryExhausted', { ...ref, attempts: made, response: result.response })
        return
      }
      throw new FailedAttempt(result)
    } finally {
      if (admission.probe && !reported) ctx.breaker.abandon(delivery.webhookId)
    }
  }

  /** After a failed attempt: record it, then fail for good, hand back, or wait in process. */
  const failed = async (error: unknown): Promise<void> => {
    if (!(error instanceof FailedAttempt)) throw error
    const { attempt: record, response, retryAfterMs } = error.result
    if (made >= maxAttempts) {
      // Turned off before the delivery is final, as for a 410: the next one must find the webhook off.
      const disable = ctx.health.exhausted(delivery.webhookId, ctx.now())
      if (disable) await ctx.disable(delivery.company, delivery.webhookId, disable)
      await settle({ state: 'failed', attempt: record, response })
      tellOpened()
      ctx.hook('attemptFailed', { ...ref, attempt: record, attemptNumber: made, willRetry: false })
      ctx.hook('deliveryExhausted', { ...ref, attempts: made, response })
      throw new Settled()
    }
    // Retry-After replaces the scheduled delay and still uses up an attempt.
    const delay = retryAfterMs ?? delayAfter(made, ctx.schedule, ctx.jitter)
    const due = ctx.now() + delay
    if (delay > ctx.maxInProcessDelayMs) {
      await settle({ state: 'pending', attempt: record, response, nextAttemptAt: due })
      tellOpened()
      ctx.hook('attemptFailed', { ...ref, attempt: record, attemptNumber: made, willRetry: true })
      throw new Settled()
    }
    await settle({ state: 'pending', attempt: record, response, nextAttemptAt: due, holdUntil: due + ctx.leaseMs })
    tellOpened()
    ctx.hook('attemptFailed', { ...ref, attempt: record, attemptNumber: made, willRetry: true })
    leaseUntil = due + ctx.leaseMs
    ctx.waiting(1)
    try {
      await sleep(delay, ctx.signal)
    } finally {
      ctx.waiting(-1)
    }
    if (ctx.saturated()) {
      // No slot free: queueing for one could outlast the lease. Give the delivery back, due now; the
      // loop claims it again (with a fresh lease) as soon as a slot frees.
      await settle({ state: 'pending', response, nextAttemptAt: ctx.now() })
      throw new Settled()
    }
  }

  try {
    ctx.signal.throwIfAborted()
    // Most deliveries succeed at once: the first attempt runs without the retry machinery.
    try {
      return await attempt()
    } catch (error) {
      await failed(error)
    }
    // p-retry drives the retries: each failure is recorded (and its delay taken) before the next.
    await pRetry(
      async () => {
        try {
          await attempt()
        } catch (error) {
          // A run that ended without a retryable failure must not be retried.
          throw error instanceof FailedAttempt ? error : new AbortError(error as Error)
        }
      },
      {
        retries: Math.max(0, maxAttempts - made - 1),
        factor: 1,
        minTimeout: 0,
        maxTimeout: 0,
        // No signal here: a shutdown ends the wait in `failed`, which ends p-retry (one abort
        // listener per run on the engine's signal would pile up past Node's warning threshold).
        onFailedAttempt: ({ error }) => failed(error),
      },
    )
  } catch (error) {
    if (error instanceof Settled) return
    if (error instanceof LeaseLostError) {
      // Someone else holds the delivery now; it will be finished there (perhaps sent twice).
      ctx.onError(new Error(`cotwebhook: ${error.message}; it was taken over (another instance, or its lease ran out)`, { cause: error }))
      return
    }
    if (ctx.signal.aborted) {
      // Shutting down mid-wait: the attempt is recorded; give the delivery back for whoever runs next.
      return settleQuietly(ctx.store.release(lease, ctx.now()))
    }
    throw error
  }
}

async function settleQuietly(work: Promise<void>): Promise<void> {
  try {
    await work
  } catch (error) {
    if (!(error instanceof LeaseLostError)) throw error
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      off()
      resolve()
    }, ms)
    const off = whenAborted(signal, () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })
}
