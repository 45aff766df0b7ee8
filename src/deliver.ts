import pRetry, { AbortError } from 'p-retry'
import { whenAborted } from './abort-hub.js'
import type { EndpointGuard } from './endpoint-guard.js'
import { LeaseLostError } from './errors.js'
import type { COTEvent } from './model.js'
import type { HookCaller } from './operator-hooks.js'
import type { RateLimiter } from './rate-limit.js'
import type { RegistryInternals } from './registry.js'
import { delayAfter } from './retry-policy.js'
import { observedAttempt } from './observed-attempt.js'
import type { GuestPass } from './send-lanes.js'
import type { AttemptResult } from './sender.js'
import type { Signer } from './signer.js'
import type { Transport } from './transport.js'
import type { ClaimedDelivery, EndpointChange, EndpointReport, Settlement, SettleResult, Store } from './store.js'
import type { Telemetry } from './telemetry.js'
import type { OutcomeCounts } from './outcome-counts.js'
import type { UrlPolicy } from './url-guard.js'

/**
 * Runs the attempts of one claimed delivery: p-retry drives them, each attempt is settled in the
 * store (with its outcome for the endpoint's shared state) before the next is scheduled, short
 * delays are waited here under the lease and long ones are handed back to the store with their due
 * time. In ordered mode the settle that makes a delivery final also leases the webhook's next one,
 * which the caller runs next.
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
  /** Per-webhook order: a final settle passes the webhook's queue to its next delivery. */
  ordered: boolean
  /** This engine's id in leases. */
  owner: string
  urlPolicy: UrlPolicy
  transport: Transport
  signer: Signer
  now: () => number
  /** Aborted by `close()`: waits end and leases are given back. */
  signal: AbortSignal
  /**
   * The global limit on requests in flight (to `url`): every send goes through it, waits do not; a
   * guest's may take a guest slot. While another company has an attempt under way here, the answer
   * comes back in the event loop's check phase (after the requests made earlier in the turn are written).
   */
  sends: <T>(url: string, company: string, send: () => Promise<T>, guest?: GuestPass) => Promise<T>
  /**
   * Whether due work was left in the store for want of room here: only then does an ending unordered
   * settle ask for another delivery (otherwise the ask costs the store a claim that finds nothing).
   */
  backlogged: () => boolean
  /** Told when a run starts (+1) and stops (-1) waiting between attempts, so its slot can be used. */
  waiting: (delta: 1 | -1) => void
  /** Whether every send slot is taken (a run would queue for one). */
  saturated: () => boolean
  /** The JSON of an event, made once for all of its deliveries. */
  body: (eventId: string, event: COTEvent) => string
  /** Where a lost lease is reported: another claimer took the delivery, which may mean a double send. */
  onError: (error: unknown) => void
  /** Per-host concurrency, and the per-second rate the options give a webhook. */
  limiter: RateLimiter
  /** The endpoint policy, turning webhooks off, the stored rate. */
  guard: EndpointGuard
  /** The operator hooks, made safe to call. */
  hook: HookCaller
  /** Traces and metrics, guarded; absent: nothing recorded. */
  telemetry?: Telemetry | undefined
  /** This engine's outcome counts (for `stats()`). */
  outcomes?: OutcomeCounts
}

const NO_SHARE = () => {}

/** Where a delivery's run ended: the webhook's next delivery to run (ordered), leased at `at`. */
export interface DeliverResult {
  next?: ClaimedDelivery
  at?: number
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
 * for (const claimed of await store.claim(...)) {
 *   let next = (await deliver(context, claimed, now)).next // ordered: the webhook's next one, already leased
 * }
 * ```
 */
export async function deliver(ctx: DeliverContext, claimed: ClaimedDelivery, claimedAt: number, guest?: GuestPass): Promise<DeliverResult> {
  const { delivery, lease } = claimed
  // Serialised once per event: every delivery and attempt of it signs and sends these same bytes.
  const body = ctx.body(delivery.eventId, delivery.event)
  const maxAttempts = ctx.schedule.length + 1
  let made = delivery.attempts.length
  let leaseUntil = claimedAt + ctx.leaseMs
  let lastResponse = delivery.response
  const outcome: DeliverResult = {}
  const settle = async (settlement: Omit<Settlement, 'now'>): Promise<SettleResult> => {
    const now = ctx.now()
    // A settle that ends this run asks for the next delivery in the same round trip (not while closing):
    // ordered, the webhook's next (its queue passes straight on); unordered, any due one if some was left.
    // A guest run ends with its delivery: the slots it did without are the busy companies'.
    const ends = !guest && (ctx.ordered ? settlement.state !== 'pending' : settlement.holdUntil === undefined && ctx.backlogged())
    const next = ends && !ctx.signal.aborted ? { next: { owner: ctx.owner, leaseMs: ctx.leaseMs, ordered: ctx.ordered } } : {}
    const result = (await ctx.store.settle(lease, { ...settlement, ...next, now })) ?? {}
    ctx.guard.learned(delivery.webhookId, result.endpoint)
    if (result.next) {
      outcome.next = result.next
      outcome.at = now
    }
    return result
  }
  const report = (outcome: EndpointReport['outcome'], exhausted = false): EndpointReport => ({ outcome, exhausted, policy: ctx.guard.policy })
  const ref = { company: delivery.company, webhookId: delivery.webhookId, deliveryId: delivery.id, eventId: delivery.eventId }
  // The circuit's transitions are told by the engine whose settle made them, after the settle.
  const tellCircuit = (change: EndpointChange | undefined) => {
    if (change?.circuit) ctx.hook('circuit', { company: ref.company, webhookId: ref.webhookId, ...change.circuit })
  }

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
    await settleQuietly(settle({ state: 'failed', response: delivery.response }))
    return outcome
  }

  // The webhook's trigger, once its target was read (for telemetry).
  let trigger = ''
  const ended = (result: 'succeeded' | 'failed') => {
    ctx.outcomes?.delivery(delivery.company, result, ctx.now())
    ctx.telemetry?.delivered?.({ company: delivery.company, webhookId: delivery.webhookId, trigger, outcome: result, attempts: made })
  }

  // Ends the delivery without a request (it can never be sent) and tells the operator.
  const giveUp = async (response: string) => {
    await settle({ state: 'failed', response })
    ctx.hook('deliveryExhausted', { ...ref, attempts: made, response })
    ended('failed')
    throw new Settled()
  }

  // Hands the delivery back, due at `until`, without using an attempt (a full host).
  const defer = async (until: number) => {
    await settle({ state: 'pending', response: lastResponse, nextAttemptAt: until })
    throw new Settled()
  }

  // Retries of a webhook under a per-second limit go back to the store, whose claims keep the pace.
  let paced = false

  /** One attempt: settles success and final outcomes itself, throws FailedAttempt for a retryable one. */
  const attempt = async (): Promise<void> => {
    // Read on every attempt: a webhook deactivated or moved meanwhile is honoured (cached until a write).
    const target = await ctx.registry.target(delivery.company, delivery.webhookId)
    if (target) trigger = target.webhook.trigger
    if (!target?.webhook.isActive || target.unsafe) {
      const why = !target ? 'the webhook no longer exists' : target.unsafe ?? 'the webhook is inactive'
      return giveUp(`not sent: ${why}`)
    }
    if (claimed.rate !== undefined) {
      await ctx.guard.syncRate(target.webhook, claimed.rate)
      claimed.rate = undefined
    }
    paced = ctx.limiter.rateOf(target.webhook) !== null
    // The webhook's share of the send slots, then its host's: each waited for in line without a send
    // slot, as long as the lease leaves time to send. A guest's wait frees no main slot (it holds none).
    const waitFor = async (take: (maxWaitMs: number) => Promise<(() => void) | undefined>) => {
      const maxWaitMs = leaseUntil - ctx.now() - ctx.timeoutMs - RENEW_MARGIN_MS
      if (guest) return await take(maxWaitMs)
      ctx.waiting(1)
      try {
        return await take(maxWaitMs)
      } finally {
        ctx.waiting(-1)
      }
    }
    const webhooks = ctx.limiter.webhooks
    // Ordered, a webhook has one delivery out at a time: its share cannot be exceeded.
    const releaseShare = ctx.ordered
      ? NO_SHARE
      : (webhooks.trySlot(delivery.webhookId) ?? (await waitFor((ms) => webhooks.waitSlot(delivery.webhookId, ms, ctx.signal))))
    if (!releaseShare) return defer(ctx.now() + HOST_RETRY_MS)
    const url = target.webhook.url
    const releaseHost = ctx.limiter.trySlot(url) ?? (await waitFor((ms) => ctx.limiter.waitSlot(url, ms, ctx.signal)))
    if (!releaseHost) {
      releaseShare()
      return defer(ctx.now() + HOST_RETRY_MS)
    }
    const release = () => {
      releaseHost()
      releaseShare()
    }
    let result: AttemptResult
    try {
      result = await ctx.sends(url, delivery.company, async () => {
        // Claimed (or waiting for a retry, a host or a slot) before the circuit opened: held back like
        // the rest, right before it would go; a probe goes.
        const heldUntil = claimed.probe ? 0 : ctx.guard.heldUntil(delivery.webhookId, ctx.now())
        if (heldUntil) return defer(heldUntil)
        await keepLease()
        return observedAttempt(ctx, delivery, target.webhook, made + 1, {
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
      }, guest)
    } finally {
      release()
    }
    made++
    lastResponse = result.response
    if (result.outcome === 'success') {
      const settled = await settle({ state: 'succeeded', attempt: result.attempt, response: result.response, endpoint: report('success') })
      tellCircuit(settled.endpoint)
      if (made > 1) ctx.hook('deliveryRecovered', { ...ref, attempts: made })
      ended('succeeded')
      return
    }
    if (result.outcome === 'gone') {
      // 410: the receiver says the subscription is over. Turn the webhook off, then record and stop:
      // in that order, so the webhook's next delivery (claimable once this one is final) finds it off.
      const seen = await ctx.store.endpoint(delivery.webhookId)
      await ctx.guard.disable(delivery.company, delivery.webhookId, 'gone', { consecutiveFailures: seen.consecutiveFailures, failingSince: seen.failingSince ?? ctx.now() })
      const settled = await settle({ state: 'failed', attempt: result.attempt, response: result.response, endpoint: report('failure') })
      tellCircuit(settled.endpoint)
      ctx.hook('attemptFailed', { ...ref, attempt: result.attempt, attemptNumber: made, willRetry: false })
      ctx.hook('deliveryExhausted', { ...ref, attempts: made, response: result.response })
      ended('failed')
      return
    }
    throw new FailedAttempt(result)
  }

  /** After a failed attempt: record it, then fail for good, hand back, or wait in process. */
  const failed = async (error: unknown): Promise<void> => {
    if (!(error instanceof FailedAttempt)) throw error
    const { attempt: record, response, retryAfterMs } = error.result
    if (made >= maxAttempts) {
      // Turned off before the delivery is final, as for a 410: the next one must find the webhook off.
      // (Read first; if another engine's failure tips it over meanwhile, the settle says so below.)
      const foreseen = await ctx.guard.wouldDisable(delivery.webhookId, ctx.now())
      if (foreseen) await ctx.guard.disable(delivery.company, delivery.webhookId, foreseen.reason, foreseen)
      const settled = await settle({ state: 'failed', attempt: record, response, endpoint: report('failure', true) })
      tellCircuit(settled.endpoint)
      ctx.hook('attemptFailed', { ...ref, attempt: record, attemptNumber: made, willRetry: false })
      ctx.hook('deliveryExhausted', { ...ref, attempts: made, response })
      ended('failed')
      const disable = settled.endpoint?.disable
      if (disable && !foreseen) await ctx.guard.disable(delivery.company, delivery.webhookId, disable, settled.endpoint!)
      throw new Settled()
    }
    // Retry-After replaces the scheduled delay and still uses up an attempt.
    const delay = retryAfterMs ?? delayAfter(made, ctx.schedule, ctx.jitter)
    const due = ctx.now() + delay
    // A guest hands its retry back too: its place is for the next quiet company, not for a wait.
    if (delay > ctx.maxInProcessDelayMs || paced || guest) {
      await settle({ state: 'pending', attempt: record, response, nextAttemptAt: due, endpoint: report('failure') }).then((s) => tellCircuit(s.endpoint))
      ctx.hook('attemptFailed', { ...ref, attempt: record, attemptNumber: made, willRetry: true })
      throw new Settled()
    }
    const settled = await settle({ state: 'pending', attempt: record, response, nextAttemptAt: due, holdUntil: due + ctx.leaseMs, endpoint: report('failure') })
    tellCircuit(settled.endpoint)
    ctx.hook('attemptFailed', { ...ref, attempt: record, attemptNumber: made, willRetry: true })
    const openUntil = settled.endpoint?.openUntil
    if (openUntil !== undefined) {
      // The endpoint's circuit is open (this failure opened it, or another's did): no waiting here.
      // Give the delivery back; claims skip the webhook until the cool-down ends.
      await settle({ state: 'pending', response, nextAttemptAt: Math.max(due, openUntil) })
      throw new Settled()
    }
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
      await attempt()
      return outcome
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
    return outcome
  } catch (error) {
    if (error instanceof Settled) return outcome
    if (error instanceof LeaseLostError) {
      // Someone else holds the delivery now; it will be finished there (perhaps sent twice).
      ctx.onError(new Error(`cotwebhook: ${error.message}; it was taken over (another instance, or its lease ran out)`, { cause: error }))
      return outcome
    }
    if (ctx.signal.aborted) {
      // Shutting down mid-wait: the attempt is recorded; give the delivery back for whoever runs next.
      await settleQuietly(ctx.store.release(lease, ctx.now()))
      return outcome
    }
    throw error
  }
}

async function settleQuietly(work: Promise<unknown>): Promise<void> {
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
